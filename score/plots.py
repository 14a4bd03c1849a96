"""PNG plots of evaluations and training runs (matplotlib, Agg backend: no display needed).

- accuracy per attempt, with the bootstrap interval (one line per model);
- the t1 -> t2 transitions as bars (i→c, c→i, c→c, i→i);
- inference-time scaling: accuracy against the budget B, parallel vs sequential (SCoRe §6.2, Fig. 5);
- a training run's metrics.jsonl: acc_t1 / acc_t2, delta, the KL of each turn (and eval/* if logged) over steps.

`score plot DIR` draws whichever of these DIR has data for (`plot_dir`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: before pyplot is imported

import matplotlib.pyplot as plt

from score.report import TRANSITION_NAMES

_DPI = 120


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def _errors(values: list[float], intervals: list[list[float | None]]) -> list[list[float]] | None:
    """matplotlib's yerr (distances below and above) from [low, high] intervals; None if there are none."""
    if any(ci is None or ci[0] is None for ci in intervals):
        return None
    return [[max(v - ci[0], 0.0) for v, ci in zip(values, intervals)],
            [max(ci[1] - v, 0.0) for v, ci in zip(values, intervals)]]


def plot_attempt_accuracy(evals: list[tuple[str, dict[str, Any]]], path: Path) -> Path:
    """Accuracy at attempt 1..K with its interval, one line per (label, eval.json summary)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, summary in evals:
        attempts = list(range(1, int(summary.get("attempts", 2)) + 1))
        acc = [100 * summary[f"acc_t{k}"] for k in attempts]
        ci = [[None if x is None else 100 * x for x in summary["ci"][f"acc_t{k}"]] for k in attempts]
        ax.errorbar(attempts, acc, yerr=_errors(acc, ci), marker="o", capsize=4, label=f"{label} (n={summary['n']})")
    ax.set_xticks(attempts)
    ax.set_xlabel("attempt")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy per attempt (95% CI)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_transitions(evals: list[tuple[str, dict[str, Any]]], path: Path) -> Path:
    """Fraction of samples per t1 -> t2 outcome, grouped bars per model."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    keys = list(TRANSITION_NAMES)
    width = 0.8 / max(len(evals), 1)
    for i, (label, summary) in enumerate(evals):
        counts = summary.get("transitions", {})
        total = sum(counts.values()) or 1
        xs = [j + (i - (len(evals) - 1) / 2) * width for j in range(len(keys))]
        bars = ax.bar(xs, [100 * counts.get(k, 0) / total for k in keys], width, label=label)
        ax.bar_label(bars, labels=[str(counts.get(k, 0)) for k in keys], fontsize=8)
    ax.set_xticks(range(len(keys)), [TRANSITION_NAMES[k] for k in keys])
    ax.set_ylabel("samples (%)")
    ax.set_title("Attempt 1 → attempt 2 (counts on bars)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_scaling(scaling: dict[str, Any], path: Path) -> Path:
    """Accuracy against the budget B (log2 axis): majority over B samples vs B/2 samples + one correction each."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, label in (("parallel", "parallel: majority of B"), ("sequential", "sequential: B/2 + 1 correction")):
        curve = scaling[name]
        acc = [100 * a for a in curve["acc"]]
        ax.plot(curve["budget"], acc, marker="o", label=label)
        if all(ci[0] is not None for ci in curve["ci"]):
            ax.fill_between(curve["budget"], [100 * c[0] for c in curve["ci"]], [100 * c[1] for c in curve["ci"]],
                            alpha=0.15)
    budgets = scaling["parallel"]["budget"]
    ax.set_xscale("log", base=2)
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.set_xlabel("samples per problem (B)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Inference-time scaling (n={scaling['n']}, T={scaling['temperature']})")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), int | float)]
    return [p[0] for p in points], [p[1] for p in points]


def _eval_key(rows: list[dict[str, Any]], name: str) -> str | None:
    """The in-training eval metric `name` as logged: 'eval/acc_t1' or 'eval_acc_t1'."""
    for key in (f"eval/{name}", f"eval_{name}"):
        if any(key in r for r in rows):
            return key
    return None


def plot_training(rows: list[dict[str, Any]], path: Path) -> Path:
    """A training run's curves over steps: accuracies, delta, and the per-turn KL."""
    if not rows:
        raise ValueError("metrics.jsonl is empty: nothing to plot")
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ax = axes[0]
    for key in ("acc_t1", "acc_t2"):
        ax.plot(*_series(rows, key), label=f"train {key}")
        eval_key = _eval_key(rows, key)
        if eval_key:
            ax.plot(*_series(rows, eval_key), marker="o", linestyle="--", label=eval_key)
    ax.set_title("accuracy")
    ax = axes[1]
    ax.plot(*_series(rows, "delta"), label="train delta")
    eval_key = _eval_key(rows, "delta")
    if eval_key:
        ax.plot(*_series(rows, eval_key), marker="o", linestyle="--", label=eval_key)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_title("Δ(t1,t2) = acc_t2 − acc_t1")
    ax = axes[2]
    for key in ("kl_t1", "kl_t2"):
        ax.plot(*_series(rows, key), label=key)
    ax.set_title("KL to the reference, per turn")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def plot_eval_dir(folder: Path, *, baseline: Path | None = None, out: Path | None = None) -> list[Path]:
    """The evaluation plots of a `score eval` folder (with its baseline, if any) into OUT (default FOLDER/plots)."""
    from score.report import read_eval

    folder = Path(folder)
    out = Path(out) if out else folder / "plots"
    summary = read_eval(folder)
    evals = [(Path(str(summary.get("config", {}).get("model", folder.name))).name, summary)]
    if baseline is not None:
        base = read_eval(baseline)
        evals.append((Path(str(base.get("config", {}).get("model", "baseline"))).name + " (baseline)", base))
    written = [plot_attempt_accuracy(evals, out / "accuracy_per_attempt.png")]
    if "transitions" in summary:
        written.append(plot_transitions(evals, out / "transitions.png"))
    if (folder / "scaling.json").is_file():
        written.append(plot_scaling(json.loads((folder / "scaling.json").read_text()), out / "scaling.png"))
    return written


def plot_dir(folder: Path, out: Path | None = None) -> list[Path]:
    """`score plot DIR`: training curves if DIR has metrics.jsonl, evaluation plots if it has eval.json."""
    folder = Path(folder)
    out = Path(out) if out else folder / "plots"
    written = []
    if (folder / "metrics.jsonl").is_file():
        written.append(plot_training(read_metrics(folder / "metrics.jsonl"), out / "training.png"))
    if (folder / "eval.json").is_file():
        baseline = folder / "baseline" if (folder / "baseline" / "eval.json").is_file() else None
        written += plot_eval_dir(folder, baseline=baseline, out=out)
    if not written:
        raise FileNotFoundError(f"{folder} has neither metrics.jsonl (a training run) nor eval.json (score eval)")
    return written
