"""Step speed: our SCoRe step against TRL's GRPOTrainer on the same model, prompts, samples and completion length.

One command, offline (README, "Step speed"):

    flock /tmp/score-bench.lock python benchmarks/bench_step.py            # SmolLM2-135M-Instruct, ~15 min
    python benchmarks/bench_step.py --quick                                 # CI smoke: tiny model, hf engine, no TRL

Every run is a fresh process (its wall time includes Python, Ray and engine start-up), on SmolLM2-135M-Instruct
(`score.models.smollm2_path()`), fp32, the word-problem prompts of launch/smollm_stage1.yaml: our `score train` with
the transformers (hf) and vLLM engines, synchronous and (where this build has `train.async`) asynchronous, and TRL's
GRPOTrainer (use_cpu, beta = our KL weight, so it also keeps and runs a reference model) on the prompts our run
trained on, in the same order, with the same samples per prompt and the same token budget per completion. The
first step of each run is a warm-up and is left out of the per-step numbers. Printed (and written to
OUT/bench_step.md, OUT/bench_step.json): seconds per step and per phase, generated tokens per step, seconds per
1,000 generated tokens and its ratio to TRL's, wall time, and the load average (numbers under load are not
comparable). TRL is optional (`pip install --no-deps trl`); without it only our runs are measured.

Workloads differ as SCoRe and GRPO do: our sample is two attempts (attempt 2 sees the problem, attempt 1 and the
correction instruction), so it generates up to twice the tokens of a GRPO sample and trains on longer sequences;
hence the comparison per 1,000 generated tokens.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "launch" / "smollm_stage1.yaml"
DEFAULT_RUNS = "hf:sync,hf:sync:threads=1,vllm:sync,vllm:async,trl"
QUICK = {"steps": 2, "prompts": 2, "n": 2, "max_new_tokens": 8, "micro_batch": 2, "runs": "hf:sync"}
"""--quick: a tiny random model on the arithmetic task, 2 steps, the hf engine only (about 30 s)."""

OUR_PHASES = ("time_rollout", "time_reward", "time_update", "time_sync", "time_sync_check")
LEARNER_PHASES = ("time_policy_forward", "time_ref_forward", "time_backward", "time_optimizer")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench_step", help="output folder (default runs/bench_step)")
    parser.add_argument("--runs", default=None,
                        help=f"comma-separated ENGINE:MODE[:threads=N] and/or trl (default {DEFAULT_RUNS})")
    parser.add_argument("--steps", type=int, default=None, help="steps per run, the first a warm-up (default 4)")
    parser.add_argument("--prompts", type=int, default=None, help="prompts per step (default 4)")
    parser.add_argument("--n", type=int, default=None, help="samples per prompt (default 4: 16 samples per step)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="token budget of each completion: each of our two attempts, TRL's one (default 28)")
    parser.add_argument("--trl-max-tokens", type=int, default=None,
                        help="TRL's max_completion_length (default --max-new-tokens; twice that gives TRL our "
                             "token budget per sample)")
    parser.add_argument("--micro-batch", type=int, default=None, help="our train.micro_batch_size (default 8)")
    parser.add_argument("--model", default=None, help="model folder (default SmolLM2-135M-Instruct, offline)")
    parser.add_argument("--vllm-lock", default=None, metavar="FILE",
                        help="hold an exclusive lock on FILE while a vLLM run goes (machines shared by several users)")
    parser.add_argument("--quick", action="store_true", help="CI smoke: tiny model, hf engine, 2 steps, no TRL")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one run, in its own process
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else {"steps": 4, "prompts": 4, "n": 4, "max_new_tokens": 28, "micro_batch": 8,
                                         "runs": DEFAULT_RUNS}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.trl_max_tokens = args.trl_max_tokens or args.max_new_tokens
    if args.steps < 2:
        parser.error("--steps: at least 2 (the first step is a warm-up)")
    return args


# ---- one run, in a child process ------------------------------------------------------------------------------


def our_overrides(args: argparse.Namespace, model: str, out: Path, engine: str, mode: str,
                  threads: int | None) -> list[str]:
    overrides = [f"model.path={model}", f"output_dir={out}", f"rollout.engine={engine}", f"rollout.n={args.n}",
                 f"rollout.max_new_tokens={args.max_new_tokens}", f"train.steps={args.steps}",
                 f"train.prompts_per_step={args.prompts}", f"train.micro_batch_size={args.micro_batch}",
                 "eval.every=0", "log.tensorboard=false", "train.save_every=0"]
    if args.quick:  # the default arithmetic task; a random tiny model's attempts are cut off: score them as they are
        overrides += ["algo.truncated=score"]
    if mode == "async":
        overrides += ["train.async=true", "algo.tis_cap=2"]
    if threads is not None:
        overrides += [f"ray.learner_threads={threads}", f"rollout.threads={threads}"]
    return overrides


def run_ours(args: argparse.Namespace, model: str, spec: str, out: Path) -> dict[str, Any]:
    from score.config import load_config
    from score.train import train

    engine, mode, *rest = spec.split(":")
    threads = int(rest[0].split("=")[1]) if rest else None
    cfg = load_config(None if args.quick else RECIPE, our_overrides(args, model, out, engine, mode, threads))
    train(cfg)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    measured = rows[1:]  # the first step is a warm-up
    mean = {k: sum(r.get(k, 0.0) for r in measured) / len(measured)
            for k in (*OUR_PHASES, *LEARNER_PHASES, "time_learner", "time_step", "generated_tokens", "pad_frac",
                      "tokens", "learner_threads")}
    step = mean["time_step"] + mean["time_sync_check"]
    return {"run": f"ours {spec}", "step_s": step, "generated_tokens": mean["generated_tokens"],
            "phases": {"rollout": mean["time_rollout"], "reward": mean["time_reward"], "update": mean["time_update"],
                       "sync": mean["time_sync"], "sync_check": mean["time_sync_check"]},
            "learner": {"policy_forward": mean["time_policy_forward"], "ref_forward": mean["time_ref_forward"],
                        "backward": mean["time_backward"], "optimizer": mean["time_optimizer"],
                        "other": mean["time_update"] - sum(mean[k] for k in LEARNER_PHASES),
                        "pad_frac": mean["pad_frac"], "tokens": mean["tokens"], "threads": mean["learner_threads"]},
            "steps": [r["time_step"] + r.get("time_sync_check", 0.0) for r in rows]}


def trl_dataset(args: argparse.Namespace, model: str) -> tuple[list[dict], Any, list]:
    """Our run's prompts, step by step (`score.train.step_problems`), as TRL conversational rows."""
    from envs import make_env
    from score.config import load_config
    from score.train import step_problems, training_env_kwargs

    cfg = load_config(RECIPE, [f"model.path={model}"])
    env = make_env(cfg.env.name, **training_env_kwargs(cfg.env.name, cfg.env.kwargs))
    problems = env.load(cfg.env.train_split)
    picked = [p for step in range(args.steps) for p in step_problems(problems, step, args.prompts, cfg.seed)]
    rows = [{"prompt": env.first_turn_messages(p), "problem_index": i} for i, p in enumerate(picked)]
    return rows, env, picked


def run_trl(args: argparse.Namespace, model: str, out: Path) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from score.config import load_config

    cfg = load_config(RECIPE, [f"model.path={model}"])
    rows, env, picked = trl_dataset(args, model)

    def reward(prompts, completions, problem_index, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [float(r) for r in env.rewards(texts, [picked[i] for i in problem_index])]

    policy = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    config = GRPOConfig(
        output_dir=str(out), use_cpu=True, bf16=False, fp16=False, seed=cfg.seed, max_steps=args.steps,
        per_device_train_batch_size=args.prompts * args.n, num_generations=args.n, gradient_accumulation_steps=1,
        max_completion_length=args.trl_max_tokens, temperature=1.0, top_p=1.0, top_k=0,
        learning_rate=cfg.train.lr, beta=cfg.algo.beta1, shuffle_dataset=False, report_to="none",
        save_strategy="no", logging_steps=1, disable_tqdm=True, dataloader_num_workers=0, log_completions=False,
    )
    trainer = GRPOTrainer(model=policy, reward_funcs=reward, args=config, train_dataset=Dataset.from_list(rows),
                          processing_class=AutoTokenizer.from_pretrained(model))
    clock: dict[str, list[float]] = {}

    def timed(name: str, fn, count=None):
        def wrapper(*a, **k):
            start = time.perf_counter()
            result = fn(*a, **k)
            clock.setdefault(name, []).append(time.perf_counter() - start)
            if count:
                clock.setdefault("tokens", []).append(count(result))
            return result
        return wrapper

    # TRL's phases, by timing its own methods: generation, rewards, the rest of preparing the batch (the reference
    # forward, tokenisation, advantages), the policy forward with its loss, the backward pass, the optimizer step.
    trainer._generate = timed("rollout", trainer._generate, count=lambda r: sum(len(c) for c in r[1]))
    trainer._calculate_rewards = timed("reward", trainer._calculate_rewards)
    trainer._generate_and_score_completions = timed("prepare", trainer._generate_and_score_completions)
    trainer._compute_loss = timed("policy_forward", trainer._compute_loss)
    trainer.accelerator.backward = timed("backward", trainer.accelerator.backward)

    class Steps(TrainerCallback):
        def on_step_begin(self, *_, **__):
            self.start = time.perf_counter()

        def on_pre_optimizer_step(self, *_, **__):
            self.optimizer = time.perf_counter()

        def on_optimizer_step(self, *_, **__):
            clock.setdefault("optimizer", []).append(time.perf_counter() - self.optimizer)

        def on_step_end(self, *_, **__):
            clock.setdefault("step", []).append(time.perf_counter() - self.start)

    trainer.add_callback(Steps())
    trainer.train()

    def mean(name: str) -> float:
        values = clock.get(name, [0.0] * args.steps)[1:]  # the first step is a warm-up
        return sum(values) / len(values)

    update = mean("step") - mean("prepare")
    return {"run": "TRL GRPOTrainer", "step_s": mean("step"), "generated_tokens": mean("tokens"),
            "phases": {"rollout": mean("rollout"), "reward": mean("reward"), "update": update, "sync": 0.0,
                       "sync_check": 0.0},
            "learner": {"policy_forward": mean("policy_forward"),
                        "ref_forward": mean("prepare") - mean("rollout") - mean("reward"),
                        "backward": mean("backward"), "optimizer": mean("optimizer"),
                        "other": update - mean("policy_forward") - mean("backward") - mean("optimizer"),
                        "pad_frac": None, "tokens": None, "threads": float(torch.get_num_threads())},
            "steps": clock.get("step", [])}


def child(args: argparse.Namespace) -> None:
    model = args.model or default_model(args)
    out = Path(args.result).parent / args.child.replace(":", "_").replace("=", "")
    result = run_trl(args, model, out) if args.child == "trl" else run_ours(args, model, args.child, out)
    Path(args.result).write_text(json.dumps(result))


def default_model(args: argparse.Namespace) -> str:
    if args.quick:
        from score.tiny import build_tiny_model, default_corpus

        folder = Path(tempfile.gettempdir()) / f"score-bench-step-tiny-{os.getuid()}"
        if not (folder / "config.json").is_file():
            build_tiny_model(folder, default_corpus(), seed=0)
        return str(folder)
    from score.models import smollm2_path

    return str(smollm2_path())


# ---- the parent: every run, then the table --------------------------------------------------------------------


def trl_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("trl") is not None


def async_available(model: str) -> bool:
    """Whether this build's config has train.async (the asynchronous loop)."""
    from score.config import ConfigError, load_config

    try:
        load_config(None, [f"model.path={model}", "train.async=true", "algo.tis_cap=2"])
        return True
    except ConfigError:
        return False


@contextlib.contextmanager
def engine_lock(path: str | None) -> Iterator[None]:
    """An exclusive flock on `path` for the block (nothing when None)."""
    if path is None:
        yield
        return
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = args.model or default_model(args)
    notes, results = [], []
    for spec in [s.strip() for s in args.runs.split(",") if s.strip()]:
        if spec == "trl" and not trl_available():
            notes.append("TRL is not installed, so only our runs were measured: `pip install --no-deps trl` "
                         "(1.16.0 installs without changing torch, transformers or vLLM), then run this again.")
            continue
        if ":async" in spec and not async_available(model):
            notes.append(f"{spec}: this build has no train.async; left out.")
            continue
        result_file = out / f"{spec.replace(':', '_').replace('=', '')}.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--child", spec, "--result", str(result_file),
                   "--steps", str(args.steps), "--prompts", str(args.prompts), "--n", str(args.n),
                   "--max-new-tokens", str(args.max_new_tokens), "--trl-max-tokens", str(args.trl_max_tokens),
                   "--micro-batch", str(args.micro_batch),
                   "--model", model, *(["--quick"] if args.quick else [])]
        with engine_lock(args.vllm_lock if spec.startswith("vllm") else None):
            load_before = os.getloadavg()
            start = time.perf_counter()
            done = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
            wall = time.perf_counter() - start
        if done.returncode != 0:
            notes.append(f"{spec}: failed (exit {done.returncode}); its output is above.")
            continue
        result = json.loads(result_file.read_text())
        result.update(wall_s=wall, load_before=load_before, load_after=os.getloadavg())
        results.append(result)
    report = {"model": "tiny (random)" if args.quick else "SmolLM2-135M-Instruct", "steps": args.steps,
              "samples_per_step": args.prompts * args.n, "max_new_tokens": args.max_new_tokens,
              "trl_max_tokens": args.trl_max_tokens,
              "micro_batch": args.micro_batch, "cores": os.cpu_count(), "runs": results, "notes": notes}
    table = render(report)
    print("\n" + table)
    (out / "bench_step.md").write_text(table + "\n")
    (out / "bench_step.json").write_text(json.dumps(report, indent=2))
    return report


def per_1k(result: dict[str, Any]) -> float | None:
    tokens = result["generated_tokens"]
    return 1000 * result["step_s"] / tokens if tokens else None


def render(report: dict[str, Any]) -> str:
    trl = next((r for r in report["runs"] if r["run"].startswith("TRL")), None)
    base = per_1k(trl) if trl else None
    lines = [f"{report['model']}, fp32, {report['samples_per_step']} samples per step, <= {report['max_new_tokens']} "
             f"tokens per attempt (ours: 2 attempts per sample; TRL: 1 completion of <= {report['trl_max_tokens']}), "
             f"our micro-batch {report['micro_batch']}, "
             f"{report['steps'] - 1} measured steps after 1 warm-up, {report['cores']} cores.", "",
             "| run | s / step | generated tok / step | s / 1k tok | vs TRL (per 1k tok) | rollout | reward | update "
             "| sync | sync check | wall incl. start-up (s) | load avg before / after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        p, k = r["phases"], per_1k(r)
        ratio = f"{k / base:.2f}x" if base and k else "-"
        lines.append(f"| {r['run']} | {r['step_s']:.2f} | {r['generated_tokens']:.0f} | "
                     f"{k:.2f} | {ratio} | {p['rollout']:.2f} | {p['reward']:.2f} | {p['update']:.2f} | "
                     f"{p['sync']:.2f} | {p['sync_check']:.2f} | {r['wall_s']:.0f} | "
                     f"{r['load_before'][0]:.1f} / {r['load_after'][0]:.1f} |" if k else f"| {r['run']} | - |")
    lines += ["", "Update phases (s / step; ours: the learner rank's own clock, `other` = Ray transfer, padding, "
              "statistics; TRL: `ref forward` = its batch preparation after generation and rewards):", "",
              "| run | policy forward | ref forward | backward | optimizer | other | pad frac | torch threads |",
              "|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        u = r["learner"]
        pad = f"{u['pad_frac']:.3f}" if u["pad_frac"] is not None else "-"
        lines.append(f"| {r['run']} | {u['policy_forward']:.2f} | {u['ref_forward']:.2f} | {u['backward']:.2f} | "
                     f"{u['optimizer']:.2f} | {u['other']:.2f} | {pad} | {u['threads']:.0f} |")
    lines += [f"\nNote: {note}" for note in report["notes"]]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    if args.child:
        child(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
