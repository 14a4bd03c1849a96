"""Self-correction metrics of SCoRe: Accuracy@t1, Accuracy@t2, Δ(t1,t2), Δi→c, Δc→i."""

from __future__ import annotations

from collections.abc import Sequence


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
