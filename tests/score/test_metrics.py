"""Self-correction metric formulas on small outcome tables."""

import pytest

from score.metrics import self_correction_metrics


def test_metrics_by_hand():
    # outcomes (r1, r2): c->c, i->c, i->c, c->i, i->i
    m = self_correction_metrics([1, 0, 0, 1, 0], [1, 1, 1, 0, 0])
    assert m == pytest.approx({"acc_t1": 0.4, "acc_t2": 0.6, "delta": 0.2, "delta_i2c": 0.4, "delta_c2i": 0.2, "n": 5})
    assert m["delta"] == pytest.approx(m["delta_i2c"] - m["delta_c2i"])


def test_all_correct_and_empty():
    assert self_correction_metrics([1, 1], [1, 1]) == {
        "acc_t1": 1.0, "acc_t2": 1.0, "delta": 0.0, "delta_i2c": 0.0, "delta_c2i": 0.0, "n": 2}
    assert self_correction_metrics([], [])["n"] == 0


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        self_correction_metrics([1], [1, 0])
