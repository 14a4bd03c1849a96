"""Weak-to-strong: the metrics and PGR by hand, and `score verifier w2s` end to end through Ray with tiny models."""

import json

import pytest

from score.verifiers.config import load_verifier_config
from score.verifiers.data import read_data, run_data
from score.verifiers.w2s import pgr, pick_accuracy, ranking_accuracy, run_w2s, split_problems, w2s_table


def test_metrics_and_pgr_hand_computed():
    recs = [{"problem_id": "a", "correct": 1}, {"problem_id": "a", "correct": 0}, {"problem_id": "a", "correct": 0},
            {"problem_id": "b", "correct": 0}, {"problem_id": "b", "correct": 1}]
    # pairs: a: (0.9 vs 0.1) won, (0.9 vs 0.95) lost; b: (0.4 vs 0.4) half -> 1.5 / 3
    scores = [0.9, 0.1, 0.95, 0.4, 0.4]
    assert ranking_accuracy(recs, scores) == 0.5
    assert pick_accuracy(recs, scores) == 0.0  # a picks the 0.95 (wrong); b's tie goes to the first (wrong)
    assert ranking_accuracy(recs[:1], [0.3]) is None  # no pair
    assert pgr(0.6, 0.75, 0.9) == pytest.approx(0.5) and pgr(0.6, 0.5, 0.9) == pytest.approx(-1 / 3)
    assert pgr(0.6, 0.7, 0.6) is None
    a, b = split_problems([{"problem_id": str(i % 10)} for i in range(30)], 0.3, seed=0)
    assert len({r["problem_id"] for r in a}) == 3 and not {r["problem_id"] for r in a} & {r["problem_id"] for r in b}
    assert len(a) + len(b) == 30


def _config(model, out, data, extra=()):
    return load_verifier_config(None, [
        f"output_dir={out}", f"model.path={model}", "env.name=score_test_plugins:VoteEnv", "rollout.engine=hf",
        "rollout.n=4", "rollout.max_new_tokens=4", "rollout.temperature=1.5", "data.problems=12", f"data.path={data}",
        "train.steps=2", "train.batch_size=4", "train.lr=1e-3", *extra])


@pytest.mark.parametrize("student", ["orm", "simpo"])
def test_weak_to_strong_end_to_end(ray_cluster, tiny_model_path, tmp_path_factory, student):
    from score.tiny import build_tiny_model, default_corpus

    root = tmp_path_factory.getbasetemp() / "w2s-shared"
    if not (root / "eval/data.jsonl").is_file():
        run_data(_config(tiny_model_path, root, root / "train"))
        run_data(_config(tiny_model_path, root, root / "eval", ["data.split=test"]))
        build_tiny_model(root / "weak", default_corpus(), seed=3)
    extra = [f"w2s.weak_model={root / 'weak'}", f"w2s.eval_data={root / 'eval'}", f"w2s.student_kind={student}"]
    if student == "orm":
        extra += ["w2s.hard_labels=false", "w2s.confidence_alpha=0.5"]
    out = tmp_path_factory.mktemp("w2s") / student
    result = run_w2s(_config(tiny_model_path, out, root / "train", extra))
    for name in ("weak", "w2s", "strong"):
        assert (out / name / "final/verifier.json").is_file()
        assert 0 <= result[name]["pick_acc"] <= 1
    assert json.loads((out / "w2s/final/verifier.json").read_text())["kind"] == student
    records = read_data(root / "train")
    assert result["records_weak"] + result["records_student"] == len(records)
    assert json.loads((out / "w2s.json").read_text())["pgr"].keys() == {"ranking_acc", "pick_acc"}
    assert "| orm -> " + student in (out / "w2s.md").read_text()


def test_w2s_refuses_eval_data_that_overlaps_the_training_problems(ray_cluster, tiny_model_path, tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "data.jsonl").write_text(json.dumps({"problem_id": "x", "correct": 1, "messages": [], "solution": "1"}))
    cfg = _config(tiny_model_path, tmp_path / "o", data, [f"w2s.weak_model={tiny_model_path}", f"w2s.eval_data={data}"])
    with pytest.raises(ValueError, match="shares 1 problems"):
        run_w2s(cfg)


def test_table_lists_both_metrics():
    row = {"weak_kind": "orm", "student_kind": "simpo", "weak_label_acc": 0.7,
           "weak": {"ranking_acc": 0.6, "pick_acc": 0.5}, "w2s": {"ranking_acc": 0.7, "pick_acc": 0.5},
           "strong": {"ranking_acc": 0.8, "pick_acc": 0.5}, "pgr": {"ranking_acc": 0.5, "pick_acc": None}}
    table = w2s_table([("", row)]).splitlines()
    assert table[2] == "| orm -> simpo | 70.0 | ranking | 60.0 | 70.0 | 80.0 | 0.50 |"
    assert table[3].endswith("| 50.0 | 50.0 | 50.0 | – |")
