"""Weight sync, learner -> engine, in the old form (safetensors fp32 blobs through vLLM's RPC channel) and the new
one (flat buckets in the engine's dtype, through a shared-memory file), on one engine.

    flock /tmp/score-vllm.lock python benchmarks/bench_sync.py --engine vllm --dtype bfloat16   # SmolLM2-135M
    python benchmarks/bench_sync.py --engine hf --tiny                                          # quick smoke run

Per form and repetition: seconds to build every bucket on the learner (gather + serialise or pack), seconds for the
engine to load them (of which vllm_reload_s inside vLLM's own reloader, the same work for both forms), and after
the sync the largest |log p_engine - log p_learner| over a fixed 80-token sequence (the trainer's sync check).
No Ray: the object store hop is the same memcpy for both forms (`score train` logs the whole sync as time_sync).
The load average is printed with every figure, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import safetensors.torch
import torch


def load() -> float:
    return os.getloadavg()[0]


def old_buckets(learner) -> list[bytes]:
    """What the trainer sent before: each bucket as an fp32 safetensors blob, whatever the engine's dtype."""
    return [safetensors.torch.save({k: v.cpu().contiguous() for k, v in learner._gather_bucket(i).items()})
            for i in range(learner.weight_bucket_count())]


def new_buckets(learner, dtype: str):
    return [learner.weight_bucket(i, dtype) for i in range(learner.weight_bucket_count())]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", choices=["vllm", "hf"], default="vllm")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--tiny", action="store_true", help="the tiny random test model instead of SmolLM2-135M")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--bucket-mb", type=float, default=256.0)
    args = parser.parse_args()

    from score.learner import Learner

    if args.tiny:
        import tempfile

        from score.tiny import build_tiny_model, default_corpus

        path = str(build_tiny_model(tempfile.mkdtemp() + "/tiny", default_corpus(), tie_word_embeddings=True))
    else:
        from score.models import smollm2_path

        path = str(smollm2_path())
    learner = Learner(path, sync_bucket_bytes=int(args.bucket_mb * (1 << 20)))
    if args.engine == "vllm":
        from score.engines.vllm_engine import VLLMEngine

        engine = VLLMEngine(path, dtype=args.dtype, kv_cache_memory_bytes=1 << 28, max_model_len=1024)
    else:
        from score.engines.hf import HFEngine

        engine = HFEngine(path, dtype=args.dtype)
    sequence = list(range(100, 180))
    try:
        for rep in range(args.reps):
            for form in ("old", "new"):
                with torch.no_grad():  # a different update each time, so every sync really changes the engine
                    for p in learner.policy.parameters():
                        p.add_(1e-3 * torch.randn_like(p))
                t0 = time.perf_counter()
                buckets = old_buckets(learner) if form == "old" else new_buckets(learner, args.dtype)
                t1 = time.perf_counter()
                reload_before = getattr(engine, "reload_seconds", 0.0)
                for bucket in buckets:
                    engine.update_weights(bucket, partial=True)
                t2 = time.perf_counter()
                vllm_reload = getattr(engine, "reload_seconds", 0.0) - reload_before
                size = sum(len(b) if isinstance(b, bytes) else b.nbytes for b in buckets)
                diff = float(np.max(np.abs(np.array(engine.sequence_logprobs([sequence])[0])
                                           - np.array(learner.sequence_logprobs([sequence])[0]))))
                print(f"RESULT engine={args.engine} dtype={args.dtype} form={form} rep={rep} "
                      f"buckets={len(buckets)} MiB={size / 2**20:.1f} build_s={t1 - t0:.3f} load_s={t2 - t1:.3f} "
                      f"sync_s={t2 - t0:.3f} vllm_reload_s={vllm_reload:.3f} sync_logprob_diff={diff:.2e} "
                      f"load1={load():.2f}", flush=True)
    finally:
        engine.shutdown()


if __name__ == "__main__":
    main()
