"""Self-correction metrics of SCoRe: Accuracy@t1, Accuracy@t2, Δ(t1,t2), Δi→c, Δc→i."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def self_correction_metrics(r1: Sequence[float], r2: Sequence[float]) -> dict[str, float]:
    """Metrics over N problems, each with one first and one second attempt (rewards 0/1).

    delta = acc_t2 - acc_t1 = delta_i2c - delta_c2i.

    >>> m = self_correction_metrics([1, 0, 0, 1], [1, 1, 0, 0])
    >>> m["acc_t1"], m["acc_t2"], m["delta"], m["delta_i2c"], m["delta_c2i"], m["n"]
    (0.5, 0.5, 0.0, 0.25, 0.25, 4)
    """
    if len(r1) != len(r2):
        raise ValueError(f"r1 and r2 differ in length: {len(r1)} vs {len(r2)}")
    n = len(r1)
    if n == 0:
        return {"acc_t1": 0.0, "acc_t2": 0.0, "delta": 0.0, "delta_i2c": 0.0, "delta_c2i": 0.0, "n": 0}
    c1 = [a >= 0.5 for a in r1]
    c2 = [b >= 0.5 for b in r2]
    acc_t1 = sum(c1) / n
    acc_t2 = sum(c2) / n
    i2c = sum((not a) and b for a, b in zip(c1, c2)) / n
    c2i = sum(a and (not b) for a, b in zip(c1, c2)) / n
    return {"acc_t1": acc_t1, "acc_t2": acc_t2, "delta": acc_t2 - acc_t1, "delta_i2c": i2c, "delta_c2i": c2i, "n": n}


# ----- evaluation: K attempts, several samples per problem, per-problem values for the bootstrap ---------------------

TRANSITIONS = ("i2c", "c2i", "c2c", "i2i")
"""Outcome of attempt 1 -> attempt 2: incorrect->correct, correct->incorrect, correct->correct, incorrect->incorrect."""


def transition_counts(r1: Sequence[float], r2: Sequence[float]) -> dict[str, int]:
    """How many samples went i->c, c->i, c->c and i->i between two attempts (a reward >= 0.5 counts as correct).

    >>> transition_counts([1, 0, 0, 1, 0], [1, 1, 1, 0, 0])
    {'i2c': 2, 'c2i': 1, 'c2c': 1, 'i2i': 1}
    """
    if len(r1) != len(r2):
        raise ValueError(f"r1 and r2 differ in length: {len(r1)} vs {len(r2)}")
    counts = dict.fromkeys(TRANSITIONS, 0)
    for a, b in zip(r1, r2):
        counts[("c" if a >= 0.5 else "i") + "2" + ("c" if b >= 0.5 else "i")] += 1
    return counts


def per_problem_metrics(rewards) -> dict[str, np.ndarray]:
    """Every evaluation metric as one value per problem, so that a metric is the mean over problems.

    `rewards` has shape (problems, samples, attempts). Each problem's value is the mean over its samples, so all
    samples of a problem stay together when the bootstrap resamples problems. Keys: acc_t1 ... acc_tK, and with
    K >= 2 delta, delta_i2c, delta_c2i (attempt 1 -> 2) and, for K > 2, delta_t1_tK (last attempt vs the first).

    >>> m = per_problem_metrics(np.array([[[1, 1]], [[0, 1]], [[1, 0]], [[0, 0]]]))
    >>> m["acc_t1"].tolist(), m["delta_i2c"].tolist(), m["delta"].tolist()
    ([1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 1.0, -1.0, 0.0])
    """
    rewards = np.asarray(rewards, dtype=float)
    if rewards.ndim != 3:
        raise ValueError(f"rewards must have shape (problems, samples, attempts), got {rewards.shape}")
    correct = rewards >= 0.5
    attempts = correct.shape[2]
    values = {f"acc_t{k + 1}": correct[:, :, k].mean(axis=1) for k in range(attempts)}
    if attempts >= 2:
        first, second = correct[:, :, 0], correct[:, :, 1]
        values["delta"] = values["acc_t2"] - values["acc_t1"]
        values["delta_i2c"] = (~first & second).mean(axis=1)
        values["delta_c2i"] = (first & ~second).mean(axis=1)
    if attempts > 2:
        values[f"delta_t1_t{attempts}"] = values[f"acc_t{attempts}"] - values["acc_t1"]
    return values
