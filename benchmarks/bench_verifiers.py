"""Verifiers end to end on one setting: data, ORM / SimPO / PRM training, best-of-N selection on held-out problems,
verifier-guided self-correction, and weak-to-strong.

    python benchmarks/bench_verifiers.py --setting demo       # the demo's arithmetic model (trained and cached if
                                                              # missing), launch/demo_verifier.yaml
    python benchmarks/bench_verifiers.py --setting smollm2    # SmolLM2-135M-Instruct, launch/smollm2_verifier.yaml

Every step is the command a user runs (`score verifier data|train|w2s`, `score eval --select/--guide`), called
in-process; its wall time is recorded. The verifiers train on samples of the train split; selection, guided
correction and the weak-to-strong evaluation use the test split, which no verifier sees.

Writes OUT/results.json (every number and wall time) and OUT/report.md (the tables for the README).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {
    "demo": {"config": "launch/demo_verifier.yaml", "out": "runs/verifier-demo"},
    "smollm2": {"config": "launch/smollm2_verifier.yaml", "out": "runs/verifier-smollm2"},
}


def demo_base() -> Path:
    from score.pretrain import PretrainSettings, cached_base_model

    path, _ = cached_base_model(PretrainSettings(digits=2, ops="+", env_num_train=2000, env_num_test=500,
                                                 env_seed=1234))
    return path


def weak_model(folder: Path) -> Path:
    """The weak supervisor's base: the tiny random Llama of `score tiny-model` (0.4M parameters, knows nothing)."""
    from score.tiny import build_tiny_model, default_corpus

    if not (folder / "config.json").is_file():
        build_tiny_model(folder, default_corpus(), seed=0)
    return folder


def score_cli(*argv: str) -> None:
    """One `score ...` command in a fresh process (its own Ray cluster and threads), as a user runs it."""
    print("$ score " + " ".join(argv), flush=True)
    for attempt in range(3):  # on an overloaded machine Ray's 30 s node start-up limit can fail a start; retry
        if subprocess.run([sys.executable, "-m", "score.cli", *argv], cwd=ROOT).returncode == 0:
            return
        print(f"failed (attempt {attempt + 1} of 3)", flush=True)
    raise RuntimeError("score " + " ".join(argv) + " failed 3 times")


def samples_as_data(select_dir: Path, env_name: str, env_kwargs: dict, folder: Path) -> Path:
    """The selection run's labelled samples (test split) as a verifier data folder: the w2s evaluation set."""
    from envs import make_env

    env = make_env(env_name, **env_kwargs)
    problems = {p.id: p for p in env.load("test")}
    folder.mkdir(parents=True, exist_ok=True)
    seen = set()
    with (folder / "data.jsonl").open("w") as f:
        for line in (select_dir / "select_samples.jsonl").read_text().splitlines():
            s = json.loads(line)
            key = (s["problem_id"], " ".join(s["text"].split()))
            if key in seen:
                continue
            seen.add(key)
            f.write(json.dumps({"problem_id": s["problem_id"], "messages": env.first_turn_messages(
                problems[s["problem_id"]]), "solution": s["text"], "correct": int(s["reward"] >= 0.5)}) + "\n")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=list(SETTINGS), default="demo")
    parser.add_argument("--out", default=None)
    parser.add_argument("--eval-limit", type=int, default=200, help="held-out problems for selection")
    parser.add_argument("--samples", type=int, default=16, help="S: samples per held-out problem")
    parser.add_argument("--guide-limit", type=int, default=500, help="held-out problems for guided correction")
    parser.add_argument("--steps", nargs="*", default=["data", "train", "select", "guide", "w2s"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    setting = SETTINGS[args.setting]
    out = Path(args.out or setting["out"])
    out.mkdir(parents=True, exist_ok=True)
    from score.verifiers.config import load_verifier_config

    if args.setting == "demo":
        model = str(demo_base())
    else:
        from score.models import smollm2_path

        model = str(smollm2_path())
    common = [f"model.path={model}", f"data.path={out / 'data'}", *args.overrides]
    cfg = load_verifier_config(setting["config"], common)
    env_kwargs = json.dumps(dict(cfg.env.kwargs))
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results.update({"setting": args.setting, "model": model, "overrides": args.overrides})
    times = results.setdefault("wall_s", {})
    uptime = results.setdefault("load", {})

    def timed(name, fn):
        uptime[f"{name}_start"] = os.getloadavg()[0]
        start = time.perf_counter()
        fn()
        times[name] = round(time.perf_counter() - start, 1)
        uptime[f"{name}_end"] = os.getloadavg()[0]
        results_path.write_text(json.dumps(results, indent=2))

    if "data" in args.steps:
        timed("data", lambda: score_cli("verifier", "data", setting["config"], *common))
        results["data"] = json.loads((out / "data/stats.json").read_text())
    finals = {}
    for kind in ("orm", "simpo", "prm"):
        finals[kind] = out / kind / "final"
        if "train" in args.steps and not (finals[kind] / "verifier.json").is_file():  # rm -r OUT/KIND to retrain
            timed(f"train_{kind}", lambda kind=kind: score_cli("verifier", "train", setting["config"], *common,
                                                                f"verifier.kind={kind}", f"output_dir={out / kind}"))
    verifier_flags = [x for kind, path in finals.items() for x in ("--verifier", f"{kind}={path}")]
    eval_flags = ["--model", model, "--env", cfg.env.name, "--env-kwargs", env_kwargs, "--split", "test",
                  "--max-new-tokens", str(cfg.rollout.max_new_tokens), "--engine", cfg.rollout.engine,
                  "--dtype", cfg.data.engine_kwargs.get("dtype", "float32")]
    if "select" in args.steps:
        timed("select", lambda: score_cli("eval", *eval_flags, "--limit", str(args.eval_limit), "--samples",
                                          str(args.samples), "--temperature", str(cfg.rollout.temperature),
                                          "--select", "vote,orm,simpo,prm,weighted-vote", "--weighted-by", "orm",
                                          *verifier_flags, "--out", str(out / "select")))
        results["select"] = json.loads((out / "select/select.json").read_text())
    if "guide" in args.steps:
        for mode in ("keep", "request"):
            timed(f"guide_{mode}", lambda mode=mode: score_cli(
                "eval", *eval_flags, "--limit", str(args.guide_limit), "--guide", "orm", "--guide-mode", mode,
                "--verifier", f"orm={finals['orm']}", "--out", str(out / f"guide_{mode}")))
            results[f"guide_{mode}"] = json.loads((out / f"guide_{mode}/select.json").read_text())["guided_correction"]
    if "w2s" in args.steps:
        eval_data = samples_as_data(out / "select", cfg.env.name, dict(cfg.env.kwargs), out / "w2s_eval")
        weak = weak_model(out / "weak-base")
        timed("w2s", lambda: score_cli("verifier", "w2s", setting["config"], *common, f"output_dir={out / 'w2s'}",
                                       f"w2s.weak_model={weak}", f"w2s.eval_data={eval_data}",
                                       "w2s.student_kind=simpo"))
        results["w2s"] = json.loads((out / "w2s/w2s.json").read_text())
    results_path.write_text(json.dumps(results, indent=2))
    write_report(out, results)
    print((out / "report.md").read_text())
    return 0


def write_report(out: Path, results: dict) -> None:
    from score.report import eval_table
    from score.verifiers.select import curves_table
    from score.verifiers.w2s import w2s_table

    parts = [f"# Verifiers: {results['setting']} ({results['model']})"]
    if "data" in results:
        d = results["data"]
        parts.append(f"Data: {int(d['samples'])} samples, {int(d['kept'])} after de-duplication, "
                     f"{100 * d['correct_frac']:.1f}% correct, {int(d['problems_with_both'])} of "
                     f"{int(d['problems'])} problems with both a right and a wrong sample"
                     + (f", {int(d['steps'])} labelled steps ({100 * d['good_step_frac']:.1f}% good)"
                        if "steps" in d else "") + ".")
    if "select" in results:
        parts += ["## Best-of-N on held-out problems", curves_table(results["select"]["best_of_n"])]
    for mode in ("keep", "request"):
        g = results.get(f"guide_{mode}")
        if g:
            rows = [("ORM-guided", g["guided"])] + ([("always correct", g["always"])] if "always" in g else [])
            parts += [f"## Guided correction, mode {mode} (attempt 2 requested for {100 * g['requested_frac']:.1f}%)",
                      eval_table(rows)]
    if "w2s" in results:
        parts += ["## Weak-to-strong", w2s_table([("", results["w2s"])])]
    parts.append("Wall times (s): " + ", ".join(f"{k} {v}" for k, v in results["wall_s"].items()))
    parts.append("Load average (1 min) at each step's start/end: " + ", ".join(
        f"{k} {v:.1f}" for k, v in results["load"].items()))
    (out / "report.md").write_text("\n\n".join(parts) + "\n")


if __name__ == "__main__":
    sys.exit(main())
