"""`score demo`: one command, offline, on a CPU, that shows a model learning to self-correct with SCoRe.

1. base model: a tiny Llama taught two-turn arithmetic by SFT (`score.pretrain`), cached after the first run;
2. evaluate it on held-out problems: two attempts, greedy;
3. SCoRe Stage I, then Stage II from its result, through Ray (`score.train`, configs launch/demo_stage*.yaml);
4. evaluate the result on the same problems; write the before/after table with intervals, the paired comparison
   and the plots to OUT/report.md.

The RL settings live in the two YAML files; the task (env.kwargs) is read from Stage I's file so that the SFT data
avoids both the RL prompts and the held-out problems. Everything lands in OUT (default runs/demo):

    OUT/demo.json                 every number of the report, the timings and the settings
    OUT/report.md                 the report; OUT/plots/*.png its plots
    OUT/eval_base/, OUT/eval_score/   `score eval` folders (eval.json, samples.jsonl) of the base and SCoRe models
    OUT/stage1/, OUT/stage2/      `score train` runs (metrics.jsonl, final/)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from score.pretrain import PretrainSettings

console = Console()

LAUNCH = Path(__file__).resolve().parent.parent / "launch"
QUICK = {"pretrain_steps": 40, "eval_limit": 24, "stage_overrides": ["train.steps=2", "train.prompts_per_step=4"]}
"""`--quick`: the CI version; every phase runs, nothing has time to learn."""


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `score demo` (the lead wires them into score/cli.py)."""
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--engine", default=None, choices=["hf", "vllm", "auto"],
                        help="rollout engine of the RL stages and of the evaluations (default: the YAML's, hf: "
                             "faster than vLLM for this tiny model on CPU)")
    parser.add_argument("--eval-limit", type=int, default=None, help="held-out problems to evaluate (default: all)")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="SFT steps of the base model")
    parser.add_argument("--stage1-config", default=str(LAUNCH / "demo_stage1.yaml"))
    parser.add_argument("--stage2-config", default=str(LAUNCH / "demo_stage2.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for both stages, e.g. --set algo.alpha=5 (repeatable)")
    parser.add_argument("--cache-dir", default=None, help="where base models are cached (default $SCORE_CACHE or "
                        "~/.cache/score)")
    parser.add_argument("--quick", action="store_true", help="a shortened demo (CI): every phase, few steps")


def run_demo(args: argparse.Namespace) -> int:
    """Run every phase; returns 0 when the report is written."""
    from score.config import load_config

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quick_overrides = QUICK["stage_overrides"] if args.quick else []
    overrides = [*quick_overrides, *args.overrides] + ([f"rollout.engine={args.engine}"] if args.engine else [])
    # Stage I's file fixes the task; loading both now makes a typo fail before anything runs (the base model does
    # not exist yet, so a stand-in folder passes the model.path check).
    with tempfile.TemporaryDirectory() as stand_in:
        (Path(stand_in) / "config.json").write_text("{}")
        probe1 = load_config(args.stage1_config, [*overrides, f"model.path={stand_in}"])
        probe2 = load_config(args.stage2_config, [*overrides, f"model.path={stand_in}", "init_from=null"])
    if probe1.env != probe2.env:
        raise ValueError(f"{args.stage1_config} and {args.stage2_config} must use the same env (name and kwargs)")
    if probe1.env.name != "arithmetic":
        raise ValueError(f"env.name: the demo's base model knows only the arithmetic env, not {probe1.env.name!r}")
    settings = _settings(probe1.env.kwargs, args)
    engine = probe1.rollout.engine
    eval_limit = args.eval_limit or (QUICK["eval_limit"] if args.quick else None)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    # 1. the base model
    console.rule("[bold]1/4 base model")
    with _timed(timings, "base_model"):
        base, cached = _base_model(settings, args.cache_dir)
    console.print(f"base model: {base} ({'from the cache' if cached else 'trained now, cached for the next run'})")

    # 2. the base model on held-out problems
    console.rule("[bold]2/4 base model on held-out problems")
    eval_kwargs = {"env_kwargs": dict(probe1.env.kwargs), "limit": eval_limit, "engine": engine,
                   "max_new_tokens": probe1.rollout.max_new_tokens}
    with _timed(timings, "eval_base"):
        before = _evaluate(base, out / "eval_base", **eval_kwargs)
    _say("base model", before)

    # 3. SCoRe: Stage I, then Stage II from its result, through Ray
    console.rule("[bold]3/4 SCoRe training (Ray)")
    import ray

    from score.train import train

    ray_was_running = ray.is_initialized()  # e.g. a test session's cluster: leave it running
    try:
        with _timed(timings, "stage1"):
            cfg1 = load_config(args.stage1_config, [*overrides, f"model.path={base}", f"output_dir={out / 'stage1'}"])
            stage1 = train(cfg1)
        _say_stage("Stage I", out / "stage1")
        with _timed(timings, "stage2"):
            cfg2 = load_config(args.stage2_config, [*overrides, f"model.path={base}", f"init_from={stage1}",
                                                    f"output_dir={out / 'stage2'}"])
            final = train(cfg2)
        _say_stage("Stage II", out / "stage2")
    finally:
        if ray.is_initialized() and not ray_was_running:
            ray.shutdown()

    # 4. the SCoRe model on the same problems, and the report
    console.rule("[bold]4/4 SCoRe model on the same held-out problems")
    with _timed(timings, "eval_score"):
        after = _evaluate(final, out / "eval_score", **eval_kwargs)
    _say("after SCoRe", after)
    timings["total"] = time.perf_counter() - started
    result = _write_report(out, before, after, timings, settings, cfg1, cfg2, cached)
    result["timings"] = timings
    (out / "demo.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    _say_comparison(result["comparison"])
    console.print(f"total {timings['total']:.0f} s; report: {out / 'report.md'}")
    return 0


# ----- phases -------------------------------------------------------------------------------------------------------


def _settings(env_kwargs: dict[str, Any], args: argparse.Namespace) -> PretrainSettings:
    known = {"digits": "digits", "ops": "ops", "num_train": "env_num_train", "num_test": "env_num_test",
             "seed": "env_seed", "correction_instruction": "correction_instruction"}
    unknown = sorted(set(env_kwargs) - set(known))
    if unknown:
        raise ValueError(f"env.kwargs: the demo's base model does not support {unknown}; use {sorted(known)}")
    values = {known[k]: v for k, v in env_kwargs.items()}
    steps = args.pretrain_steps or (QUICK["pretrain_steps"] if args.quick else None)
    if steps:
        values["steps"] = steps
    return PretrainSettings(**values)


def _base_model(settings: PretrainSettings, cache_dir: str | None) -> tuple[Path, bool]:
    from score.pretrain import base_model_folder, cached_base_model

    if (base_model_folder(settings, cache_dir) / "config.json").is_file():
        return cached_base_model(settings, root=cache_dir)
    console.print(f"training the base model ({settings.steps} SFT steps; cached for the next run)")
    with Progress(TextColumn("[bold]SFT of the base model"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[status]}"), console=console) as progress:
        task = progress.add_task("sft", total=settings.steps, status="")

        def on_step(step: int, loss: float) -> None:
            progress.update(task, completed=step, status=f"loss {loss:.3f}")

        return cached_base_model(settings, on_step, root=cache_dir)


def _evaluate(model: Path, folder: Path, *, env_kwargs: dict[str, Any], limit: int | None, engine: str,
              max_new_tokens: int) -> dict[str, Any]:
    """`score eval` of one model (greedy, two attempts) into `folder`; returns its eval.json."""
    from score.evaluate import GREEDY, run_eval

    params = dataclasses.replace(GREEDY, max_new_tokens=max_new_tokens)
    return run_eval(str(model), "arithmetic", folder, env_kwargs=env_kwargs, limit=limit, params=params,
                    engine=engine, plots=False)


def _write_report(out: Path, before: dict, after: dict, timings: dict[str, float], settings: PretrainSettings,
                  cfg1, cfg2, cached: bool) -> dict[str, Any]:
    from score import report
    from score.plots import plot_attempt_accuracy, plot_training, plot_transitions, read_metrics

    comparison = report.compare_dirs(out / "eval_score", out / "eval_base")
    report.write_json(out / "compare.json", comparison)
    rows = [("base", before), ("SCoRe (Stage II)", after)]
    plots = out / "plots"
    stage1 = read_metrics(out / "stage1" / "metrics.jsonl")
    stage2 = read_metrics(out / "stage2" / "metrics.jsonl")
    # one curve over both stages: Stage II's steps continue Stage I's
    offset = len(stage1)
    both = stage1 + [{**row, "step": row["step"] + offset} for row in stage2]
    written = [plot_training(both, plots / "training.png"),
               plot_attempt_accuracy(rows, plots / "accuracy_per_attempt.png"),
               plot_transitions(rows, plots / "transitions.png")]
    d = comparison["metrics"]
    verdict = (
        f"Δ(t1,t2) went from {_pct(before['delta'])} to {_pct(after['delta'])} "
        f"(paired difference {_pct(d['delta']['diff'])} [{_pct(d['delta']['low'])}, {_pct(d['delta']['high'])}]); "
        f"Acc@t2 from {100 * before['acc_t2']:.1f}% to {100 * after['acc_t2']:.1f}% "
        f"(paired difference {_pct(d['acc_t2']['diff'])} [{_pct(d['acc_t2']['low'])}, {_pct(d['acc_t2']['high'])}])."
    )
    timing_rows = "\n".join(f"| {name} | {seconds:.0f} |" for name, seconds in timings.items())
    parts = [
        "# SCoRe demo: a tiny model learns to self-correct",
        (f"Held-out: {before['n']} arithmetic test problems ({settings.digits}-digit `{settings.ops}`), never seen in "
         "SFT or RL; two attempts each, greedy. Percent, [95% CI] from a bootstrap over problems; the comparison is "
         "paired (same problems), * = the interval excludes 0."),
        verdict,
        "## Before / after",
        report.eval_table(rows),
        "Transitions from attempt 1 to attempt 2 (problems):",
        report.transitions_table(rows),
        "## Paired comparison (SCoRe − base)",
        report.compare_table(comparison, "SCoRe", "base"),
        "## Training",
        _training_line("Stage I", cfg1) + "; " + _training_line("Stage II", cfg2)
        + f". Steps after {offset} are Stage II; dashed: held-out evaluation during training.",
        "## Plots",
        "\n".join(f"![{p.stem}](plots/{p.name})" for p in written),
        "## Wall time (seconds)",
        "| phase | s |\n|---|---:|\n" + timing_rows
        + ("\n\n(base model from the cache)" if cached else ""),
    ]
    (out / "report.md").write_text("\n\n".join(parts) + "\n")
    return {"before": before, "after": after, "comparison": comparison,
            "pretrain": dataclasses.asdict(settings), "base_model_cached": cached,
            "stage1": {"steps": cfg1.train.steps, "output_dir": cfg1.output_dir},
            "stage2": {"steps": cfg2.train.steps, "output_dir": cfg2.output_dir}}


def _training_line(label: str, cfg) -> str:
    kl = f"β1={cfg.algo.beta1}" + (f", β2={cfg.algo.beta2}" if cfg.stage == 1 else f", α={cfg.algo.alpha}")
    return (f"{label}: {cfg.train.steps} steps × {cfg.train.prompts_per_step} prompts × {cfg.rollout.n} samples, "
            f"lr {cfg.train.lr}, {kl}, engine {cfg.rollout.engine}")


# ----- printing -----------------------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    from score.report import percent

    return percent(value, signed=True)


class _timed:
    """Context manager adding the block's wall time to timings[name]."""

    def __init__(self, timings: dict[str, float], name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timings[self.name] = time.perf_counter() - self.start
        if exc[0] is None:
            console.print(f"[dim]{self.name}: {self.timings[self.name]:.0f} s[/dim]")


def _say(label: str, summary: dict[str, Any]) -> None:
    console.print(f"[bold]{label}[/bold] on {summary['n']} held-out problems: acc_t1 {100 * summary['acc_t1']:.1f}%"
                  f"  acc_t2 {100 * summary['acc_t2']:.1f}%  Δ {_pct(summary['delta'])}"
                  f"  (i→c {100 * summary['delta_i2c']:.1f}%, c→i {100 * summary['delta_c2i']:.1f}%)")


def _say_stage(label: str, run_dir: Path) -> None:
    """The last step of a training run, with its latest in-training held-out evaluation if there is one."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last = rows[-1]
    text = (f"[bold]{label}[/bold] done, {len(rows)} steps: last batch acc_t1 {100 * last['acc_t1']:.0f}%  "
            f"acc_t2 {100 * last['acc_t2']:.0f}%  kl_t1 {last['kl_t1']:.3f}  kl_t2 {last['kl_t2']:.3f}")
    evals = [r for r in rows if "eval_acc_t1" in r]
    if evals:
        e = evals[-1]
        text += (f"; held-out ({e['eval_n']} problems, step {e['step']}): acc_t1 {100 * e['eval_acc_t1']:.0f}%  "
                 f"acc_t2 {100 * e['eval_acc_t2']:.0f}%  Δ {_pct(e['eval_delta'])}")
    console.print(text)


def _say_comparison(comparison: dict[str, Any]) -> None:
    for name in ("acc_t1", "acc_t2", "delta", "delta_i2c", "delta_c2i"):
        d = comparison["metrics"][name]
        mark = "[green]*[/green]" if d["significant"] else ""
        console.print(f"  SCoRe − base {name:>9}: {_pct(d['diff'])} [{_pct(d['low'])}, {_pct(d['high'])}] {mark}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m score.demo", description=__doc__.splitlines()[0])
    add_demo_arguments(parser)
    return run_demo(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
