"""Evaluation files: eval.json and samples.jsonl I/O, paired comparison of two evaluation folders, report.md.

Folder layout written by `score eval --out DIR`:

    DIR/eval.json       metrics (acc_t1, acc_t2, delta, delta_i2c, delta_c2i, n, acc_tK ...), `ci`, `transitions`, `config`
    DIR/samples.jsonl   one line per (problem, sample): every attempt's text, reward and extracted answer
    DIR/scaling.json    with --scaling B: accuracy against the budget, parallel vs sequential
    DIR/report.md       the tables (and links to DIR/plots/*.png)
    DIR/baseline/       with --baseline PATH: the same for the base model, and DIR/compare.json

eval.json is derived from samples.jsonl; `score compare` recomputes everything from the two samples.jsonl files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from score.metrics import per_problem_metrics
from score.stats import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, paired_difference

METRIC_NAMES = {"acc_t1": "Acc@t1", "acc_t2": "Acc@t2", "delta": "Δ(t1,t2)", "delta_i2c": "Δi→c",
                "delta_c2i": "Δc→i"}
TRANSITION_NAMES = {"i2c": "i→c", "c2i": "c→i", "c2c": "c→c", "i2i": "i→i"}
FEEDBACK_NAMES = {"intrinsic": "intrinsic: SCoRe's fixed instruction, which never says whether an attempt was right",
                  "extrinsic:oracle": "extrinsic: told whether each attempt was right",
                  "extrinsic:tests": "extrinsic: shown the first failing test's message"}


def feedback_of(summary: dict[str, Any]) -> str:
    """The feedback kind of an eval.json (`Environment.feedback_kind`); files written before it was recorded were
    all intrinsic."""
    return summary.get("feedback") or summary.get("config", {}).get("feedback") or "intrinsic"


def describe_feedback(kind: str) -> str:
    """'extrinsic:tests' -> 'extrinsic: shown the first failing test's message' (unknown kinds as they are)."""
    return FEEDBACK_NAMES.get(kind, kind)


# ----- files --------------------------------------------------------------------------------------------------------


def write_json(path: Path, obj: Any) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, default=str) + "\n")


def write_eval(folder: Path, summary: dict[str, Any], records: list[dict[str, Any]],
               scaling: dict[str, Any] | None = None) -> None:
    """eval.json, samples.jsonl and (if given) scaling.json into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "eval.json", summary)
    with (folder / "samples.jsonl").open("w") as f:
        for record in records:
            f.write(json.dumps(record, default=str) + "\n")  # default=str: references may be test-suite objects
    if scaling is not None:
        write_json(folder / "scaling.json", scaling)


def _need(folder: Path, name: str) -> Path:
    path = Path(folder) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {folder} an output folder of `score eval --out`?")
    return path


def read_eval(folder: Path) -> dict[str, Any]:
    return json.loads(_need(folder, "eval.json").read_text())


def read_samples(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _need(folder, "samples.jsonl").read_text().splitlines() if line.strip()]


def rewards_from_samples(records: list[dict[str, Any]]) -> tuple[list[str], np.ndarray]:
    """Problem ids and rewards (problems, samples, attempts) from samples.jsonl records (problem-major)."""
    if not records:
        return [], np.zeros((0, 1, 1))
    groups: list[list[dict[str, Any]]] = []
    for record in records:
        if record["sample"] == 0:
            groups.append([])
        if not groups:
            raise ValueError("samples.jsonl: the first record must be sample 0 of its problem")
        groups[-1].append(record)
    ids = [g[0]["problem_id"] for g in groups]
    rewards = np.array([[[a["reward"] for a in r["attempts"]] for r in g] for g in groups], dtype=float)
    return ids, rewards


# ----- paired comparison --------------------------------------------------------------------------------------------


def _align(ids_a: list[str], ids_b: list[str], rewards_b: np.ndarray, where: str) -> np.ndarray:
    """B's rewards in A's problem order; the two must hold the same problems."""
    if ids_a == ids_b:
        return rewards_b
    if set(ids_a) != set(ids_b) or len(set(ids_a)) != len(ids_a) or len(set(ids_b)) != len(ids_b):
        only_a, only_b = sorted(set(ids_a) - set(ids_b)), sorted(set(ids_b) - set(ids_a))
        raise ValueError(
            f"{where}: a paired comparison needs the same problems; {len(only_a)} only in A (e.g. {only_a[:3]}), "
            f"{len(only_b)} only in B (e.g. {only_b[:3]}). Evaluate both with the same --env, --split and --limit."
        )
    position = {pid: i for i, pid in enumerate(ids_b)}
    return rewards_b[[position[pid] for pid in ids_a]]


def compare_dirs(dir_a: Path, dir_b: Path, *, resamples: int = DEFAULT_RESAMPLES,
                 confidence: float = DEFAULT_CONFIDENCE, seed: int = 0) -> dict[str, Any]:
    """A - B for every metric both evaluations have, with a paired bootstrap interval over their common problems.
    `feedback` holds each side's kind of feedback (they may differ: then A − B includes the feedback's effect)."""
    ids_a, rewards_a = rewards_from_samples(read_samples(dir_a))
    ids_b, rewards_b = rewards_from_samples(read_samples(dir_b))
    rewards_b = _align(ids_a, ids_b, rewards_b, where=f"score compare {dir_a} {dir_b}")
    diff = paired_difference(per_problem_metrics(rewards_a), per_problem_metrics(rewards_b), resamples=resamples,
                             confidence=confidence, seed=seed)
    feedback = {side: feedback_of(read_eval(folder)) if (Path(folder) / "eval.json").is_file() else "intrinsic"
                for side, folder in (("a", dir_a), ("b", dir_b))}
    return {"a": str(dir_a), "b": str(dir_b), "n": len(ids_a), "metrics": diff, "confidence": confidence,
            "bootstrap": {"resamples": resamples, "seed": seed, "unit": "problem", "paired": True},
            "feedback": feedback}


# ----- markdown -----------------------------------------------------------------------------------------------------


def percent(value: float | None, signed: bool = False) -> str:
    """A rate as percent with one decimal ("–" for a missing value): percent(0.256) -> '25.6', signed -> '+25.6'."""
    if value is None:
        return "–"
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def _cell(value: float, ci: list[float | None] | None, signed: bool) -> str:
    """'52.6 [48.2, 57.0]' (percent)."""
    if not ci or ci[0] is None:
        return percent(value, signed)
    return f"{percent(value, signed)} [{percent(ci[0], signed)}, {percent(ci[1], signed)}]"


def metric_columns(summary: dict[str, Any]) -> list[str]:
    """The metrics of a summary in table order: acc_t1..acc_tK, delta, delta_i2c, delta_c2i, delta_t1_tK."""
    attempts = int(summary.get("attempts", 2))
    names = [f"acc_t{k}" for k in range(1, attempts + 1)]
    names += [n for n in ("delta", "delta_i2c", "delta_c2i", f"delta_t1_t{attempts}") if n in summary]
    return names


def _header(name: str) -> str:
    if name in METRIC_NAMES:
        return METRIC_NAMES[name]
    if name.startswith("acc_t"):
        return f"Acc@t{name[5:]}"
    return "Δ(t1,t" + name.rsplit("_t", 1)[1] + ")"


def eval_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """A markdown table, one row per (label, eval.json summary); percent, with the bootstrap interval. Every row
    names its feedback, so intrinsic and extrinsic self-correction never share a table unlabelled."""
    columns = metric_columns(rows[0][1])
    lines = ["| model | feedback | n | " + " | ".join(_header(c) for c in columns) + " |",
             "|---|---|---:|" + "---:|" * len(columns)]
    for label, summary in rows:
        cells = [_cell(summary.get(c, 0.0), summary.get("ci", {}).get(c), signed=c.startswith("delta"))
                 if c in summary else "–" for c in columns]
        lines.append(f"| {label} | {feedback_of(summary)} | {summary['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def transitions_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """Sample counts of each t1 -> t2 outcome."""
    lines = ["| model | " + " | ".join(TRANSITION_NAMES.values()) + " |", "|---|" + "---:|" * len(TRANSITION_NAMES)]
    for label, summary in rows:
        counts = summary.get("transitions", {})
        lines.append(f"| {label} | " + " | ".join(str(counts.get(k, 0)) for k in TRANSITION_NAMES) + " |")
    return "\n".join(lines)


def compare_table(comparison: dict[str, Any], label_a: str = "A", label_b: str = "B") -> str:
    """A - B per metric with its paired interval; * marks an interval that excludes 0. When A and B had different
    feedback between attempts, each column says which."""
    feedback = comparison.get("feedback", {})
    if feedback and feedback.get("a") != feedback.get("b"):
        label_a, label_b = f"{label_a} ({feedback['a']})", f"{label_b} ({feedback['b']})"
    lines = [f"| metric | {label_a} | {label_b} | {label_a} − {label_b} | significant |", "|---|---:|---:|---:|:---:|"]
    for name, d in comparison["metrics"].items():
        signed = name.startswith("delta")
        lines.append(f"| {_header(name)} | {percent(d['a'], signed)} | {percent(d['b'], signed)} | "
                     f"{_cell(d['diff'], [d['low'], d['high']], signed=True)} | {'*' if d['significant'] else ''} |")
    return "\n".join(lines)


def scaling_table(scaling: dict[str, Any]) -> str:
    """Accuracy against the budget B: majority vote over B samples vs over B/2 samples with one correction each."""
    par, seq = scaling["parallel"], scaling["sequential"]
    seq_at = dict(zip(seq["budget"], zip(seq["acc"], seq["ci"])))
    lines = ["| B | parallel (majority of B) | sequential (majority of B/2 corrected) |", "|---:|---:|---:|"]
    for b, acc, ci in zip(par["budget"], par["acc"], par["ci"]):
        s = _cell(*seq_at[b], signed=False) if b in seq_at else "–"
        lines.append(f"| {b} | {_cell(acc, ci, signed=False)} | {s} |")
    return "\n".join(lines)


def write_report(folder: Path, summary: dict[str, Any], *, baseline: dict[str, Any] | None = None,
                 comparison: dict[str, Any] | None = None, scaling: dict[str, Any] | None = None,
                 plots: list[Path] = ()) -> Path:
    """DIR/report.md: the metric table (model, and baseline if any), transitions, comparison, scaling, plots."""
    cfg = summary.get("config", {})
    model = Path(str(cfg.get("model", "model"))).name
    rows = [(model, summary)]
    if baseline is not None:
        rows.append((f"{Path(str(baseline.get('config', {}).get('model', 'baseline'))).name} (baseline)", baseline))
    confidence = round(100 * summary.get("confidence", DEFAULT_CONFIDENCE))
    boot = summary.get("bootstrap", {})
    decoding = "greedy" if cfg.get("temperature", 0) == 0 else f"temperature {cfg.get('temperature')}"
    parts = [
        f"# Self-correction evaluation: {model} on {cfg.get('env', '?')}/{cfg.get('split', '?')}",
        (f"{summary['n']} problems × {summary.get('samples', 1)} sample(s) × {summary.get('attempts', 2)} attempts, "
         f"{decoding}, max {cfg.get('max_new_tokens', '?')} new tokens. Percent; [{confidence}% CI] from a paired "
         f"bootstrap over problems ({boot.get('resamples', '?')} resamples, seed {boot.get('seed', '?')})."),
        f"Feedback between attempts: {describe_feedback(feedback_of(summary))}.",
        eval_table(rows),
        "Transitions from attempt 1 to attempt 2 (samples):",
        transitions_table(rows),
    ]
    if comparison is not None:
        parts += ["## Paired comparison with the baseline", compare_table(comparison, model, "baseline")]
    if scaling is not None:
        parts += [f"## Inference-time scaling (SCoRe §6.2), temperature {scaling['temperature']}", scaling_table(scaling)]
    if plots:
        parts += ["## Plots", "\n".join(f"![{Path(p).stem}]({p})" for p in plots)]
    path = Path(folder) / "report.md"
    path.write_text("\n\n".join(parts) + "\n")
    return path
