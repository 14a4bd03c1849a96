"""`score verifier w2s`: weak-to-strong generalisation of verifiers (Burns et al., 2023) and the gap recovered.

With the data of `score verifier data` (the train split) and `w2s.eval_data` (samples of problems none of the
verifiers sees), the problems of the data are split once, with the run's seed, into A (`w2s.weak_fraction`) and B:

1. weak: a verifier on `w2s.weak_model` trained on A's gold labels (`w2s.weak_kind`, orm or prm);
2. weak labels: the weak verifier scores B's samples; label = 1 for the top share of its scores equal to the share
   of right samples in A (`w2s.hard_labels`), or p itself;
3. weak-to-strong: the student (model.path, `w2s.student_kind`) trained on B with the weak labels (orm: BCE on them,
   with the auxiliary confidence loss when `w2s.confidence_alpha` > 0; simpo: pairs of weak-correct and
   weak-incorrect samples);
4. strong ceiling: the same student trained on B's gold labels.

Each is evaluated on eval_data by ranking accuracy (the share of a problem's (correct, incorrect) sample pairs it
scores in the right order, over all problems' pairs: threshold-free, so SimPO and ORM compare) and pick accuracy
(the share of problems whose top-scored sample is correct). PGR = (w2s - weak) / (strong - weak) for each.
OUTPUT_DIR/w2s.json and OUTPUT_DIR/w2s.md hold the table; weak/, w2s/, strong/ the three verifiers.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from score.config import ConfigError
from score.verifiers.config import VerifierConfig
from score.verifiers.data import read_data
from score.verifiers.scoring import Verifier
from score.verifiers.train import run_train

console = Console(stderr=True)


def ranking_accuracy(records: Sequence[dict[str, Any]], scores: Sequence[float]) -> float | None:
    """Share of within-problem (correct, incorrect) pairs with correct scored higher (ties count half).

    >>> recs = [{"problem_id": "a", "correct": c} for c in (1, 0, 0)] + [{"problem_id": "b", "correct": 1}]
    >>> ranking_accuracy(recs, [0.5, 0.7, 0.5, 0.9])  # pairs (0.5 vs 0.7): 0, (0.5 vs 0.5): 1/2
    0.25
    """
    by_problem: dict[str, tuple[list[float], list[float]]] = {}
    for r, s in zip(records, scores, strict=True):
        by_problem.setdefault(r["problem_id"], ([], []))[0 if r["correct"] else 1].append(s)
    won = total = 0.0
    for right, wrong in by_problem.values():
        for a in right:
            for b in wrong:
                won += 1.0 if a > b else 0.5 if a == b else 0.0
                total += 1
    return won / total if total else None


def pick_accuracy(records: Sequence[dict[str, Any]], scores: Sequence[float]) -> float:
    """Share of problems whose highest-scored sample is correct (the first of equals).

    >>> pick_accuracy([{"problem_id": "a", "correct": 0}, {"problem_id": "a", "correct": 1}], [0.2, 0.3])
    1.0
    """
    best: dict[str, tuple[float, int]] = {}
    for r, s in zip(records, scores, strict=True):
        if r["problem_id"] not in best or s > best[r["problem_id"]][0]:
            best[r["problem_id"]] = (s, r["correct"])
    return sum(c for _, c in best.values()) / len(best) if best else 0.0


def pgr(weak: float | None, w2s: float | None, strong: float | None) -> float | None:
    """Performance gap recovered, (w2s - weak) / (strong - weak); None when the gap is 0 or a value is missing.

    >>> pgr(0.5, 0.75, 1.0)
    0.5
    """
    if weak is None or w2s is None or strong is None or strong == weak:
        return None
    return (w2s - weak) / (strong - weak)


def weak_labels(scores: Sequence[float], *, prior: float, hard: bool) -> list[float]:
    """The weak supervisor's labels: its probabilities (hard=False), or 1 for the top `prior` share of its scores
    (hard=True; prior = the share of right samples in the weak's own training data). A fixed 0.5 cut would label
    everything wrong whenever wrong samples dominate, and give the student nothing to learn.

    >>> weak_labels([0.1, 0.3, 0.2, 0.4], prior=0.5, hard=True), weak_labels([0.1, 0.3], prior=0.5, hard=False)
    ([0.0, 1.0, 0.0, 1.0], [0.1, 0.3])
    """
    if not hard:
        return [float(s) for s in scores]
    if not scores or prior <= 0:
        return [0.0] * len(scores)
    tau = float(np.quantile(np.asarray(scores, dtype=float), min(max(1.0 - prior, 0.0), 1.0)))
    return [float(s >= tau) for s in scores]


def split_problems(records: Sequence[dict[str, Any]], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(A, B): the records of a seeded `fraction` of the problems, and of the rest."""
    ids = sorted({r["problem_id"] for r in records})
    random.Random(seed).shuffle(ids)
    first = set(ids[: max(1, round(fraction * len(ids)))])
    return [r for r in records if r["problem_id"] in first], [r for r in records if r["problem_id"] not in first]


def _variant(cfg: VerifierConfig, name: str, model: str, kind: str, alpha: float = 0.0) -> VerifierConfig:
    out = copy.deepcopy(cfg)
    out.output_dir = str(Path(cfg.output_dir) / name)
    out.model.path, out.init_from = model, None
    out.verifier.kind, out.verifier.confidence_alpha = kind, alpha
    out.resume = False
    return out


def evaluate_verifier(path: Path, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    scores = Verifier(path).score([r["messages"] for r in records], [r["solution"] for r in records])
    return {"ranking_acc": ranking_accuracy(records, scores), "pick_acc": pick_accuracy(records, scores)}


def run_w2s(cfg: VerifierConfig) -> dict[str, Any]:
    w = cfg.w2s
    if not w.weak_model or not (Path(w.weak_model) / "config.json").is_file():
        raise ConfigError(f"w2s.weak_model: {w.weak_model!r} is not a model folder (the weak verifier's base model)")
    if not w.eval_data:
        raise ConfigError("w2s.eval_data: a `score verifier data` folder of problems no verifier trains on (e.g. the "
                          "test split: data.split=test data.path=...)")
    if w.student_kind == "simpo" and not w.hard_labels:
        raise ConfigError("w2s.hard_labels: a simpo student pairs weak-correct with weak-incorrect samples; set true")
    records, held_out = read_data(cfg.data_dir()), read_data(w.eval_data)
    overlap = {r["problem_id"] for r in records} & {r["problem_id"] for r in held_out}
    if overlap:
        raise ConfigError(f"w2s.eval_data shares {len(overlap)} problems with the training data (e.g. "
                          f"{sorted(overlap)[0]!r}); evaluate on problems no verifier sees")
    part_a, part_b = split_problems(records, w.weak_fraction, cfg.seed)
    out = Path(cfg.output_dir)
    weak = run_train(_variant(cfg, "weak", w.weak_model, w.weak_kind), records=part_a)
    weak_scores = Verifier(weak).score([r["messages"] for r in part_b], [r["solution"] for r in part_b])
    labels = weak_labels(weak_scores, prior=sum(r["correct"] for r in part_a) / len(part_a), hard=w.hard_labels)
    student_cfg = _variant(cfg, "w2s", cfg.model.path, w.student_kind, w.confidence_alpha)
    if w.student_kind == "simpo":
        relabelled = [{**r, "correct": int(y)} for r, y in zip(part_b, labels)]
        student = run_train(student_cfg, records=relabelled)
    else:
        student = run_train(student_cfg, records=part_b, labels=labels)
    strong = run_train(_variant(cfg, "strong", cfg.model.path, w.student_kind), records=part_b)
    rows = {"weak": evaluate_verifier(weak, held_out), "w2s": evaluate_verifier(student, held_out),
            "strong": evaluate_verifier(strong, held_out)}
    result = {
        "weak_model": w.weak_model, "strong_model": cfg.model.path, "weak_kind": w.weak_kind,
        "student_kind": w.student_kind, "hard_labels": w.hard_labels, "confidence_alpha": w.confidence_alpha,
        "records_weak": len(part_a), "records_student": len(part_b), "records_eval": len(held_out),
        "weak_label_acc": sum((y > 0.5) == bool(r["correct"]) for r, y in zip(part_b, labels)) / max(len(part_b), 1),
        **rows,
        "pgr": {metric: pgr(rows["weak"][metric], rows["w2s"][metric], rows["strong"][metric])
                for metric in ("ranking_acc", "pick_acc")},
    }
    (out / "w2s.json").write_text(json.dumps(result, indent=2))
    (out / "w2s.md").write_text(w2s_table([("", result)]) + "\n")
    console.print(w2s_table([("", result)]))
    return result


def w2s_table(rows: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """Markdown: weak, weak-to-strong, strong ceiling and PGR, for ranking and pick accuracy (percent)."""

    def pct(v):
        return "–" if v is None else f"{100 * v:.1f}"

    lines = ["| setting | weak labels acc | metric | weak | w2s | strong ceiling | PGR |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for name, r in rows:
        label = name or f"{r['weak_kind']} -> {r['student_kind']}"
        for metric, title in (("ranking_acc", "ranking"), ("pick_acc", "pick")):
            g = r["pgr"][metric]
            lines.append(f"| {label} | {pct(r['weak_label_acc'])} | {title} | {pct(r['weak'][metric])} | "
                         f"{pct(r['w2s'][metric])} | {pct(r['strong'][metric])} | "
                         f"{'–' if g is None else f'{g:.2f}'} |")
    return "\n".join(lines)
