"""Evaluation metrics on hand-computed tables, and the seeded paired bootstrap."""

import numpy as np
import pytest

from score.evaluate import summarize
from score.metrics import per_problem_metrics, self_correction_metrics, transition_counts
from score.stats import bootstrap_ci, paired_difference

# (problems, samples=1, attempts=3); outcomes t1->t2: c->c, i->c, i->c, c->i, i->i; t3 right on problems 0, 1, 4
TABLE = np.array([[[1, 1, 1]], [[0, 1, 1]], [[0, 1, 0]], [[1, 0, 0]], [[0, 0, 1]]])


def _means(rewards):
    return {k: float(v.mean()) for k, v in per_problem_metrics(rewards).items()}


def test_per_problem_metrics_by_hand():
    m = _means(TABLE)
    assert m == pytest.approx({"acc_t1": 0.4, "acc_t2": 0.6, "acc_t3": 0.6, "delta": 0.2, "delta_i2c": 0.4,
                               "delta_c2i": 0.2, "delta_t1_t3": 0.2})
    # with two attempts it is exactly the trainer's formula
    two = self_correction_metrics(TABLE[:, 0, 0], TABLE[:, 0, 1])
    assert {k: v for k, v in two.items() if k != "n"} == pytest.approx(_means(TABLE[:, :, :2]))
    assert transition_counts(TABLE[:, 0, 0], TABLE[:, 0, 1]) == {"i2c": 2, "c2i": 1, "c2c": 1, "i2i": 1}


def test_samples_average_within_a_problem():
    # problem 0: samples (c,c) and (i,c); problem 1: (c,i) and (i,i)
    rewards = np.array([[[1, 1], [0, 1]], [[1, 0], [0, 0]]])
    values = per_problem_metrics(rewards)
    assert values["acc_t1"].tolist() == [0.5, 0.5]
    assert values["acc_t2"].tolist() == [1.0, 0.0]
    assert values["delta_i2c"].tolist() == [0.5, 0.0] and values["delta_c2i"].tolist() == [0.0, 0.5]


def test_all_correct_empty_and_single_attempt():
    full = summarize(np.ones((4, 2, 2)))
    assert full["acc_t1"] == full["acc_t2"] == 1.0 and full["delta"] == 0.0
    assert full["ci"]["acc_t2"] == [1.0, 1.0] and full["transitions"] == {"i2c": 0, "c2i": 0, "c2c": 8, "i2i": 0}
    empty = summarize(np.zeros((0, 1, 2)))
    assert empty["n"] == 0 and empty["acc_t1"] == 0.0 and empty["ci"]["delta"] == [None, None]
    single = summarize(np.array([[[1.0]], [[0.0]]]))
    assert set(single["ci"]) == {"acc_t1"} and "transitions" not in single
    with pytest.raises(ValueError, match="problems, samples, attempts"):
        per_problem_metrics(np.ones((3, 2)))


def test_bootstrap_contains_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    widths = []
    for n in (20, 200, 2000):
        values = (rng.random(n) < 0.4).astype(float)
        ci = bootstrap_ci({"acc": values}, seed=0)["acc"]
        assert ci["low"] <= ci["mean"] <= ci["high"]
        assert ci["mean"] == pytest.approx(values.mean())
        widths.append(ci["high"] - ci["low"])
    assert widths[0] > widths[1] > widths[2]
    # roughly the normal approximation: 2 * 1.96 * sqrt(p (1 - p) / n)
    assert widths[2] == pytest.approx(2 * 1.96 * np.sqrt(0.24 / 2000), rel=0.15)


def test_bootstrap_is_seeded_and_consistent_across_metrics():
    values = per_problem_metrics(np.random.default_rng(2).integers(0, 2, size=(50, 1, 2)))
    a, b = bootstrap_ci(values, seed=7), bootstrap_ci(values, seed=7)
    assert a == b
    assert bootstrap_ci(values, seed=8) != a
    # higher confidence, wider interval
    wide = bootstrap_ci(values, seed=7, confidence=0.99)["acc_t1"]
    assert wide["high"] - wide["low"] >= a["acc_t1"]["high"] - a["acc_t1"]["low"]
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(values, confidence=95)


def test_paired_difference():
    rng = np.random.default_rng(3)
    base = (rng.random((300, 1, 2)) < 0.5).astype(float)
    better = base.copy()
    better[:60, 0, 1] = 1.0  # the second attempt fixed on 60 problems: acc_t2 rises, acc_t1 is unchanged
    d = paired_difference(per_problem_metrics(better), per_problem_metrics(base))
    assert d["acc_t1"]["diff"] == 0.0 and not d["acc_t1"]["significant"]
    assert d["acc_t2"]["diff"] == pytest.approx(better[:, 0, 1].mean() - base[:, 0, 1].mean())
    assert d["acc_t2"]["significant"] and d["acc_t2"]["low"] > 0
    # pairing removes the shared variance: tighter than the interval of either evaluation alone
    alone = bootstrap_ci(per_problem_metrics(base))["acc_t2"]
    assert d["acc_t2"]["high"] - d["acc_t2"]["low"] < alone["high"] - alone["low"]
    same = paired_difference(per_problem_metrics(base), per_problem_metrics(base))
    assert all(v["diff"] == 0 and v["low"] == v["high"] == 0 and not v["significant"] for v in same.values())
    with pytest.raises(ValueError, match="same problems"):
        paired_difference({"acc": np.ones(3)}, {"acc": np.ones(4)})
