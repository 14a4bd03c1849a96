"""Evaluation of self-correction: K attempts per problem, SCoRe's metrics with intervals, and the §6.2 experiment.

Two layers:

- `evaluate(env, problems, renderer, generate, ...)` runs the attempts and scores them. It only needs a
  `generate(prompts, SamplingParams) -> list[Completion]` callable, so the trainer calls it with its Ray rollout group
  and `score eval` with an engine in this process. `inference_scaling(...)` is the same for SCoRe §6.2.
- `run_eval(model, env_name, out, ...)` is `score eval`: it builds the engine, runs the above and writes
  OUT/eval.json, OUT/samples.jsonl, OUT/report.md and the plots.

Attempt k+1 sees the conversation so far: its prompt is attempt k's prompt + attempt k's token ids + the ids that
close that turn and add the correction instruction (`ChatRenderer.between_turns`), or the environment's feedback on
attempt k where it gives some (`Environment.feedback`; eval.json's `feedback` says which). The ids of earlier attempts
are kept exactly as generated, so with two attempts this is the training rollout (`two_attempt_rollout`), sample for
sample.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from envs.base import Environment, Problem
from score.engines.base import Completion, SamplingParams
from score.metrics import per_problem_metrics, transition_counts
from score.rollout import ChatRenderer, Feedback, Generate, Score, feedback_hook, next_instructions
from score.stats import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, bootstrap_ci

console = Console(stderr=True)

GREEDY = SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=512, seed=0)
"""SCoRe evaluates with greedy decoding."""

# A chunk of prompts per `generate` call lets the progress bar move; each chunk gets its own seed (see `_generate`).
_SEED_STRIDE = 1000


@dataclass
class EvalSample:
    """One sample of one problem: its attempts (token ids as generated), their texts and rewards."""

    problem: Problem
    sample: int
    context_ids: list[int]
    """The conversation so far: while another attempt follows, its prompt (ending with an open assistant turn)."""
    completions: list[Completion] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    instructions: list[str] = field(default_factory=list)
    """The user message after each attempt but the last: the correction instruction, or the feedback on it."""


@dataclass
class EvalResult:
    """Every sample of an evaluation, problem-major (the samples of a problem are consecutive)."""

    samples: list[EvalSample]
    attempts: int
    samples_per_problem: int
    feedback: str = "intrinsic"
    """`Environment.feedback_kind`: what the model was told between attempts."""

    @property
    def problems(self) -> list[Problem]:
        return [s.problem for s in self.samples[:: self.samples_per_problem]]

    def rewards(self) -> np.ndarray:
        """Rewards with shape (problems, samples, attempts)."""
        flat = np.array([s.rewards for s in self.samples], dtype=float).reshape(-1, self.attempts)
        return flat.reshape(-1, self.samples_per_problem, self.attempts)

    def summary(
        self, *, resamples: int = DEFAULT_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE, seed: int = 0
    ) -> dict[str, Any]:
        """The content of eval.json: metrics, their intervals, the transition counts and the kind of feedback."""
        return {**summarize(self.rewards(), resamples=resamples, confidence=confidence, seed=seed),
                "feedback": self.feedback}

    def log_metrics(self, prefix: str = "eval_") -> dict[str, float]:
        """Point estimates only (no bootstrap), named for metrics.jsonl: {'eval_acc_t1': ..., 'eval_n': ...}.

        `score.logger.tag` turns the 'eval_' prefix into the 'eval/' namespace of TensorBoard and W&B."""
        rewards = self.rewards()
        values = {name: float(v.mean()) if len(v) else 0.0 for name, v in per_problem_metrics(rewards).items()}
        return {f"{prefix}{k}": v for k, v in {**values, "n": rewards.shape[0]}.items()}


def summarize(
    rewards: np.ndarray, *, resamples: int = DEFAULT_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE, seed: int = 0
) -> dict[str, Any]:
    """eval.json from a (problems, samples, attempts) reward array: each metric at the top level (acc_t1, acc_t2,
    delta, delta_i2c, delta_c2i, n, ...), `ci` {metric: [low, high]} and `transitions` (sample counts, t1 -> t2)."""
    rewards = np.asarray(rewards, dtype=float)
    ci = bootstrap_ci(per_problem_metrics(rewards), resamples=resamples, confidence=confidence, seed=seed)
    out: dict[str, Any] = {name: value["mean"] for name, value in ci.items()}
    out["n"] = int(rewards.shape[0])
    out["samples"] = int(rewards.shape[1])
    out["attempts"] = int(rewards.shape[2])
    out["ci"] = {name: [value["low"], value["high"]] for name, value in ci.items()}
    out["confidence"] = confidence
    out["bootstrap"] = {"resamples": resamples, "seed": seed, "unit": "problem"}
    if rewards.shape[2] >= 2:
        out["transitions"] = transition_counts(rewards[:, :, 0].ravel().tolist(), rewards[:, :, 1].ravel().tolist())
    return out


# ----- running attempts ---------------------------------------------------------------------------------------------


def _generate(generate: Generate, prompts: list[list[int]], params: SamplingParams, chunk_size: int | None,
              progress: Progress | None, label: str) -> list[Completion]:
    """All prompts in chunks; chunk c samples with seed params.seed + 1000 * c so chunks do not share noise."""
    size = chunk_size or max(len(prompts), 1)
    task = progress.add_task(label, total=len(prompts)) if progress else None
    completions: list[Completion] = []
    for c, start in enumerate(range(0, len(prompts), size)):
        chunk_params = dataclasses.replace(params, seed=params.seed + _SEED_STRIDE * c)
        completions += generate(prompts[start : start + size], chunk_params)
        if progress is not None:
            progress.update(task, advance=len(prompts[start : start + size]))
    if len(completions) != len(prompts):
        raise RuntimeError(f"generate returned {len(completions)} completions for {len(prompts)} prompts")
    return completions


def _next_attempt(items: list[EvalSample], k: int, env: Environment, renderer: ChatRenderer, generate: Generate,
                  params: SamplingParams, score: Score, chunk_size: int | None, progress: Progress | None,
                  feedback: Feedback | None, continues: Callable[[EvalSample], bool]) -> None:
    """Attempt k (0-based) of every item: generate, decode, score, and extend the context of each item that
    `continues` with the instruction or the feedback on this attempt, for attempt k+1."""
    if not items:
        return
    # Attempt k samples with seed + k, as `two_attempt_rollout` does for its two turns.
    attempt_params = dataclasses.replace(params, seed=params.seed + k)
    completions = _generate(generate, [it.context_ids for it in items], attempt_params, chunk_size, progress,
                            f"attempt {k + 1}")
    texts = [renderer.decode(c.token_ids) for c in completions]
    going_on = [i for i, it in enumerate(items) if continues(it)]
    # Feedback before rewards, as in training: a code environment reuses the verdict it ran for the feedback.
    instructions = dict(zip(going_on, next_instructions(env, [texts[i] for i in going_on],
                                                        [items[i].problem for i in going_on], feedback)))
    rewards = score(texts, [it.problem for it in items])
    for i, (it, completion, text, reward) in enumerate(zip(items, completions, texts, rewards, strict=True)):
        it.completions.append(completion)
        it.texts.append(text)
        it.rewards.append(float(reward))
        it.context_ids = it.context_ids + completion.token_ids
        if i in instructions:
            it.instructions.append(instructions[i])
            it.context_ids = it.context_ids + renderer.between_turns(instructions[i], completion.token_ids)


def _start(problems: list[Problem], samples: int, env: Environment, renderer: ChatRenderer) -> list[EvalSample]:
    prompts = [renderer.first_turn(env.first_turn_messages(p)) for p in problems]
    return [EvalSample(problem=p, sample=s, context_ids=list(prompts[i]))
            for i, p in enumerate(problems) for s in range(samples)]


def _progress(show: bool):
    if not show:
        return nullcontext(None)
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def evaluate(
    env: Environment,
    problems: list[Problem],
    renderer: ChatRenderer,
    generate: Generate,
    *,
    attempts: int = 2,
    samples: int = 1,
    params: SamplingParams = GREEDY,
    score: Score | None = None,
    feedbacks: Feedback | None = None,
    chunk_size: int | None = None,
    show_progress: bool = False,
) -> EvalResult:
    """Run `attempts` attempts on `samples` samples of every problem and score each attempt.

    Args:
        generate: `generate(prompts, params) -> completions`, one per prompt (an engine's or a rollout group's).
        params: sampling of every attempt; attempt k (0-based) uses seed `params.seed + k`. Greedy by default.
        score: `score(texts, problems) -> rewards`; defaults to `env.rewards`.
        feedbacks: `feedbacks(texts, problems)` for an environment that gives feedback; defaults to
            `env.feedbacks` (unused where `env.feedback_kind` is "intrinsic").
        chunk_size: prompts per `generate` call (None: one call per attempt, as in training).
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    score = score or env.rewards
    feedback = feedback_hook(env, feedbacks)
    items = _start(problems, samples, env, renderer)
    with _progress(show_progress) as progress:
        for k in range(attempts):
            _next_attempt(items, k, env, renderer, generate, params, score, chunk_size, progress, feedback,
                          continues=lambda it, k=k: k + 1 < attempts)
    return EvalResult(samples=items, attempts=attempts, samples_per_problem=samples, feedback=env.feedback_kind)


# ----- inference-time scaling (SCoRe §6.2) --------------------------------------------------------------------------


def answer_key(env: Environment, attempt: str, problem: Problem) -> str | None:
    """What majority voting counts: equal keys are the same answer; None means the attempt gave no answer.

    - An environment may define `answer_key(attempt, problem)`; it wins.
    - Math-like environments (math, gsm8k, math500, math_dataset, arithmetic): `rewards.math.extract_answer`,
      normalised (`rewards.math_normalize.normalize`), and plain numbers read exactly, so "1,000" and "1000.0" agree.
    - Anything else: the attempt's text with whitespace collapsed (for code, identical programs).
    """
    custom = getattr(env, "answer_key", None)
    if callable(custom):
        return custom(attempt, problem)
    if _math_like(env):
        from rewards.math import extract_answer
        from rewards.math_normalize import normalize, parse_number

        answer = extract_answer(attempt)
        if answer is None:
            return None
        try:
            text = normalize(answer)
            number = parse_number(text)
        except Exception:  # noqa: BLE001 - model output must never crash an evaluation
            return answer.strip()
        return text if number is None else f"{number.value}{'%' if number.percent else ''}"
    return " ".join(attempt.split()) or None


def _math_like(env: Environment) -> bool:
    """Environments whose reward compares `rewards.math.extract_answer(attempt)` with the reference."""
    from envs.arithmetic import ArithmeticEnv
    from envs.math_env import MathEnv

    return isinstance(env, MathEnv | ArithmeticEnv)


def majority_vote(keys: Sequence[str | None], rewards: Sequence[float]) -> float:
    """The reward of the most frequent answer. Ties go to the answer seen first; samples without one do not vote.

    >>> majority_vote(["4", "5", "5", None], [1.0, 0.0, 0.0, 0.0])
    0.0
    >>> majority_vote(["4", "5", None], [1.0, 0.0, 0.0]), majority_vote([None], [0.0])
    (1.0, 0.0)
    """
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return 0.0
    best = max(counts, key=counts.__getitem__)  # Counter keeps first-seen order; max keeps the first of equals
    return float(rewards[list(keys).index(best)])


def budgets_up_to(budget: int) -> list[int]:
    """1, 2, 4, ... up to `budget` (a power of two).

    >>> budgets_up_to(8)
    [1, 2, 4, 8]
    """
    if budget < 2 or budget & (budget - 1):
        raise ValueError(f"--scaling: the budget must be a power of two >= 2 (e.g. 32), got {budget}")
    return [2**i for i in range(budget.bit_length())]


def inference_scaling(
    env: Environment,
    problems: list[Problem],
    renderer: ChatRenderer,
    generate: Generate,
    *,
    budget: int,
    params: SamplingParams,
    score: Score | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    chunk_size: int | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """SCoRe §6.2: accuracy against a budget of B samples per problem, for B = 1, 2, 4, ... `budget`.

    - parallel: majority vote over B independent first attempts (self-consistency);
    - sequential: B/2 first attempts, each followed by one self-correction round, majority vote over the B/2
      corrected answers (B >= 2).

    One pool serves every B: `budget` first attempts per problem, of which the first budget/2 get a second attempt;
    budget B uses the first B (or B/2) of them, so the curves are nested and paired.
    """
    budgets = budgets_up_to(budget)
    if params.temperature <= 0:
        raise ValueError("--scaling-temperature must be > 0: majority voting over greedy samples votes on one answer")
    score = score or env.rewards
    feedback = feedback_hook(env)
    items = _start(problems, budget, env, renderer)
    with _progress(show_progress) as progress:
        _next_attempt(items, 0, env, renderer, generate, params, score, chunk_size, progress, feedback,
                      continues=lambda it: it.sample < budget // 2)
        _next_attempt([it for it in items if it.sample < budget // 2], 1, env, renderer, generate, params, score,
                      chunk_size, progress, feedback, continues=lambda it: False)
    per_problem = [items[i : i + budget] for i in range(0, len(items), budget)]
    keys = [[[answer_key(env, text, it.problem) for text in it.texts] for it in group] for group in per_problem]

    def curve(votes: Callable[[list[EvalSample], list[list[str | None]], int], float], sizes: list[int]):
        values = {str(b): np.array([votes(g, k, b) for g, k in zip(per_problem, keys)]) for b in sizes}
        ci = bootstrap_ci(values, resamples=resamples, confidence=confidence, seed=seed)
        return {"budget": sizes, "acc": [ci[str(b)]["mean"] for b in sizes],
                "ci": [[ci[str(b)]["low"], ci[str(b)]["high"]] for b in sizes]}

    def parallel(group, k, b):
        return majority_vote([k[s][0] for s in range(b)], [group[s].rewards[0] for s in range(b)])

    def sequential(group, k, b):
        return majority_vote([k[s][1] for s in range(b // 2)], [group[s].rewards[1] for s in range(b // 2)])

    return {
        "n": len(problems),
        "temperature": params.temperature,
        "max_budget": budget,
        "parallel": curve(parallel, budgets),
        "sequential": curve(sequential, budgets[1:]),
        "confidence": confidence,
        "feedback": env.feedback_kind,
    }


# ----- samples.jsonl ------------------------------------------------------------------------------------------------


def sample_records(result: EvalResult, env: Environment, *, details: bool = True) -> list[dict[str, Any]]:
    """One JSON-ready record per (problem, sample) with every attempt's text, reward and the environment's
    `reward_details` (the extracted answer for math; tests passed for code), when it has any. Math-like
    environments always get `extracted_answer`. With extrinsic feedback, attempts after the first carry
    `feedback_before`: what the model was told about the previous attempt."""
    records = []
    for it in result.samples:
        attempts = []
        for k, (completion, text, reward) in enumerate(zip(it.completions, it.texts, it.rewards, strict=True)):
            record = {"attempt": k + 1, "text": text, "reward": reward, "finished": completion.finished,
                      "num_tokens": len(completion.token_ids)}
            if k and result.feedback != "intrinsic":  # what the model was told before this attempt
                record["feedback_before"] = it.instructions[k - 1]
            if details:
                record.update(_details(env, text, it.problem))
            attempts.append(record)
        records.append({"problem_id": it.problem.id, "sample": it.sample, "prompt": it.problem.prompt,
                        "reference": it.problem.reference, "attempts": attempts})
    return records


def _details(env: Environment, text: str, problem: Problem) -> dict[str, Any]:
    try:
        found = dict(env.reward_details(text, problem) or {})
    except Exception as err:  # noqa: BLE001 - a details bug must not lose an evaluation that has already run
        return {"details_error": f"{type(err).__name__}: {err}"}
    found.pop("reference", None)  # already in the record
    if "extracted_answer" not in found and _math_like(env):  # e.g. arithmetic, which has no reward_details
        from rewards.math import extract_answer

        found["extracted_answer"] = extract_answer(text)
    return found


# ----- score eval ---------------------------------------------------------------------------------------------------


def answer_form_accuracy(env_name: str, env_kwargs: dict[str, Any] | None,
                         result: EvalResult) -> dict[str, dict[str, float]] | None:
    """Acc@t of every attempt under both readings of an environment with `strict_format` (math, gsm8k, ...):
    strict (only the instructed final-answer form counts, as in training) and lenient (any extractable answer,
    e.g. the last number). None for environments without the switch."""
    from envs import make_env

    kwargs = dict(env_kwargs or {})
    if not hasattr(make_env(env_name, **kwargs), "strict_format"):
        return None
    texts = [text for s in result.samples for text in s.texts]
    problems = [s.problem for s in result.samples for _ in s.texts]
    out = {}
    for reading, strict in (("strict", True), ("lenient", False)):
        rewards = np.array(make_env(env_name, **{**kwargs, "strict_format": strict}).rewards(texts, problems))
        per_attempt = rewards.reshape(len(result.samples), result.attempts)
        out[reading] = {f"acc_t{k + 1}": float(per_attempt[:, k].mean()) for k in range(result.attempts)}
    return out


def run_eval(
    model: str,
    env_name: str,
    out: str | Path,
    *,
    env_kwargs: dict[str, Any] | None = None,
    split: str = "test",
    limit: int | None = None,
    attempts: int = 2,
    samples: int = 1,
    params: SamplingParams = GREEDY,
    engine: str = "auto",
    engine_kwargs: dict[str, Any] | None = None,
    baseline: str | None = None,
    scaling_budget: int = 0,
    scaling_temperature: float = 1.0,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    chunk_size: int = 256,
    plots: bool = True,
) -> dict[str, Any]:
    """`score eval`: evaluate `model` (and `baseline`, same protocol, into OUT/baseline) and write every artefact.

    Returns the content of OUT/eval.json.
    """
    from transformers import AutoTokenizer

    from envs import make_env
    from score import report
    from score.engines import engine_kind, make_engine, resolve_engine_kind

    out = Path(out)
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    if scaling_budget:
        budgets_up_to(scaling_budget)  # fail before loading anything
    env = make_env(env_name, **(env_kwargs or {}))
    problems = env.load(split)[:limit]
    if not problems:
        raise ValueError(f"--env {env_name}: split {split!r} has no problems")
    config = {"model": str(model), "env": env_name, "env_kwargs": env_kwargs or {}, "split": split,
              "attempts": attempts, "samples": samples, **dataclasses.asdict(params),
              "engine": resolve_engine_kind(engine), "feedback": env.feedback_kind}

    def one_model(path: str, folder: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
        folder.mkdir(parents=True, exist_ok=True)
        renderer = ChatRenderer(AutoTokenizer.from_pretrained(path))
        console.print(f"evaluating {path} on {env_name}/{split}: {len(problems)} problems x {samples} samples "
                      f"x {attempts} attempts, {env.feedback_kind} feedback")
        generator = make_engine(engine, str(path), **(engine_kwargs or {}))
        try:
            result = evaluate(env, problems, renderer, generator.generate, attempts=attempts, samples=samples,
                              params=params, chunk_size=chunk_size, show_progress=True)
            scaling = None
            if scaling_budget:
                scaling_params = dataclasses.replace(params, temperature=scaling_temperature)
                scaling = inference_scaling(env, problems, renderer, generator.generate, budget=scaling_budget,
                                            params=scaling_params, resamples=resamples, confidence=confidence,
                                            seed=params.seed, chunk_size=chunk_size, show_progress=True)
        finally:
            generator.shutdown()
        summary = {**result.summary(resamples=resamples, confidence=confidence, seed=params.seed),
                   "config": {**config, "model": str(path), "engine": engine_kind(generator)}}
        forms = answer_form_accuracy(env_name, env_kwargs, result)
        if forms:
            summary["answer_form"] = forms
            console.print("accuracy by answer reading: " + "; ".join(
                f"{reading} " + ", ".join(f"{k} {v:.3f}" for k, v in accs.items()) for reading, accs in forms.items()))
        report.write_eval(folder, summary, sample_records(result, env), scaling=scaling)
        return summary, scaling

    summary, scaling = one_model(model, out)
    base_summary = comparison = None
    if baseline:
        base_summary, _ = one_model(baseline, out / "baseline")
        comparison = report.compare_dirs(out, out / "baseline", resamples=resamples, confidence=confidence)
        report.write_json(out / "compare.json", comparison)
    written = []
    if plots:
        from score.plots import plot_eval_dir

        written = plot_eval_dir(out, baseline=out / "baseline" if baseline else None)
    report.write_report(out, summary, baseline=base_summary, comparison=comparison, scaling=scaling,
                        plots=[p.relative_to(out) for p in written])
    console.print(report.eval_table([(Path(str(model)).name, summary)]
                                    + ([(f"{Path(baseline).name} (baseline)", base_summary)] if baseline else [])),
                  soft_wrap=True)
    console.print(f"wrote {out / 'eval.json'}, {out / 'samples.jsonl'}, {out / 'report.md'}")
    return summary
