"""Votes, SCPO pairs, IWSI's filters and DS weights on hand-made samples; problems whose labels are hidden."""

import pickle
from types import SimpleNamespace

import pytest

from envs import Problem, make_env
from envs.base import HIDDEN, LabelLeakError
from score.engines.base import Completion
from score.selftrain.common import GoldLabels, Sample, label_diagnostics
from score.selftrain.config import IwsiConfig, ScpoConfig
from score.selftrain.iwsi import Iwsi, validation_sequences
from score.selftrain.scpo import Scpo


def _groups(*key_lists):
    """One group per problem: sample j of problem i has the answer key key_lists[i][j] and token ids [i, j]."""
    groups = []
    for i, keys in enumerate(key_lists):
        problem = Problem(id=f"p{i}", prompt=f"q{i}", reference=HIDDEN)
        groups.append([Sample(problem, j, [100 + i], Completion([i, j], [-0.5, -0.5], True), f"text {key}", key)
                       for j, key in enumerate(keys)])
    return groups


A, B, C = ["5", "5", "5", "7"], ["1", "2", "2", None], [None, None, None, None]


def test_scpo_pairs_weights_and_threshold():
    batch, chosen, stats = Scpo(ScpoConfig(vote_threshold=0.5)).round_data(_groups(A, B, C), None)
    # A: V = 3, 3, 3, 1 -> chosen sample 0, rejected sample 3, w = (3 - 1) / 4. B: V = 1, 2, 2, 0 -> chosen 1,
    # rejected 3 (no answer: 0 votes), w = 2 / 4. C: no answer anywhere, no pair.
    assert [(s.problem.id, s.index) for s in chosen] == [("p0", 0), ("p1", 1)]
    assert batch.group_size == 2 and len(batch) == 2
    assert batch.input_ids == [[100, 0, 0], [100, 0, 3], [101, 1, 1], [101, 1, 3]]
    assert batch.loss_mask == [[0, 1, 1]] * 4
    assert batch.values["weight"] == [0.5, 0.5, 0.5, 0.5]
    assert batch.values["sample_logprob"] == [-1.0] * 4
    assert stats == {"pairs": 2.0, "kept": 2.0, "kept_frac": 2 / 3, "margin_weight_mean": 0.5}
    # tau = 0.6: B's top answer has 2 of 4 votes, under the threshold
    _, chosen, stats = Scpo(ScpoConfig(vote_threshold=0.6)).round_data(_groups(A, B, C), None)
    assert [s.problem.id for s in chosen] == ["p0"] and stats["kept"] == 1.0


def _iwsi(filter_name: str):
    # mean NLL of the majority samples A0 A1 A2 B1 B2, then of the two validation sequences (L_v = 1.0)
    losses = [1.0, 2.0, 0.5, 1.0, 4.0, 0.8, 1.2]
    asked = []

    def mean_nll(sequences):
        asked.append(sequences)
        return losses[: len(sequences)]

    valid = [([7, 8], [0, 1]), ([7, 9], [0, 1])]
    batch, kept, stats = Iwsi(IwsiConfig(filter=filter_name, keep_percentile=0.8, entropy_max=0.5), valid).round_data(
        _groups(A, B, C), SimpleNamespace(mean_nll=mean_nll))
    assert asked[0][-2:] == valid
    return batch, [(s.problem.id, s.index) for s in kept], stats


def test_iwsi_ds_filter_hand_computed():
    # DS = max(r, 1/r), r = L_v / L: A0 1, A1 2, A2 2, B1 1, B2 4. The 80th percentile of [1, 1, 2, 2, 4] is
    # 2 + 0.2 * (4 - 2) = 2.4, so B2 goes.
    batch, kept, stats = _iwsi("ds")
    assert kept == [("p0", 0), ("p0", 1), ("p0", 2), ("p1", 1)]
    assert batch.values["weight"] == [1.0] * 4 and batch.group_size == 1
    assert stats["valid_nll"] == 1.0 and stats["ds_weight_p50"] == 2.0
    assert stats["ds_weight_p90"] == pytest.approx(2 + 0.6 * 2)
    assert stats["kept"] == 2.0 and stats["samples_kept"] == 4.0


def test_iwsi_baseline_filters():
    assert _iwsi("majority")[1] == [("p0", 0), ("p0", 1), ("p0", 2), ("p1", 1), ("p1", 2)]
    assert len(_iwsi("none")[1]) == 12
    # normalised entropy: A (3:1 of 4 answered) 0.406 <= 0.5 kept; B (1:2 of 3) 0.579 dropped; C no answers
    assert _iwsi("entropy")[1] == [("p0", 0), ("p0", 1), ("p0", 2)]


def test_label_diagnostics_are_computed_from_the_gold_labels_only():
    groups = _groups(A, B)
    gold_problems = [Problem("p0", "q0", "5"), Problem("p1", "q1", "1")]
    calls = []

    def score(texts, problems):
        calls.append([p.id for p in problems])
        return [float(t == f"text {p.reference}") for t, p in zip(texts, problems)]

    out = label_diagnostics(groups, [groups[0][0], groups[1][1]], GoldLabels(gold_problems, score))
    # right samples: A0 A1 A2 and B0 -> 4 of 8; majority answers: A right (5), B wrong (2); chosen: A0 right, B1 wrong
    assert out == {"sample_acc": 0.5, "majority_acc": 0.5, "pseudo_label_acc": 0.5}
    assert calls == [["p0"] * 4 + ["p1"] * 4]
    assert label_diagnostics(groups, [], None) == {}


def test_unlabelled_problems_hide_the_reference():
    env = make_env("math_dataset", path={"train": "tests/data/qa.json", "test": "tests/data/qa.json"},
                   fields={"problem": "q", "reference": "a"})
    labelled, hidden = env.load("train"), env.load_unlabelled("train")
    assert [(p.id, p.prompt) for p in hidden] == [(p.id, p.prompt) for p in labelled]
    assert all(p.reference is HIDDEN and "a" not in p.meta for p in hidden)
    assert all("a" in p.meta for p in labelled)
    for use in (str, hash, bool, float, lambda r: r == "4", lambda r: f"{r}", lambda r: r.strip(), lambda r: r[0]):
        with pytest.raises(LabelLeakError):
            use(hidden[0].reference)
    assert "hidden" in repr(hidden[0])  # printing a problem in an error message stays possible
    assert pickle.loads(pickle.dumps(hidden[0])).reference is HIDDEN  # crosses Ray's object store intact


def test_validation_sequences_write_the_gold_answer_as_the_model_would(tiny_model_path):
    from transformers import AutoTokenizer

    from score.rollout import ChatRenderer

    env = make_env("arithmetic", digits=1, num_train=10, num_test=2)
    renderer = ChatRenderer(AutoTokenizer.from_pretrained(tiny_model_path))
    problem = env.load("train")[0]
    (ids, mask), = validation_sequences([problem], env, renderer, "answer {reference}")
    prompt = renderer.first_turn(env.first_turn_messages(problem))
    assert ids[: len(prompt)] == prompt and mask == [0] * len(prompt) + [1] * (len(ids) - len(prompt))
    assert renderer.tokenizer.decode(ids[len(prompt):]) == f"answer {problem.reference}<|im_end|>"
    with pytest.raises(ValueError, match="solution"):
        validation_sequences([problem], env, renderer, "{solution}")
