"""report.md tables, samples.jsonl reading, and the paired comparison of two evaluation folders."""

import numpy as np
import pytest

from score.evaluate import summarize
from score.report import compare_dirs, compare_table, eval_table, rewards_from_samples, write_eval


def _records(ids, rewards):
    """samples.jsonl records for rewards of shape (problems, samples, attempts)."""
    return [{"problem_id": pid, "sample": s, "attempts": [{"attempt": k + 1, "reward": float(r)}
                                                          for k, r in enumerate(rewards[i, s])]}
            for i, pid in enumerate(ids) for s in range(rewards.shape[1])]


def test_eval_table_by_hand():
    # t1: 2/4 right, t2: 3/4 right; i->c on 1 problem, c->i on none
    summary = summarize(np.array([[[1, 1]], [[1, 1]], [[0, 1]], [[0, 0]]]), resamples=200)
    table = eval_table([("m", summary)]).splitlines()
    assert table[0] == "| model | feedback | n | Acc@t1 | Acc@t2 | Δ(t1,t2) | Δi→c | Δc→i |"
    cells = [c.strip() for c in table[2].split("|")[1:-1]]
    assert cells[:3] == ["m", "intrinsic", "4"]  # a summary without `feedback` (older files) was intrinsic
    assert cells[3].startswith("50.0 [") and cells[4].startswith("75.0 [") and cells[5].startswith("+25.0 [")
    assert cells[7] == "+0.0 [+0.0, +0.0]"


def test_every_row_and_comparison_names_its_feedback(tmp_path):
    """Intrinsic and extrinsic self-correction never share a table unlabelled."""
    rewards = np.array([[[0, 1]], [[1, 1]]])
    intrinsic, tests = summarize(rewards, resamples=50), {**summarize(rewards, resamples=50), "feedback": "extrinsic:tests"}
    rows = eval_table([("base", intrinsic), ("base", tests)]).splitlines()[2:]
    assert [row.split("|")[2].strip() for row in rows] == ["intrinsic", "extrinsic:tests"]

    write_eval(tmp_path / "a", tests, _records(["x", "y"], rewards))
    write_eval(tmp_path / "b", intrinsic, _records(["x", "y"], rewards))
    comparison = compare_dirs(tmp_path / "a", tmp_path / "b", resamples=50)
    assert comparison["feedback"] == {"a": "extrinsic:tests", "b": "intrinsic"}
    assert compare_table(comparison, "a", "b").splitlines()[0].startswith(
        "| metric | a (extrinsic:tests) | b (intrinsic) |")
    write_eval(tmp_path / "c", intrinsic, _records(["x", "y"], rewards))
    same = compare_dirs(tmp_path / "b", tmp_path / "c", resamples=50)
    assert compare_table(same, "b", "c").splitlines()[0].startswith("| metric | b | c |")


def test_rewards_round_trip_and_compare(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"p{i}" for i in range(30)]
    a = (rng.random((30, 2, 2)) < 0.6).astype(float)
    b = (rng.random((30, 2, 2)) < 0.4).astype(float)
    write_eval(tmp_path / "a", summarize(a), _records(ids, a))
    order = rng.permutation(30)  # B lists the same problems in another order: pairing goes by problem id
    write_eval(tmp_path / "b", summarize(b[order]), _records([ids[i] for i in order], b[order]))
    read_ids, read = rewards_from_samples(_records(ids, a))
    assert read_ids == ids and np.array_equal(read, a)

    comparison = compare_dirs(tmp_path / "a", tmp_path / "b", resamples=300)
    assert comparison["n"] == 30
    for key in ("acc_t1", "acc_t2", "delta"):
        d = comparison["metrics"][key]
        expected = summarize(a)[key] - summarize(b)[key]
        assert d["diff"] == pytest.approx(expected) and d["low"] <= d["diff"] <= d["high"]
    assert "| Acc@t1 |" in compare_table(comparison, "a", "b")


def test_compare_needs_the_same_problems(tmp_path):
    a = np.ones((3, 1, 2))
    write_eval(tmp_path / "a", summarize(a), _records(["x", "y", "z"], a))
    write_eval(tmp_path / "b", summarize(a), _records(["x", "y", "w"], a))
    with pytest.raises(ValueError, match="same problems.*--limit"):
        compare_dirs(tmp_path / "a", tmp_path / "b")
