"""The output layer on every position vs on the attempts' tokens only (`token_logprobs(..., positions=)`), side by
side in one process: SmolLM2-135M-Instruct, fp32, 2 threads, `bench_update.py`'s SCoRe-shaped batch of 16 sequences
in two length-sorted micro-batches of 8; per round, the policy's forward and backward and the reference's forward,
as one learner update computes them (no optimizer). The two settings alternate, so a change in the machine's speed
hits both.

    python benchmarks/bench_logprob_positions.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_update import step_like_batch
from transformers import AutoModelForCausalLM

from score.learner import length_order, token_logprobs
from score.models import smollm2_path


def padded(rows: list[list[int]]) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [0] * (width - len(r)) for r in rows])


def one_update(model: torch.nn.Module, micro_batches: list[tuple[torch.Tensor, ...]], attempts_only: bool) -> float:
    start = time.perf_counter()
    for ids, mask, trained in micro_batches:
        positions = trained if attempts_only else None
        (token_logprobs(model, ids, mask, positions=positions) * trained).sum().backward()
        with torch.no_grad():  # the reference's forward (same weights here: the cost is what is measured)
            token_logprobs(model, ids, mask, positions=positions)
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path(), dtype=torch.float32)
    batch = step_like_batch(16, model.config.vocab_size)
    order = length_order([len(r) for r in batch.input_ids])
    micro_batches = []
    for rows in (order[:8], order[8:]):
        ids = padded([batch.input_ids[r] for r in rows])
        mask = padded([[1] * len(batch.input_ids[r]) for r in rows])
        micro_batches.append((ids, mask, padded([batch.turn_ids[r] for r in rows])[:, 1:] > 0))
    trained = sum(int(m[2].sum()) for m in micro_batches)
    positions = sum(m[2].numel() for m in micro_batches)
    one_update(model, micro_batches, True)  # warm-up
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for attempts_only in (False, True):
            times[attempts_only].append(one_update(model, micro_batches, attempts_only))
    print(f"output layer on {positions} positions: " + ", ".join(f"{t:.2f}" for t in times[False]) + " s")
    print(f"output layer on the {trained} attempt tokens: " + ", ".join(f"{t:.2f}" for t in times[True]) + " s")
    median = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    print(f"ratio of medians: {median[False] / median[True]:.2f}x")


if __name__ == "__main__":
    main()
