"""A real pretrained model learns to self-correct: SmolLM2-135M-Instruct, SCoRe Stage I + Stage II, on this CPU.

One command, offline:

    python benchmarks/real_model.py                  # the full experiment (launch/smollm_stage{1,2}.yaml)
    python benchmarks/real_model.py --quick          # CI smoke: 2 steps per stage, 8 problems

1. base model (`score.models.smollm2_path()`) on held-out problems: two attempts, greedy. Its attempt 2 is the
   Self-Refine-style baseline: the same base model, prompted with the correction instruction to fix its own answer;
2. SCoRe Stage I from the base model, then the same evaluation;
3. SCoRe Stage II from Stage I's result, then the same evaluation;
4. OUT/report.md: before/after table with 95% bootstrap intervals, paired comparisons (same problems) with the base
   model, transitions, training curves (OUT/plots/*.png); every number also in OUT/real_model.json.

The task and the RL settings live in the two YAML files (env.kwargs must agree); held-out problems are the env's
test split, never trained on. `--set key=value` overrides both stages (e.g. --set train.lr=2e-6).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch"
QUICK = {"eval_limit": 8, "overrides": ["train.steps=2", "train.prompts_per_step=4", "rollout.n=2",
                                        "rollout.max_new_tokens=16", "rollout.engine=hf", "eval.every=0"]}
"""--quick (CI): the same recipe, 2 steps per stage on 8 training problems, 8 held-out problems, 16 tokens per attempt;
the hf engine, because five vLLM start-ups alone would exceed CI's budget (vLLM has its own tests)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/real_model", help="output folder (default runs/real_model)")
    parser.add_argument("--stage1-config", default=str(LAUNCH / "smollm_stage1.yaml"))
    parser.add_argument("--stage2-config", default=str(LAUNCH / "smollm_stage2.yaml"))
    parser.add_argument("--eval-limit", type=int, default=None,
                        help="held-out problems (default: eval.limit of Stage I's config)")
    parser.add_argument("--model", default=None, help="base model folder (default: SmolLM2-135M-Instruct, offline)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for both stages (repeatable)")
    parser.add_argument("--skip-stage1-eval", action="store_true", help="evaluate only the base and final models")
    parser.add_argument("--quick", action="store_true", help="CI smoke: 2 steps per stage, 8 held-out problems")
    return parser.parse_args(argv)


def evaluate_model(model: Path, folder: Path, cfg, limit: int) -> dict[str, Any]:
    """`score eval` of one model on the held-out split: greedy, two attempts, the rollout engine of the config."""
    from score.engines import SamplingParams
    from score.evaluate import run_eval

    params = SamplingParams(temperature=0.0, max_new_tokens=cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens)
    engine_kwargs = {k: v for k, v in cfg.rollout.engine_kwargs.items()} if cfg.rollout.engine != "hf" else {}
    return run_eval(str(model), cfg.env.name, folder, env_kwargs=dict(cfg.env.kwargs), split=cfg.eval.split,
                    limit=limit, params=params, engine=cfg.rollout.engine, engine_kwargs=engine_kwargs, plots=False)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    from score.config import load_config
    from score.models import smollm2_path
    from score.train import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = [*(QUICK["overrides"] if args.quick else []), *args.overrides]
    base = Path(args.model) if args.model else smollm2_path()
    cfg1 = load_config(args.stage1_config, [*overrides, f"model.path={base}", f"output_dir={out / 'stage1'}"])
    # Stage II's init_from is known only after Stage I; the base model stands in for the early check of the file.
    probe2 = load_config(args.stage2_config, [*overrides, f"model.path={base}", f"init_from={base}"])
    if (cfg1.env.name, cfg1.env.kwargs) != (probe2.env.name, probe2.env.kwargs):
        raise ValueError(f"{args.stage1_config} and {args.stage2_config} must use the same env (name and kwargs)")
    limit = args.eval_limit or (QUICK["eval_limit"] if args.quick else cfg1.eval.limit)
    timings: dict[str, float] = {}
    loads: dict[str, list[float]] = {"start": list(os.getloadavg())}
    started = time.perf_counter()

    def timed(name: str, call, *a, **kw):
        t = time.perf_counter()
        result = call(*a, **kw)
        timings[name] = time.perf_counter() - t
        loads[name] = list(os.getloadavg())
        print(f"[real_model] {name}: {timings[name]:.0f} s (load {loads[name][0]:.1f})", flush=True)
        return result

    evals = {"base": timed("eval_base", evaluate_model, base, out / "eval_base", cfg1, limit)}
    ray_was_running = ray.is_initialized()
    try:
        stage1 = timed("stage1", train, cfg1)
        if not args.skip_stage1_eval:
            evals["stage1"] = timed("eval_stage1", evaluate_model, stage1, out / "eval_stage1", cfg1, limit)
        cfg2 = load_config(args.stage2_config, [*overrides, f"model.path={base}", f"init_from={stage1}",
                                                f"output_dir={out / 'stage2'}"])
        final = timed("stage2", train, cfg2)
    finally:
        if ray.is_initialized() and not ray_was_running:
            ray.shutdown()
    evals["stage2"] = timed("eval_stage2", evaluate_model, final, out / "eval_stage2", cfg1, limit)
    timings["total"] = time.perf_counter() - started
    timings["stage1_plus_stage2"] = timings["stage1"] + timings["stage2"]
    result = write_report(out, evals, cfg1, cfg2, timings, loads)
    (out / "real_model.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


# ----- report -------------------------------------------------------------------------------------------------------

LABELS = {"base": "base (attempt 2 = Self-Refine-style baseline)", "stage1": "SCoRe Stage I",
          "stage2": "SCoRe Stage II (final)"}


def write_report(out: Path, evals: dict[str, dict[str, Any]], cfg1, cfg2, timings: dict[str, float],
                 loads: dict[str, list[float]]) -> dict[str, Any]:
    from score import report
    from score.plots import plot_attempt_accuracy, plot_training, plot_transitions, read_metrics

    comparisons = {name: report.compare_dirs(out / f"eval_{name}", out / "eval_base")
                   for name in evals if name != "base"}
    for name, comparison in comparisons.items():
        report.write_json(out / f"compare_{name}_vs_base.json", comparison)
    rows = [(LABELS[name], summary) for name, summary in evals.items()]
    stage1 = read_metrics(out / "stage1" / "metrics.jsonl")
    stage2 = read_metrics(out / "stage2" / "metrics.jsonl")
    offset = len(stage1)
    both = stage1 + [{**row, "step": row["step"] + offset} for row in stage2]
    plots = out / "plots"
    written = [plot_training(both, plots / "training.png"),
               plot_attempt_accuracy(rows, plots / "accuracy_per_attempt.png"),
               plot_transitions(rows, plots / "transitions.png")]
    base, final = evals["base"], evals["stage2"]
    d = comparisons["stage2"]["metrics"]
    self_refine = {"acc_t1": base["acc_t1"], "acc_t2": base["acc_t2"], "ci": base["ci"]}
    target = {
        "delta_positive": final["ci"]["delta"][0] > 0,
        "acc_t2_above_base": d["acc_t2"]["low"] > 0,
        "c2i_shrinks": final["delta_c2i"] < base["delta_c2i"],
    }
    n = base["n"]
    env = f"`{cfg1.env.name}` {dict(cfg1.env.kwargs) or ''}".strip()

    def pct(value: float) -> str:
        return report.percent(value, signed=True)

    verdict = (f"After Stage II: Δ(t1,t2) {pct(final['delta'])} [{pct(final['ci']['delta'][0])}, "
               f"{pct(final['ci']['delta'][1])}] (base {pct(base['delta'])}); Acc@t2 {100 * final['acc_t2']:.1f}% vs "
               f"the base's {100 * base['acc_t2']:.1f}% (paired difference {pct(d['acc_t2']['diff'])} "
               f"[{pct(d['acc_t2']['low'])}, {pct(d['acc_t2']['high'])}]); Δc→i {100 * base['delta_c2i']:.1f}% → "
               f"{100 * final['delta_c2i']:.1f}%. The paper's shape: Δ > 0 with its interval above 0: "
               f"{'yes' if target['delta_positive'] else 'no'}; Acc@t2 above the base's, interval above 0: "
               f"{'yes' if target['acc_t2_above_base'] else 'no'}; Δc→i shrinks: "
               f"{'yes' if target['c2i_shrinks'] else 'no'}.")
    load_line = ", ".join(f"{k} {v[0]:.1f}" for k, v in loads.items())
    parts = [
        "# SCoRe on a real model: SmolLM2-135M-Instruct",
        (f"Held-out: the first {n} problems of the test split of {env}, never trained on; two attempts each, greedy. "
         "Percent, [95% CI] from a bootstrap over problems. The base model's attempt 2 is the Self-Refine-style "
         "baseline (the base model prompted to correct itself, same instruction as in training)."),
        verdict,
        "## Before / after",
        report.eval_table(rows),
        "Transitions from attempt 1 to attempt 2 (problems):",
        report.transitions_table(rows),
        *[part for name, comparison in comparisons.items()
          for part in (f"## Paired comparison: {LABELS[name]} − base", report.compare_table(comparison, name, "base"))],
        "## Training",
        _training_line("Stage I", cfg1) + "; " + _training_line("Stage II", cfg2)
        + f". Steps after {offset} are Stage II.",
        "## Plots",
        "\n".join(f"![{p.stem}](plots/{p.name})" for p in written),
        "## Wall time (seconds)",
        "| phase | s |\n|---|---:|\n" + "\n".join(f"| {k} | {v:.0f} |" for k, v in timings.items()),
        f"Machine: {os.cpu_count()} cores; 1-minute load average at the end of each phase: {load_line}.",
    ]
    (out / "report.md").write_text("\n\n".join(parts) + "\n")
    return {"evals": evals, "self_refine_baseline": self_refine, "comparisons": comparisons, "target": target,
            "timings": timings, "load": loads, "model": str(cfg1.model.path),
            "stage1": {"steps": cfg1.train.steps, "config": str(out / "stage1" / "config.yaml")},
            "stage2": {"steps": cfg2.train.steps, "config": str(out / "stage2" / "config.yaml")}}


def _training_line(label: str, cfg) -> str:
    kl = f"β1={cfg.algo.beta1}" + (f", β2={cfg.algo.beta2}" if cfg.stage == 1 else f", α={cfg.algo.alpha}")
    return (f"{label}: {cfg.train.steps} steps × {cfg.train.prompts_per_step} prompts × {cfg.rollout.n} samples, "
            f"lr {cfg.train.lr}, {kl}, T={cfg.rollout.temperature}, engine {cfg.rollout.engine}")


def main(argv: list[str] | None = None) -> int:
    result = run(parse_args(argv))
    print((Path(result["stage1"]["config"]).parent.parent / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
