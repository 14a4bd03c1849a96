"""`score eval --select ... / --guide ...`: verifiers at inference, on an environment's held-out split.

1. the model samples S first-turn solutions per problem (`score.evaluate.evaluate`, temperature > 0); with
   `cotnpot` among the methods it also writes a program for each (`score.verifiers.cotnpot`);
2. with `--guide KIND`, a greedy attempt 1, the verifier's doubt, and attempt 2 as `--guide-mode` says
   (`score.verifiers.guided`);
3. the engine stops; every verifier given (`--verifier KIND=PATH`) scores every sample;
4. OUT/select.json (best-of-N curves with intervals, guided-correction summaries), OUT/select_samples.jsonl (every
   sample with its answer, reward and scores), OUT/report.md and OUT/plots/best_of_n.png.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from score.engines.base import SamplingParams
from score.evaluate import GREEDY, evaluate
from score.rollout import ChatRenderer
from score.stats import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES
from score.verifiers.data import safe_key
from score.verifiers.select import METHODS, best_of_n, curves_table, plot_curves, sizes_up_to

console = Console(stderr=True)


def parse_verifiers(items: list[str] | None) -> dict[str, str]:
    """--verifier KIND=PATH (repeatable) -> {kind: path}; the kind must match the checkpoint's verifier.json.

    >>> parse_verifiers(["orm=runs/v/final", "simpo=runs/s/final"])
    {'orm': 'runs/v/final', 'simpo': 'runs/s/final'}
    """
    out = {}
    for item in items or []:
        kind, sep, path = item.partition("=")
        if not sep or kind not in ("orm", "prm", "simpo"):
            raise ValueError(f"--verifier {item!r}: write KIND=PATH with KIND one of orm, prm, simpo")
        out[kind] = path
    return out


def check_request(methods: list[str], verifiers: dict[str, str], samples: int, temperature: float,
                  guide: str | None) -> None:
    """Fail before anything loads, naming the flag to fix."""
    from score.verifiers.scoring import read_spec

    for method in methods:
        if method not in METHODS:
            raise ValueError(f"--select: {method!r} is not one of {', '.join(METHODS)}")
        if method in ("orm", "prm", "simpo") and method not in verifiers:
            raise ValueError(f"--select {method} needs --verifier {method}=PATH (a `score verifier train` final/)")
    if "weighted-vote" in methods and not verifiers:
        raise ValueError("--select weighted-vote needs a verifier: --verifier orm=PATH (or prm, simpo)")
    if methods and (samples < 2 or temperature <= 0):
        raise ValueError("--select picks among samples: give --samples S >= 2 and --temperature > 0 (e.g. 16, 1.0)")
    if guide is not None and guide not in verifiers:
        raise ValueError(f"--guide {guide} needs --verifier {guide}=PATH")
    for kind, path in verifiers.items():
        spec = read_spec(path)
        if spec["kind"] != kind:
            raise ValueError(f"--verifier {kind}={path}: that checkpoint is a {spec['kind']} verifier")


def run_select(model: str, env_name: str, out: str | Path, *, env_kwargs: dict[str, Any] | None = None,
               split: str = "test", limit: int | None = None, samples: int = 16, params: SamplingParams = GREEDY,
               engine: str = "auto", engine_kwargs: dict[str, Any] | None = None, methods: list[str] = (),
               verifiers: dict[str, str] | None = None, weighted_by: str | None = None, guide: str | None = None,
               guide_mode: str = "request", guide_threshold: float | None = None, cotnpot_max_new_tokens: int = 128,
               resamples: int = DEFAULT_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE,
               plots: bool = True) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from envs import make_env
    from score.engines import make_engine
    from score.verifiers.scoring import Verifier

    methods, verifiers = list(methods), dict(verifiers or {})
    check_request(methods, verifiers, samples, params.temperature, guide)
    if guide is not None and guide_threshold is None:
        if guide == "simpo":
            raise ValueError("--guide simpo needs --guide-threshold (a mean token log-probability, e.g. -0.5)")
        guide_threshold = 0.5
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = make_env(env_name, **(env_kwargs or {}))
    problems = env.load(split)[:limit]
    if not problems:
        raise ValueError(f"--env {env_name}: split {split!r} has no problems")
    renderer = ChatRenderer(AutoTokenizer.from_pretrained(model))
    generator = make_engine(engine, str(model), **(engine_kwargs or {}))
    summary: dict[str, Any] = {"config": {"model": str(model), "env": env_name, "env_kwargs": env_kwargs or {},
                                          "split": split, "samples": samples, **dataclasses.asdict(params),
                                          "methods": methods, "verifiers": verifiers, "weighted_by": weighted_by},
                               "n": len(problems)}
    cotnpot = None
    guided = None
    try:
        if methods:
            console.print(f"sampling {samples} solutions for each of {len(problems)} problems")
            result = evaluate(env, problems, renderer, generator.generate, attempts=1, samples=samples, params=params,
                              chunk_size=256, show_progress=True)
            if "cotnpot" in methods:
                from score.verifiers.cotnpot import cotnpot_verdicts

                cotnpot = cotnpot_verdicts([it.texts[0] for it in result.samples],
                                           [it.problem for it in result.samples], env, renderer, generator.generate,
                                           max_new_tokens=cotnpot_max_new_tokens, seed=params.seed)
        if guide is not None:
            from score.verifiers.guided import guided_correction

            guide_params = dataclasses.replace(GREEDY, max_new_tokens=params.max_new_tokens, seed=params.seed)
            guided = guided_correction(env, problems, renderer, generator.generate, Verifier(verifiers[guide]),
                                       mode=guide_mode, threshold=guide_threshold, params=guide_params,
                                       resamples=resamples, confidence=confidence)
    finally:
        generator.shutdown()

    written = []
    if methods:
        items = result.samples
        messages = [env.first_turn_messages(it.problem) for it in items]
        scores = {}
        for kind, path in verifiers.items():
            console.print(f"scoring {len(items)} samples with the {kind} verifier {path}")
            scores[kind] = Verifier(path).score(messages, [it.texts[0] for it in items])
        keys = [safe_key(env, it.texts[0], it.problem) for it in items]
        per_problem = []
        for p in range(len(problems)):
            block = range(p * samples, (p + 1) * samples)
            per_problem.append({"keys": [keys[i] for i in block], "rewards": [items[i].rewards[0] for i in block],
                                "scores": {k: [v[i] for i in block] for k, v in scores.items()},
                                "cotnpot": [cotnpot[i] for i in block] if cotnpot else None})
        curves = best_of_n(per_problem, [*methods, "oracle"], sizes_up_to(samples), weight_kind=weighted_by,
                           resamples=resamples, confidence=confidence, seed=params.seed)
        summary["best_of_n"] = curves
        if cotnpot is not None:
            summary["cotnpot_agree_frac"] = sum(cotnpot) / len(cotnpot)
        with (out / "select_samples.jsonl").open("w") as f:
            for i, it in enumerate(items):
                f.write(json.dumps({"problem_id": it.problem.id, "sample": it.sample, "text": it.texts[0],
                                    "answer": keys[i], "reward": it.rewards[0],
                                    "scores": {k: v[i] for k, v in scores.items()},
                                    **({"cotnpot_agree": cotnpot[i]} if cotnpot else {})}) + "\n")
        if plots:
            written.append(plot_curves(curves, out / "plots" / "best_of_n.png",
                                       f"best-of-N on {env_name}/{split} ({len(problems)} problems)"))
    if guided is not None:
        with (out / "guided_samples.jsonl").open("w") as f:
            for record in guided.pop("records"):
                f.write(json.dumps(record) + "\n")
        summary["guided_correction"] = guided
    (out / "select.json").write_text(json.dumps(summary, indent=2))
    report = write_select_report(out, summary, [p.relative_to(out) for p in written])
    console.print(report.read_text(), soft_wrap=True)
    return summary


def write_select_report(out: Path, summary: dict[str, Any], plots: list[Path]) -> Path:
    from score.report import eval_table

    cfg = summary["config"]
    parts = [f"# Verifiers at inference: {Path(cfg['model']).name} on {cfg['env']}/{cfg['split']}"]
    if "best_of_n" in summary:
        parts += [f"## Best-of-N selection ({summary['n']} problems, {cfg['samples']} samples each at temperature "
                  f"{cfg['temperature']})",
                  "Accuracy (%) of the selected sample [95% bootstrap CI over problems]; N samples per problem, "
                  "the mean over the S/N disjoint blocks of each problem's samples; oracle: any of the N is right.",
                  curves_table(summary["best_of_n"])]
        if "cotnpot_agree_frac" in summary:
            parts.append(f"CoTnPoT: {100 * summary['cotnpot_agree_frac']:.1f}% of the samples' programs agree.")
    if "guided_correction" in summary:
        g = summary["guided_correction"]
        rows = [("verifier-guided", g["guided"])] + ([("always correct", g["always"])] if "always" in g else [])
        parts += [f"## Verifier-guided self-correction (mode {g['mode']}, doubt: score < {g['threshold']})",
                  f"Attempt 2 requested for {100 * g['requested_frac']:.1f}% of the problems; Acc@t2 is the final "
                  "answer (y2 where doubted, y1 elsewhere).", eval_table(rows)]
    if plots:
        parts += ["## Plots", "\n".join(f"![{Path(p).stem}]({p})" for p in plots)]
    path = out / "report.md"
    path.write_text("\n\n".join(parts) + "\n")
    return path
