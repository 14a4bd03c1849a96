"""Best-of-N selection with verifiers: `score eval --select vote|orm|prm|simpo|weighted-vote|cotnpot`.

S first-turn samples per problem (temperature > 0) are drawn once; every method picks one of them and is scored by
the picked sample's reward:

- vote: majority vote over the final answers (`score.evaluate.majority_vote`; ties: the answer seen first);
- orm, prm, simpo: the sample with the highest score of that verifier (ties: the first);
- weighted-vote: each answer's votes weighted by a verifier's scores (ORM/PRM probabilities; a SimPO score s counts
  exp(s), the per-token geometric-mean probability), the heaviest answer wins;
- cotnpot: majority vote over the samples whose CoTnPoT program agrees (`score.verifiers.cotnpot`), over all samples
  when none does;
- oracle: 1 when any sample is right (pass@N, the ceiling of every selection).

Best-of-N curves: for N = 1, 2, 4, ... S the S samples of a problem are cut into S/N disjoint blocks in sampling
order, the method picks within each block, and the problem's value is the mean over its blocks; the curve is the
mean over problems with a percentile-bootstrap interval over problems (`score.stats.bootstrap_ci`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from score.evaluate import majority_vote
from score.stats import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, bootstrap_ci

METHODS = ("vote", "orm", "prm", "simpo", "weighted-vote", "cotnpot")


def best_score(scores: Sequence[float], rewards: Sequence[float]) -> float:
    """The reward of the highest-scored sample (the first of equals).

    >>> best_score([0.2, 0.9, 0.9], [0.0, 1.0, 0.0])
    1.0
    """
    return float(rewards[int(np.argmax(scores))])


def weighted_vote(keys: Sequence[str | None], weights: Sequence[float], rewards: Sequence[float]) -> float:
    """The reward of the answer with the largest total weight (samples without an answer do not vote; ties: the
    answer seen first).

    >>> weighted_vote(["4", "5", "5"], [0.9, 0.3, 0.4], [1.0, 0.0, 0.0])
    1.0
    >>> weighted_vote([None, None], [1.0, 1.0], [0.0, 1.0])
    0.0
    """
    totals: dict[str, float] = defaultdict(float)
    first: dict[str, int] = {}
    for i, (key, weight) in enumerate(zip(keys, weights)):
        if key is not None:
            totals[key] += weight
            first.setdefault(key, i)
    if not totals:
        return 0.0
    best = max(totals, key=lambda k: (totals[k], -first[k]))
    return float(rewards[first[best]])


def filtered_vote(keys: Sequence[str | None], keep: Sequence[bool], rewards: Sequence[float]) -> float:
    """Majority vote among the kept samples; among all when none is kept.

    >>> filtered_vote(["4", "5", "5"], [True, False, False], [1.0, 0.0, 0.0])
    1.0
    >>> filtered_vote(["4", "5", "5"], [False, False, False], [1.0, 0.0, 0.0])
    0.0
    """
    chosen = [i for i, k in enumerate(keep) if k] or list(range(len(keys)))
    return majority_vote([keys[i] for i in chosen], [rewards[i] for i in chosen])


def vote_weight(kind: str, score: float) -> float:
    """A verifier score as a vote weight: probabilities as they are, a SimPO log-probability as exp(score)."""
    return math.exp(score) if kind == "simpo" else score


def pick(method: str, keys: Sequence[str | None], rewards: Sequence[float], scores: dict[str, Sequence[float]],
         cotnpot: Sequence[bool] | None = None, weight_kind: str | None = None) -> float:
    """The reward of the sample `method` selects among one block of samples."""
    if method == "vote":
        return majority_vote(keys, rewards)
    if method == "oracle":
        return float(max(rewards))
    if method in ("orm", "prm", "simpo"):
        return best_score(scores[method], rewards)
    if method == "weighted-vote":
        kind = weight_kind or next(iter(scores))
        return weighted_vote(keys, [vote_weight(kind, s) for s in scores[kind]], rewards)
    if method == "cotnpot":
        if cotnpot is None:
            raise ValueError("--select cotnpot needs the CoTnPoT verdicts")
        return filtered_vote(keys, cotnpot, rewards)
    raise ValueError(f"--select: {method!r} is not one of {', '.join(METHODS)}")


def sizes_up_to(samples: int) -> list[int]:
    """N = 1, 2, 4, ... up to the largest power of two <= samples.

    >>> sizes_up_to(16), sizes_up_to(6)
    ([1, 2, 4, 8, 16], [1, 2, 4])
    """
    return [2**i for i in range(int(math.log2(samples)) + 1)]


def best_of_n(per_problem: list[dict[str, Any]], methods: Sequence[str], sizes: Sequence[int], *,
              weight_kind: str | None = None, resamples: int = DEFAULT_RESAMPLES,
              confidence: float = DEFAULT_CONFIDENCE, seed: int = 0) -> dict[str, Any]:
    """Curves {method: {"n": sizes, "acc": [...], "ci": [[low, high], ...]}} from per-problem samples.

    per_problem: one dict per problem with "keys", "rewards", "scores" ({verifier kind: [score per sample]}) and
    optionally "cotnpot" (a bool per sample), all in sampling order.
    """
    curves: dict[str, Any] = {}
    for method in methods:
        values = {}
        for n in sizes:
            rows = []
            for item in per_problem:
                total = len(item["rewards"])
                blocks = [range(b * n, (b + 1) * n) for b in range(total // n)]
                rows.append(np.mean([pick(method, [item["keys"][i] for i in block],
                                          [item["rewards"][i] for i in block],
                                          {k: [v[i] for i in block] for k, v in item["scores"].items()},
                                          [item["cotnpot"][i] for i in block] if item.get("cotnpot") else None,
                                          weight_kind) for block in blocks]))
            values[str(n)] = np.asarray(rows, dtype=float)
        ci = bootstrap_ci(values, resamples=resamples, confidence=confidence, seed=seed)
        curves[method] = {"n": list(sizes), "acc": [ci[str(n)]["mean"] for n in sizes],
                          "ci": [[ci[str(n)]["low"], ci[str(n)]["high"]] for n in sizes]}
    return curves


def curves_table(curves: dict[str, Any]) -> str:
    """Markdown: one row per N, one column per method, accuracy % [95% CI]."""
    methods = list(curves)
    sizes = curves[methods[0]]["n"]
    lines = ["| N | " + " | ".join(methods) + " |", "|---:|" + "---:|" * len(methods)]
    for j, n in enumerate(sizes):
        cells = []
        for m in methods:
            acc, (low, high) = curves[m]["acc"][j], curves[m]["ci"][j]
            cells.append(f"{100 * acc:.1f} [{100 * low:.1f}, {100 * high:.1f}]" if low is not None else
                         f"{100 * acc:.1f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(curves: dict[str, Any], path, title: str = "best-of-N selection"):
    """accuracy against N (log2 axis), one line per method with its interval as a band."""
    from score.plots import _save, plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, curve in curves.items():
        style = "--" if method in ("vote", "oracle") else "-"
        ax.plot(curve["n"], [100 * a for a in curve["acc"]], style, marker="o", label=method)
        if all(c[0] is not None for c in curve["ci"]):
            ax.fill_between(curve["n"], [100 * c[0] for c in curve["ci"]], [100 * c[1] for c in curve["ci"]],
                            alpha=0.12)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N (samples per problem)")
    ax.set_ylabel("accuracy of the selected sample (%)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)
