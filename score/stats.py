"""Confidence intervals for evaluation metrics: a seeded, paired bootstrap over problems.

Every metric of `score.metrics.per_problem_metrics` is a mean of one value per problem, so one bootstrap covers them
all: draw problems with replacement, take each metric's mean over the draw, repeat, read the percentiles. The same
draws are used for every metric (and, in a comparison, for both evaluations), so the intervals are consistent with
one another: in every resample delta = delta_i2c - delta_c2i exactly.

numpy does the work; scipy.stats.bootstrap would too, but it draws each metric separately and is one more dependency.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95


def _resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _interval(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_ci(
    values: Mapping[str, np.ndarray],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> dict[str, dict[str, float | None]]:
    """Point estimate (the mean) and percentile bootstrap interval of each metric, from one value per problem.

    All arrays must have the same length n (the problems). With n == 0 the estimate is 0 and the interval is None.

    >>> out = bootstrap_ci({"acc": np.array([1.0, 1.0, 1.0])})
    >>> out["acc"]
    {'mean': 1.0, 'low': 1.0, 'high': 1.0}
    """
    lengths = {len(v) for v in values.values()}
    if len(lengths) > 1:
        raise ValueError(f"every metric needs one value per problem; got lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    if n == 0:
        return {name: {"mean": 0.0, "low": None, "high": None} for name in values}
    index = _resample_indices(n, resamples, seed)
    out = {}
    for name, v in values.items():
        v = np.asarray(v, dtype=float)
        low, high = _interval(v[index].mean(axis=1), confidence)
        out[name] = {"mean": float(v.mean()), "low": low, "high": high}
    return out


def paired_difference(
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> dict[str, dict[str, float | bool | None]]:
    """Metric(a) - metric(b) with a paired bootstrap interval; a[k][i] and b[k][i] must be the same problem i.

    Resampling problems (not the two evaluations separately) keeps each problem's pair together, which removes the
    between-problem variance both evaluations share: the interval is much tighter than two separate ones suggest.
    `significant` is True when the interval excludes 0. Only metrics present in both are compared.

    >>> a, b = np.array([1.0] * 6 + [0.0] * 4), np.array([0.0] * 10)
    >>> d = paired_difference({"acc": a}, {"acc": b})["acc"]
    >>> d["diff"], d["low"] > 0, d["significant"]
    (0.6, True, True)
    """
    names = [k for k in a if k in b]
    differences = {}
    for name in names:
        if len(a[name]) != len(b[name]):
            raise ValueError(f"{name}: the two evaluations have {len(a[name])} and {len(b[name])} problems; "
                             "a paired comparison needs the same problems in the same order")
        differences[name] = np.asarray(a[name], dtype=float) - np.asarray(b[name], dtype=float)
    out: dict[str, dict[str, float | bool | None]] = {}
    for name, ci in bootstrap_ci(differences, resamples=resamples, confidence=confidence, seed=seed).items():
        low, high = ci["low"], ci["high"]
        out[name] = {
            "a": float(np.mean(a[name])) if len(a[name]) else 0.0,
            "b": float(np.mean(b[name])) if len(b[name]) else 0.0,
            "diff": ci["mean"],
            "low": low,
            "high": high,
            "significant": low is not None and (low > 0 or high < 0),
        }
    return out
