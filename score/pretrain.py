"""The demo's base model: a tiny Llama taught two-turn arithmetic by supervised fine-tuning, on CPU, in minutes.

Real base LLMs self-correct badly (SCoRe, Table 1: Gemini on MATH goes 52.6% -> 41.4% from attempt 1 to attempt 2).
Nothing that small can be downloaded here, so the demo builds a model that shows the same failure modes, from
conversations [user: a+b=] [assistant: y1] [user: instruction] [assistant: y2] written by a simulated "student":

- attempt 1 forgets the carry on most problems whose ones digits carry (57+68 -> 115 instead of 125); it gets the
  carry right only `p_carry_t1` of the time;
- attempt 2 rarely fixes a wrong answer (`p_fix`) and, on problems whose ones digits sum to 8 or 9 (a carry looks
  close), it usually "second-guesses" a right answer by adding a carry that is not there (`p_doubt`: 34+25 -> 69 ->
  "corrected" to 79). So greedy attempt 2 breaks right answers more often than it repairs wrong ones.

Every behaviour the RL stages need is in the data (right carries, keeping an answer, fixing one), only at low
probability: SCoRe has to find, from rewards alone, that attempt 2 should keep right answers and repair carries.

The SFT problems are the `digits`-digit problems that are neither in the arithmetic environment's train split (the
RL prompts) nor in its test split (the held-out evaluation), so the evaluation measures generalisation.

    >>> attempts(57, 68, "+", random.Random(0), PretrainSettings(p_carry_t1=0.0, p_fix=0.0))
    ('115', '115')
    >>> attempts(34, 25, "+", random.Random(0), PretrainSettings(p_doubt=1.0))
    ('59', '69')
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from envs.arithmetic import ArithmeticEnv


@dataclass(frozen=True)
class PretrainSettings:
    """Everything that determines the base model; its hash names the cache folder."""

    # the task (must match the RL configs' env.kwargs so that SFT problems avoid the RL and test problems)
    digits: int = 2
    ops: str = "+"
    env_num_train: int = 2000
    env_num_test: int = 500
    env_seed: int = 1234
    correction_instruction: str = ArithmeticEnv.correction_instruction
    # the simulated student
    p_carry_t1: float = 0.35
    """Attempt 1: chance of carrying correctly when the ones digits carry (else the carry is dropped)."""
    p_fix: float = 0.25
    """Attempt 2 after a wrong attempt 1: chance of writing the right answer (else the wrong answer is repeated)."""
    p_doubt: float = 0.75
    """Attempt 2 after a right attempt 1 whose ones digits sum to 8 or 9: chance of adding a spurious carry."""
    # the model and its training
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 512
    steps: int = 800
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 50
    seed: int = 0

    def fingerprint(self) -> str:
        """Short hash of the settings (and of the data-generating code's version)."""
        text = json.dumps({**dataclasses.asdict(self), "version": _DATA_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def env_kwargs(self) -> dict:
        """The arithmetic environment the RL stages and the evaluation use."""
        return {"digits": self.digits, "ops": self.ops, "num_train": self.env_num_train,
                "num_test": self.env_num_test, "seed": self.env_seed}


_DATA_VERSION = 1  # bump when `attempts` or the conversation format changes: the cache key changes with it


def _no_carry_sum(a: int, b: int) -> int:
    """Column addition that drops every carry: 57+68 -> 1|1|5 = 115 (the carry into the tens is lost)."""
    ones = (a % 10 + b % 10) % 10
    return (a // 10 + b // 10) * 10 + ones


def attempts(a: int, b: int, op: str, rng: random.Random, s: PretrainSettings) -> tuple[str, str]:
    """One conversation's two attempts, as the simulated student writes them."""
    if op != "+":
        raise ValueError(f"pretrain: the simulated student only does addition (ops='+'), got op {op!r}")
    right = a + b
    carries = a % 10 + b % 10 >= 10
    y1 = right if (not carries or rng.random() < s.p_carry_t1) else _no_carry_sum(a, b)
    if y1 != right:
        y2 = right if rng.random() < s.p_fix else y1
    elif a % 10 + b % 10 in (8, 9) and rng.random() < s.p_doubt:
        y2 = right + 10  # "I must have forgotten a carry"
    else:
        y2 = y1
    return str(y1), str(y2)


def sft_problems(s: PretrainSettings) -> list[tuple[int, int, str]]:
    """All problems of the task that are in neither split of the environment (RL train, held-out test)."""
    env = ArithmeticEnv(**s.env_kwargs())
    taken = {p.id for split in ("train", "test") for p in env.load(split)}
    low, high = (10 ** (s.digits - 1) if s.digits > 1 else 0), 10**s.digits - 1
    free = [(a, b, op) for op in s.ops for a in range(low, high + 1) for b in range(low, high + 1)
            if f"{a}{op}{b}" not in taken]
    if len(free) < 1000:
        raise ValueError(f"pretrain: only {len(free)} problems are left for SFT; lower env_num_train/env_num_test")
    return free


def _encode_conversation(renderer, instruction: str, prompt: str, y1: str, y2: str) -> tuple[list[int], list[int]]:
    """Token ids of the two-attempt conversation, built exactly as the rollout builds them, and the loss mask."""
    eos = renderer.tokenizer.eos_token
    first = renderer.first_turn([{"role": "user", "content": prompt}])
    a1 = renderer.encode(y1 + eos)
    between = renderer.between_turns(instruction, a1)
    a2 = renderer.encode(y2 + eos)
    ids = first + a1 + between + a2
    mask = [0] * len(first) + [1] * len(a1) + [0] * len(between) + [1] * len(a2)
    return ids, mask


def build_base_model(s: PretrainSettings, out_dir: str | Path,
                     on_step: Callable[[int, float], None] | None = None, num_threads: int = 1) -> Path:
    """Train the base model from scratch and save it (model + tokenizer with chat template) to `out_dir`.

    One thread by default: for a model this small, extra threads cost more in synchronisation than they save
    (measured on the 2-core machine: 0.19 s per step with 1 thread, 0.69 s with 2 while other jobs ran).
    """
    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        return _train(s, Path(out_dir), on_step)
    finally:
        torch.set_num_threads(previous_threads)


def _train(s: PretrainSettings, out: Path, on_step: Callable[[int, float], None] | None) -> Path:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from score.rollout import ChatRenderer
    from score.tiny import build_tokenizer

    rng = random.Random(s.seed)
    torch.manual_seed(s.seed)
    problems = sft_problems(s)
    corpus = [s.correction_instruction, "<|im_start|>user\n", "<|im_start|>assistant\n"] * 50
    tokenizer = build_tokenizer(corpus + [f"{a}{op}{b}={a + b}" for a, b, op in problems[:500]], vocab_size=512)
    renderer = ChatRenderer(tokenizer)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=s.hidden_size, intermediate_size=s.intermediate_size,
        num_hidden_layers=s.num_layers, num_attention_heads=s.num_heads, num_key_value_heads=s.num_heads,
        max_position_embeddings=256, tie_word_embeddings=False,  # untied: the demo model as it was measured
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=0.01, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / s.warmup_steps)
                                                 * 0.5 * (1 + math.cos(math.pi * min(step, s.steps) / s.steps)))
    model.train()
    for step in range(s.steps):
        rows = []
        for a, b, op in rng.choices(problems, k=s.batch_size):
            y1, y2 = attempts(a, b, op, rng, s)
            rows.append(_encode_conversation(renderer, s.correction_instruction, f"{a}{op}{b}=", y1, y2))
        width = max(len(ids) for ids, _ in rows)
        input_ids = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids, _ in rows])
        attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
        labels = torch.tensor([[t if m else -100 for t, m in zip(ids, mask)] + [-100] * (width - len(ids))
                               for ids, mask in rows])
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if on_step is not None:
            on_step(step + 1, float(loss.detach()))

    model.eval()
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "pretrain_settings.json").write_text(json.dumps(dataclasses.asdict(s), indent=2))
    return out


def cache_root() -> Path:
    return Path(os.environ.get("SCORE_CACHE", Path.home() / ".cache" / "score"))


def base_model_folder(s: PretrainSettings, root: str | Path | None = None) -> Path:
    """Where the base model of these settings is cached: ROOT/demo-base-<hash of the settings>."""
    return (Path(root) if root is not None else cache_root()) / f"demo-base-{s.fingerprint()}"


def cached_base_model(s: PretrainSettings, on_step: Callable[[int, float], None] | None = None,
                      root: str | Path | None = None) -> tuple[Path, bool]:
    """The base model for these settings: (folder, True) from the cache, or trained now and cached (folder, False).

    The folder is written under a temporary name and renamed, so an interrupted run never leaves a half model.
    """
    out = base_model_folder(s, root)
    if (out / "config.json").is_file():
        return out, True
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    build_base_model(s, tmp, on_step)
    tmp.rename(out)
    return out, False


if __name__ == "__main__":
    import sys

    settings = PretrainSettings(**{k: type(getattr(PretrainSettings, k))(v) for k, v in
                                   (arg.split("=", 1) for arg in sys.argv[2:])})
    start = time.perf_counter()
    print(build_base_model(settings, sys.argv[1],
                           lambda i, loss: print(i, round(loss, 4), round(time.perf_counter() - start, 1), flush=True)
                           if i % 50 == 0 else None))
