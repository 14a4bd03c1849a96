"""The SCoRe update with and without shared-prompt packing (`train.share_prompt`), side by side in one process:
SmolLM2-135M-Instruct, fp32, 2 threads, a batch shaped like `bench_update.py`'s (16 samples of a 75-token prompt,
attempt 1, a 52-token instruction, attempt 2) where each prompt has 4 samples, as with rollout.n = 4; micro-batches
of 8. One `Learner.train_step` per setting and round (lr 0, so the weights and the work stay the same), the settings
alternating so that a change in the machine's speed hits both.

    python benchmarks/bench_share_prompt.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

from bench_update import step_like_batch

from score.learner import Learner
from score.models import smollm2_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples-per-prompt", type=int, default=4)
    args = parser.parse_args()
    learner = Learner(str(smollm2_path()), lr=0.0, seed=0, num_threads=2)
    batch = step_like_batch(16, learner.policy.config.vocab_size, samples_per_prompt=args.samples_per_prompt)
    stats: dict[bool, list[dict]] = {False: [], True: []}
    learner.train_step(batch, kl_mode="reward", micro_batch_size=8, share_prompt=True)  # warm-up
    for _ in range(args.rounds):
        for share in (False, True):
            start = time.perf_counter()
            result = learner.train_step(batch, kl_mode="reward", micro_batch_size=8, share_prompt=share)
            stats[share].append({**result, "wall": time.perf_counter() - start})
    for share in (False, True):
        runs = stats[share]
        print(f"share_prompt={share}: {int(runs[0]['tokens'])} token positions, pad_frac {runs[0]['pad_frac']:.3f}, "
              "update " + ", ".join(f"{r['wall']:.2f}" for r in runs) + " s (policy forward "
              + ", ".join(f"{r['time_policy_forward']:.1f}" for r in runs) + "; backward "
              + ", ".join(f"{r['time_backward']:.1f}" for r in runs) + ")")
    a, b = stats[False][0], stats[True][0]
    print(f"loss {a['loss']:.6f} vs {b['loss']:.6f}, grad_norm {a['grad_norm']:.6f} vs {b['grad_norm']:.6f}")
    ratio = sum(r["wall"] for r in stats[False]) / sum(r["wall"] for r in stats[True])
    print(f"unpacked / packed update time: {ratio:.2f}x")


if __name__ == "__main__":
    main()
