"""`score verifier data`: the verifier's training data, sampled from our own engines and labelled by the environment.

For each generator in `data.models` (default: model.path), on the first `data.problems` problems of `data.split`:
1. sample `rollout.n` first-turn solutions per problem (the engines and chat rendering of `score eval`);
2. label each with the environment's reward (the math checker, the code sandbox, ...): correct = reward >= 0.5;
3. cut each into steps (`score.verifiers.steps`); with `data.prm_labels`, label the steps Math-Shepherd style:
   from the prefix ending at each step of a wrong solution, sample `data.prm_completions` completions with the same
   generator and call the step good when any of them reaches the right answer (a right solution completes itself
   from every prefix, so its steps are all good; a wrong solution's last step is bad);
4. optionally run CoTnPoT (`score.verifiers.cotnpot`) and drop the samples whose program disagrees;
5. de-duplicate (same problem, same text up to whitespace; the first copy stays) and write DIR/data.jsonl (and a
   Hugging Face dataset in DIR/hf with `data.format=hf`), plus DIR/stats.json.

A record: problem_id, prompt, reference, messages (the first turn the verifier is shown), model, sample, solution,
answer (the vote key), correct (0/1), reward, num_tokens, finished, step_ends (character offsets, exclusive),
step_labels (with prm_labels), cotnpot_agree (with cotnpot).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from envs.base import Environment, Problem
from score.engines.base import Completion, SamplingParams
from score.evaluate import answer_key
from score.rollout import ChatRenderer, Generate, Score
from score.verifiers.steps import StepConfig, merge_steps, step_ends, token_step_ends

console = Console(stderr=True)


@dataclass
class Solution:
    problem: Problem
    model: str
    sample: int
    prompt_ids: list[int]
    completion: Completion
    text: str
    reward: float
    key: str | None
    step_ends: list[int] = field(default_factory=list)
    step_labels: list[float] | None = None
    cotnpot_agree: bool | None = None

    @property
    def correct(self) -> bool:
        return self.reward >= 0.5


def safe_key(env: Environment, text: str, problem: Problem) -> str | None:
    try:
        return answer_key(env, text, problem)
    except Exception:  # noqa: BLE001 - model output never stops a run; it just has no answer
        return None


def sample_solutions(problems: list[Problem], env: Environment, renderer: ChatRenderer, generate: Generate, *,
                     n: int, params: SamplingParams, score: Score, model: str = "") -> list[Solution]:
    """n first-turn solutions per problem, scored; problem-major (a problem's n samples are consecutive)."""
    prompts = [renderer.first_turn(env.first_turn_messages(p)) for p in problems]
    completions = generate([prompt for prompt in prompts for _ in range(n)], params)
    texts = [renderer.decode(c.token_ids) for c in completions]
    flat = [p for p in problems for _ in range(n)]
    rewards = score(texts, flat)
    return [Solution(flat[i], model, i % n, prompts[i // n], completions[i], texts[i], float(rewards[i]),
                     safe_key(env, texts[i], flat[i])) for i in range(len(flat))]


def deduplicate(solutions: list[Solution]) -> list[Solution]:
    """The first solution of each (problem, text with whitespace collapsed).

    >>> s = [Solution(Problem("a", "1+1=", "2"), "m", i, [], Completion([], [], True), t, 1.0, t)
    ...      for i, t in enumerate(["2", " 2", "3"])]
    >>> [x.sample for x in deduplicate(s)]
    [0, 2]
    """
    seen: set[tuple[str, str]] = set()
    out = []
    for s in solutions:
        key = (s.problem.id, " ".join(s.text.split()))
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


def shepherd_labels(solutions: list[Solution], renderer: ChatRenderer, generate: Generate, *, completions: int,
                    params: SamplingParams, score: Score, steps: StepConfig) -> dict[str, float]:
    """Math-Shepherd hard-estimation step labels, in place (step_ends, step_labels). Returns counts for the logs."""
    prefixes: list[tuple[int, int]] = []  # (solution index, token count of the prefix)
    plans: list[tuple[list[int], list[float | None]]] = []
    for i, s in enumerate(solutions):
        ids = s.completion.token_ids
        ends = step_ends(s.text, steps)
        counts = token_step_ends(ids, ends, renderer.decode)
        counts, _ = merge_steps(counts, [0.0] * len(counts))
        s.step_ends = [len(renderer.decode(ids[:c])) for c in counts]  # what each prefix really holds
        labels: list[float | None] = [1.0 if s.correct else None for _ in counts]
        if counts and not s.correct:
            labels[-1] = 0.0  # the whole wrong solution is its own (only) completion from its last step
            prefixes += [(i, c) for c in counts[:-1]]
        plans.append((counts, labels))
    prompts = [solutions[i].prompt_ids + solutions[i].completion.token_ids[:c] for i, c in prefixes]
    generated = generate([p for p in prompts for _ in range(completions)], params) if prompts else []
    texts, problems = [], []
    for j, (i, c) in enumerate(prefixes):
        head = solutions[i].completion.token_ids[:c]
        for k in range(completions):
            texts.append(renderer.decode(head + generated[j * completions + k].token_ids))
            problems.append(solutions[i].problem)
    rewards = score(texts, problems) if texts else []
    reached = {}
    for j, (i, c) in enumerate(prefixes):
        reached[(i, c)] = float(any(r >= 0.5 for r in rewards[j * completions:(j + 1) * completions]))
    for i, (s, (counts, labels)) in enumerate(zip(solutions, plans)):
        s.step_labels = [label if label is not None else reached[(i, c)] for c, label in zip(counts, labels)]
    return {"prm_prefixes": float(len(prefixes)), "prm_completions": float(len(texts))}


def record(s: Solution, env: Environment) -> dict[str, Any]:
    out = {"problem_id": s.problem.id, "prompt": s.problem.prompt, "reference": s.problem.reference,
           "messages": env.first_turn_messages(s.problem), "model": s.model, "sample": s.sample,
           "solution": s.text, "answer": s.key, "correct": int(s.correct), "reward": s.reward,
           "num_tokens": len(s.completion.token_ids), "finished": s.completion.finished, "step_ends": s.step_ends}
    if s.step_labels is not None:
        out["step_labels"] = s.step_labels
    if s.cotnpot_agree is not None:
        out["cotnpot_agree"] = s.cotnpot_agree
    return out


def write_data(records: list[dict[str, Any]], folder: Path, fmt: str = "jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "data.jsonl"
    with path.open("w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    if fmt == "hf":
        import datasets

        datasets.Dataset.from_list(records).save_to_disk(str(folder / "hf"))
    return path


def read_data(path: str | Path) -> list[dict[str, Any]]:
    """Records from a data folder (its data.jsonl), a .jsonl file, or a Hugging Face dataset folder."""
    path = Path(path)
    if path.is_dir() and (path / "data.jsonl").is_file():
        path = path / "data.jsonl"
    if path.is_file():
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if path.is_dir() and (path / "dataset_info.json").is_file():
        import datasets

        return list(datasets.load_from_disk(str(path)))
    raise FileNotFoundError(f"no verifier data at {path}: run `score verifier data CONFIG.yaml` first "
                            "(or set data.path to a folder with data.jsonl)")


def data_stats(solutions: list[Solution], before_dedup: int) -> dict[str, float]:
    by_problem: dict[str, Counter] = {}
    for s in solutions:
        by_problem.setdefault(s.problem.id, Counter())[s.correct] += 1
    stats = {"samples": float(before_dedup), "kept": float(len(solutions)),
             "correct_frac": sum(s.correct for s in solutions) / max(len(solutions), 1),
             "problems": float(len(by_problem)),
             "problems_with_both": float(sum(1 for c in by_problem.values() if c[True] and c[False]))}
    labelled = [label for s in solutions for label in (s.step_labels or [])]
    if labelled:
        stats["steps"] = float(len(labelled))
        stats["good_step_frac"] = sum(labelled) / len(labelled)
    return stats


def generate_for(model: str, cfg, env: Environment, problems: list[Problem], seed: int,
                 log: Callable[[str], None] = console.print) -> tuple[list[Solution], dict[str, float]]:
    """One generator's samples, rewards, step labels and CoTnPoT verdicts, in this process (like `score eval`)."""
    from transformers import AutoTokenizer

    from score.engines import make_engine

    renderer = ChatRenderer(AutoTokenizer.from_pretrained(model))
    params = SamplingParams(cfg.rollout.temperature, cfg.rollout.top_p, cfg.rollout.max_new_tokens, seed=seed)
    engine = make_engine(cfg.rollout.engine, model, **cfg.data.engine_kwargs)
    stats: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        solutions = sample_solutions(problems, env, renderer, engine.generate, n=cfg.rollout.n, params=params,
                                     score=env.rewards, model=model)
        stats["time_sample"] = time.perf_counter() - t0
        if cfg.data.prm_labels:
            t0 = time.perf_counter()
            unique = deduplicate(solutions)  # no need to label a copy twice
            stats.update(shepherd_labels(unique, renderer, engine.generate, completions=cfg.data.prm_completions,
                                         params=dataclasses.replace(params, seed=seed + 1), score=env.rewards,
                                         steps=cfg.data.steps))
            labelled = {(s.problem.id, " ".join(s.text.split())): s for s in unique}
            for s in solutions:
                twin = labelled[(s.problem.id, " ".join(s.text.split()))]
                s.step_ends, s.step_labels = twin.step_ends, twin.step_labels
            stats["time_prm"] = time.perf_counter() - t0
        else:
            for s in solutions:
                s.step_ends = step_ends(s.text, cfg.data.steps)
        if cfg.data.cotnpot.enabled:
            from score.verifiers.cotnpot import cotnpot_verdicts

            t0 = time.perf_counter()
            verdicts = cotnpot_verdicts([s.text for s in solutions], [s.problem for s in solutions], env, renderer,
                                        engine.generate, max_new_tokens=cfg.data.cotnpot.max_new_tokens,
                                        timeout=cfg.data.cotnpot.timeout, seed=seed + 2)
            for s, v in zip(solutions, verdicts):
                s.cotnpot_agree = v
            stats["time_cotnpot"] = time.perf_counter() - t0
    finally:
        engine.shutdown()
    log(f"{model}: {len(solutions)} samples, {sum(s.correct for s in solutions)} correct")
    return solutions, stats


def run_data(cfg) -> Path:
    """`score verifier data`: returns the data folder."""
    from envs import make_env
    from score.config import to_yaml

    env = make_env(cfg.env.name, **cfg.env.kwargs)
    problems = env.load(cfg.data.split)[cfg.data.offset: cfg.data.offset + cfg.data.problems]
    if not problems:
        raise ValueError(f"data.split: {cfg.data.split!r} has no problems after data.offset={cfg.data.offset}")
    folder = cfg.data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(to_yaml(cfg))
    everything: list[Solution] = []
    per_model = []
    for m, model in enumerate(cfg.data.models or [cfg.model.path]):
        solutions, stats = generate_for(model, cfg, env, problems, seed=cfg.seed * 1000 + 10 * m)
        everything += solutions
        per_model.append({"model": model, **stats, "acc": sum(s.correct for s in solutions) / max(len(solutions), 1)})
    before = len(everything)
    if cfg.data.cotnpot.filter:
        everything = [s for s in everything if s.cotnpot_agree]
    kept = deduplicate(everything) if cfg.data.dedup else everything
    write_data([record(s, env) for s in kept], folder, cfg.data.format)
    stats = {**data_stats(kept, before), "after_cotnpot_filter": float(len(everything)), "models": per_model}
    (folder / "stats.json").write_text(json.dumps(stats, indent=2))
    console.print(f"wrote {len(kept)} samples ({stats['correct_frac']:.1%} correct) to {folder / 'data.jsonl'}")
    return folder
