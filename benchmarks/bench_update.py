"""The update alone: one learner rank in a Ray actor (num_cpus=1, as `score train` places it) on SmolLM2-135M-Instruct,
one fixed batch shaped like a SCoRe step's, under each setting that changes its speed, side by side in one run:

    flock /tmp/score-bench.lock python benchmarks/bench_update.py [--steps 2] [--batch 16]

- torch threads: 1 (what Ray's OMP_NUM_THREADS=num_cpus gave the actor before `score.threads`) vs all the node's
  cores (`ray.learner_threads: 0`, the default now);
- micro-batches: 8 sequences cut from the length order (the default) vs the whole batch in one pass, padded to its
  longest row; the padding share of the arrival order's micro-batches is computed alongside;
- precision: fp32 (the default) vs bf16 autocast (`model.dtype: bfloat16`).

Each setting runs one warm-up update, then --steps timed updates; every phase is the learner's own clock
(score.learner.PHASES). The load average is printed: numbers taken under load are not comparable.
"""

from __future__ import annotations

import argparse
import os
import time

import ray
import torch

from score.learner import PHASES, Batch
from score.learner_group import LearnerGroup
from score.models import smollm2_path


def step_like_batch(size: int, vocab: int, seed: int = 0, samples_per_prompt: int = 1) -> Batch:
    """`size` two-attempt samples laid out as SmolLM2's word-problem steps are: a prompt of 75 tokens, attempt 1, the
    correction instruction turn (52 tokens), attempt 2, each attempt 4..28 tokens (some end early, as real ones do).
    Each run of `samples_per_prompt` consecutive samples shares its prompt's tokens, as a prompt's rollout.n do."""
    g = torch.Generator().manual_seed(seed)
    ids, turns = [], []
    for i in range(size):
        y1, y2 = (int(torch.randint(4, 29, (1,), generator=g)) for _ in range(2))
        layout = [0] * 75 + [1] * y1 + [0] * 52 + [2] * y2
        tokens = torch.randint(10, vocab, (len(layout),), generator=g).tolist()
        if i % samples_per_prompt:
            tokens[:75] = ids[-1][:75]
        ids.append(tokens)
        turns.append(layout)
    advantages = [(0.5, -0.5) if i % 2 else (-0.5, 1.0) for i in range(size)]
    return Batch(ids, turns, [[-1.0] * len(r) for r in ids], advantages, (0.1, 0.01))


def arrival_pad_frac(batch: Batch, micro: int) -> float:
    """The padding share had micro-batches been cut in arrival order (before length sorting)."""
    lengths = [len(r) for r in batch.input_ids]
    chunks = [lengths[i:i + micro] for i in range(0, len(lengths), micro)]
    return 1 - sum(lengths) / sum(len(c) * max(c) for c in chunks)


def measure(path: str, batch: Batch, steps: int, *, threads: int, micro: int, dtype: str) -> dict:
    group = LearnerGroup(num_ranks=1, num_cpus=1, threads=threads, model_path=path, lr=1e-5, seed=0, dtype=dtype)
    try:
        group.train_step(batch, kl_mode="reward", micro_batch_size=micro)  # warm-up; creates the Adam moments
        runs = []
        for _ in range(steps):
            start = time.perf_counter()
            stats = group.train_step(batch, kl_mode="reward", micro_batch_size=micro)
            runs.append({**stats, "driver_s": time.perf_counter() - start})
        mean = {k: sum(r[k] for r in runs) / steps for k in (*PHASES, "time_learner", "driver_s", "pad_frac",
                                                               "learner_threads")}
        return {"threads": threads, "micro": micro, "dtype": dtype, **mean, "load": os.getloadavg()[0]}
    finally:
        group.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--settings", default="1:8:float32,0:8:float32,0:16:float32,0:8:bfloat16",
                        help="THREADS:MICRO:DTYPE,... (threads 0 = the node's cores)")
    parser.add_argument("--model", default=None, help="model folder (default SmolLM2-135M-Instruct, offline)")
    args = parser.parse_args()
    path = args.model or str(smollm2_path())
    from transformers import AutoConfig

    batch = step_like_batch(args.batch, AutoConfig.from_pretrained(path).vocab_size)
    ray.init(num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.getcwd(), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}})
    try:
        results = []
        for setting in args.settings.split(","):
            threads, micro, dtype = setting.split(":")
            results.append(measure(path, batch, args.steps, threads=int(threads), micro=int(micro), dtype=dtype))
    finally:
        ray.shutdown()
    lengths = [len(r) for r in batch.input_ids]
    print(f"\n{'SmolLM2-135M-Instruct' if args.model is None else args.model}, one learner rank in a Ray actor (num_cpus=1), batch {args.batch} sequences of "
          f"{min(lengths)}-{max(lengths)} tokens ({sum(lengths)} in all), {args.steps} timed updates after 1 warm-up, "
          f"{os.cpu_count()} cores. Arrival-order micro-batches of 8 would pad {arrival_pad_frac(batch, 8):.3f}.\n")
    print("| torch threads | micro-batch | dtype | update (s) | policy fwd | ref fwd | backward | optimizer | "
          "other | pad frac | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        other = r["driver_s"] - sum(r[k] for k in PHASES)
        print(f"| {r['learner_threads']:.0f} | {r['micro']} | {r['dtype']} | {r['driver_s']:.2f} | "
              f"{r['time_policy_forward']:.2f} | {r['time_ref_forward']:.2f} | {r['time_backward']:.2f} | "
              f"{r['time_optimizer']:.2f} | {other:.2f} | {r['pad_frac']:.3f} | {r['load']:.1f} |")


if __name__ == "__main__":
    main()
