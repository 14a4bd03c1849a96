"""Self-training without labels on the demo's arithmetic task: SCPO, IWSI and IWSI's baselines against one base.

    python benchmarks/bench_selftrain.py                      # every variant, held-out test split (500 problems)
    python benchmarks/bench_selftrain.py --split train --eval-limit 300 --variants scpo --set train.lr=3e-4
                                                              # tuning: train-split problems only

The base model is the demo's (`score demo` trains it once and caches it in ~/.cache/score; this script does the same
if it is missing). Each variant runs its launch config (launch/demo_scpo.yaml, launch/demo_iwsi.yaml with
iwsi.filter set) for its rounds through Ray, then `score eval`'s code evaluates the final model and the base on the
same problems (greedy, two attempts) and `score compare`'s code gives paired differences with 95% intervals.

Writes OUT/report.md (the table), OUT/results.json, OUT/<variant>/ (the runs) and OUT/eval_<variant>/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    "scpo": ("launch/demo_scpo.yaml", "scpo", []),
    "iwsi": ("launch/demo_iwsi.yaml", "iwsi", ["iwsi.filter=ds"]),
    "lmsi": ("launch/demo_iwsi.yaml", "iwsi", ["iwsi.filter=majority"]),
    "entropy": ("launch/demo_iwsi.yaml", "iwsi", ["iwsi.filter=entropy"]),
    "no_filter": ("launch/demo_iwsi.yaml", "iwsi", ["iwsi.filter=none"]),
}


def base_model(env_kwargs: dict) -> Path:
    """The demo's base model for this task, from the cache or trained now (a few minutes)."""
    from score.pretrain import PretrainSettings, cached_base_model

    settings = PretrainSettings(digits=env_kwargs["digits"], ops=env_kwargs["ops"], env_num_train=env_kwargs["num_train"],
                                env_num_test=env_kwargs["num_test"], env_seed=env_kwargs["seed"])
    path, _ = cached_base_model(settings)
    return path


def evaluate(model: Path, folder: Path, env_kwargs: dict, split: str, limit: int | None, max_new_tokens: int) -> dict:
    from score.evaluate import GREEDY, run_eval

    params = dataclasses.replace(GREEDY, max_new_tokens=max_new_tokens)
    return run_eval(str(model), "arithmetic", folder, env_kwargs=env_kwargs, split=split, limit=limit, params=params,
                    engine="hf", plots=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/selftrain-demo")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--split", default="test", help="evaluation split: test (held out) or train (for tuning)")
    parser.add_argument("--eval-limit", type=int, default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every variant (repeatable)")
    args = parser.parse_args(argv)

    import ray

    from score import report
    from score.selftrain.config import load_selftrain_config
    from score.selftrain.loop import run

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    probe = load_selftrain_config(ROOT / VARIANTS["scpo"][0], [f"model.path={_stand_in(out)}"])
    env_kwargs, max_new_tokens = dict(probe.env.kwargs), probe.rollout.max_new_tokens
    base = base_model(env_kwargs)
    results = {"base": str(base), "split": args.split, "overrides": args.overrides, "load_start": os.getloadavg(),
               "variants": {}}
    t0 = time.perf_counter()
    base_eval = evaluate(base, out / "eval_base", env_kwargs, args.split, args.eval_limit, max_new_tokens)
    results["base_eval"] = {"acc_t1": base_eval["acc_t1"], "acc_t2": base_eval["acc_t2"], "ci": base_eval["ci"],
                            "seconds": time.perf_counter() - t0}
    for name in args.variants.split(","):
        path, method, overrides = VARIANTS[name]
        cfg = load_selftrain_config(ROOT / path, [*overrides, *args.overrides, f"model.path={base}",
                                                  f"output_dir={out / name}"], method=method)
        t0 = time.perf_counter()
        try:
            final = run(cfg)
        finally:
            ray.shutdown()
        train_seconds = time.perf_counter() - t0
        summary = evaluate(final, out / f"eval_{name}", env_kwargs, args.split, args.eval_limit, max_new_tokens)
        comparison = report.compare_dirs(out / f"eval_{name}", out / "eval_base")
        rounds = json.loads((out / name / "summary.json").read_text())["rounds"]
        results["variants"][name] = {
            "acc_t1": summary["acc_t1"], "acc_t2": summary["acc_t2"], "ci": summary["ci"],
            "diff_t1": comparison["metrics"]["acc_t1"], "diff_t2": comparison["metrics"]["acc_t2"],
            "rounds": rounds, "train_seconds": train_seconds, "config": dataclasses.asdict(cfg),
        }
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    results["total_seconds"] = time.perf_counter() - started
    results["load_end"] = os.getloadavg()
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    table = results_table(results)
    (out / "report.md").write_text(table + "\n")
    print(table)
    return 0


def _stand_in(out: Path) -> Path:
    """A folder that passes the model.path check before the base model exists (only the task settings are read)."""
    folder = out / ".stand-in"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    return folder


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _ci(value: float, ci: list[float], signed: bool = False) -> str:
    fmt = (lambda x: f"{100 * x:+.1f}") if signed else _pct
    return f"{fmt(value)} [{fmt(ci[0])}, {fmt(ci[1])}]"


def results_table(results: dict) -> str:
    """Markdown: one row per variant, accuracy with 95% intervals, the paired difference from the base, and the
    per-round pseudo-label accuracy, problems kept and training wall time."""
    n_label = "held-out test" if results["split"] == "test" else f"{results['split']}-split (tuning)"
    base = results["base_eval"]
    header = (f"| {n_label} problems, greedy | Acc@t1 [95% CI] | Acc@t1 − base [paired 95% CI] | Acc@t2 [95% CI] | "
              "pseudo-label acc, rounds 1 / 2 | problems kept, rounds 1 / 2 | train (s) |")
    base_row = (f"| base | {_ci(base['acc_t1'], base['ci']['acc_t1'])} | – | "
                f"{_ci(base['acc_t2'], base['ci']['acc_t2'])} | – | – | – |")
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|", base_row]
    for name, v in results["variants"].items():
        d = v["diff_t1"]
        pseudo = " / ".join(_pct(r.get("pseudo_label_acc", float("nan"))) for r in v["rounds"])
        kept = " / ".join(f"{r['kept']:.0f}" for r in v["rounds"])
        lines.append(f"| {name} | {_ci(v['acc_t1'], v['ci']['acc_t1'])} | {_ci(d['diff'], [d['low'], d['high']], True)}"
                     f" | {_ci(v['acc_t2'], v['ci']['acc_t2'])} | {pseudo} | {kept} | {v['train_seconds']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
