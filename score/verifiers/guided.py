"""Verifier-guided self-correction: attempt 2 only when the verifier doubts attempt 1.

Attempt 1 y1 is scored by a verifier; it is doubted when its score is below `threshold` (for ORM/PRM a probability,
0.5 by default; for SimPO a mean log-probability, which has no natural threshold: give one).

- mode=request: attempt 2 is generated only for doubted y1 (the correction instruction and the conversation as in
  `score eval`); the final answer is y2 when requested, else y1. Costs only the requested second attempts.
- mode=keep: attempt 2 is generated for every y1 (SCoRe's protocol) and kept only when y1 was doubted; the same
  samples also give the unguided row (always y2), so the two are paired.

Reported like every evaluation (`score.evaluate.summarize`): acc_t1 (y1), acc_t2 (the final answer), delta,
delta_i2c, delta_c2i with bootstrap intervals, plus how often attempt 2 was requested.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from envs.base import Environment, Problem
from score.engines.base import SamplingParams
from score.evaluate import evaluate, summarize
from score.rollout import ChatRenderer, Generate


def guided_rewards(r1: np.ndarray, r2: np.ndarray, doubt: np.ndarray) -> np.ndarray:
    """(problems, samples, 2) rewards of (y1, final answer): the final answer is y2 where doubted, else y1.

    >>> guided_rewards(np.array([1.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0]), np.array([False, True, True]))[:, 0, 1]
    array([1., 1., 1.])
    """
    final = np.where(doubt, r2, r1)
    return np.stack([r1, final], axis=-1).reshape(-1, 1, 2)


def guided_correction(env: Environment, problems: list[Problem], renderer: ChatRenderer, generate: Generate,
                      verifier, *, mode: str, threshold: float, params: SamplingParams, resamples: int = 2000,
                      confidence: float = 0.95) -> dict[str, Any]:
    """Run attempt 1, the verifier, and attempt 2 as `mode` says; returns the summaries and per-problem records."""
    if mode not in ("request", "keep"):
        raise ValueError(f"--guide-mode: {mode!r} is not one of request, keep")
    result = evaluate(env, problems, renderer, generate, attempts=2 if mode == "keep" else 1, params=params)
    items = result.samples
    messages = [env.first_turn_messages(it.problem) for it in items]
    scores = np.asarray(verifier.score(messages, [it.texts[0] for it in items]), dtype=float)
    doubt = scores < threshold
    r1 = np.array([it.rewards[0] for it in items])
    if mode == "request":  # attempt 2 for the doubted only: the conversation so far + the correction instruction
        asked = [it for it, d in zip(items, doubt) if d]
        second = dataclasses.replace(params, seed=params.seed + 1)  # as attempt 2 of `evaluate`
        contexts = [it.context_ids + renderer.between_turns(env.correction_instruction, it.completions[0].token_ids)
                    for it in asked]
        completions = generate(contexts, second) if asked else []
        texts = [renderer.decode(c.token_ids) for c in completions]
        rewards = env.rewards(texts, [it.problem for it in asked]) if asked else []
        for it, text, reward in zip(asked, texts, rewards):
            it.texts.append(text)
            it.rewards.append(float(reward))
    r2 = np.array([it.rewards[1] if len(it.rewards) > 1 else it.rewards[0] for it in items])
    out: dict[str, Any] = {
        "mode": mode, "threshold": threshold, "verifier": getattr(verifier, "path", None),
        "requested_frac": float(doubt.mean()) if len(doubt) else 0.0,
        "doubt_precision": float((r1[doubt] == 0).mean()) if doubt.any() else None,
        "guided": summarize(guided_rewards(r1, r2, doubt), resamples=resamples, confidence=confidence,
                            seed=params.seed),
        "records": [{"problem_id": it.problem.id, "score_t1": float(s), "doubted": bool(d), "texts": it.texts,
                     "rewards": it.rewards} for it, s, d in zip(items, scores, doubt)],
    }
    if mode == "keep":
        out["always"] = summarize(np.stack([r1, r2], axis=-1).reshape(-1, 1, 2), resamples=resamples,
                                  confidence=confidence, seed=params.seed)
    return out
