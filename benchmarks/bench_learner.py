"""The sharded learner on SmolLM2-135M-Instruct (CPU, gloo): per-rank memory of parameters, gradients and AdamW
state, and step time, with 1 and 2 FSDP2 ranks, side by side in one run.

    flock /tmp/score-bench.lock python benchmarks/bench_learner.py [--steps 3] [--batch 8] [--length 96]

Memory is counted from the tensors each rank holds after an update (its shards of the policy's parameters, gradients
and both Adam moments: the peak of that state, which lives through the whole step), plus the rank process's peak
RSS, which also holds the frozen reference, activations and the full model loaded once before sharding. Step time is
the mean over --steps updates after one warm-up update, on the same fixed batch. On a machine with fewer free cores
than ranks the 2-rank step is not faster: the ranks take turns on the cores and add gloo traffic.
"""

from __future__ import annotations

import argparse
import os
import time

import ray
import torch

from score.learner import Batch
from score.learner_group import LearnerGroup
from score.models import smollm2_path


def fixed_batch(size: int, length: int, vocab: int) -> Batch:
    g = torch.Generator().manual_seed(0)
    ids = [torch.randint(10, vocab, (length,), generator=g).tolist() for _ in range(size)]
    prompt, first = length // 4, length // 2
    turns = [[0] * prompt + [1] * (first - prompt) + [0] * 4 + [2] * (length - first - 4) for _ in range(size)]
    return Batch(ids, turns, [[-1.0] * length for _ in range(size)],
                 [(0.5, -0.5) if i % 2 else (-0.5, 1.0) for i in range(size)], (0.1, 0.01))


def measure(path: str, ranks: int, batch: Batch, steps: int, micro: int, checkpointing: bool) -> dict:
    group = LearnerGroup(num_ranks=ranks, num_cpus=1, model_path=path, lr=1e-5, seed=0,
                         gradient_checkpointing=checkpointing)
    try:
        group.train_step(batch, kl_mode="reward", micro_batch_size=micro)  # warm-up; creates the Adam moments
        start = time.perf_counter()
        for _ in range(steps):
            group.train_step(batch, kl_mode="reward", micro_batch_size=micro)
        step_s = (time.perf_counter() - start) / steps
        return {"ranks": ranks, "step_s": step_s, "memory": group.state_bytes()}
    finally:
        group.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=96)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    path = str(smollm2_path())
    from transformers import AutoConfig

    batch = fixed_batch(args.batch, args.length, AutoConfig.from_pretrained(path).vocab_size)
    ray.init(num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.getcwd(), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}})
    try:
        results = [measure(path, ranks, batch, args.steps, args.micro_batch, args.gradient_checkpointing)
                   for ranks in (1, 2)]
    finally:
        ray.shutdown()
    mib = 1 << 20
    one = results[0]["memory"][0]
    one_total = one["params"] + one["grads"] + one["optimizer"]
    print(f"\nSmolLM2-135M-Instruct, fp32, batch {args.batch} x {args.length} tokens, micro-batch {args.micro_batch}, "
          f"gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}, load avg "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| ranks | rank | params (MiB) | grads (MiB) | Adam state (MiB) | total (MiB) | vs 1 rank | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for result in results:
        for rank, m in enumerate(result["memory"]):
            total = m["params"] + m["grads"] + m["optimizer"]
            print(f"| {result['ranks']} | {rank} | {m['params'] / mib:.1f} | {m['grads'] / mib:.1f} | "
                  f"{m['optimizer'] / mib:.1f} | {total / mib:.1f} | {total / one_total:.3f}x | "
                  f"{m['peak_rss'] / mib:.0f} |")
    print("\n| ranks | step time (s) | vs 1 rank |")
    print("|---|---|---|")
    for result in results:
        print(f"| {result['ranks']} | {result['step_s']:.2f} | {result['step_s'] / results[0]['step_s']:.2f}x |")


if __name__ == "__main__":
    main()
