"""`word_problems`: offline GSM8K-like stories whose answers are computed, split without overlap, read by rewards.math."""

import re

import pytest

from envs import make_env
from envs.word_problems import TEMPLATES, WordProblemsEnv


def _numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", text)]


def test_splits_are_disjoint_deterministic_and_sized():
    env = make_env("word_problems", num_train=300, num_test=100, seed=7)
    train, test = env.load("train"), env.load("test")
    assert (len(train), len(test)) == (300, 100)
    assert not {p.prompt for p in train} & {p.prompt for p in test}
    again = make_env("word_problems", num_train=300, num_test=100, seed=7)
    assert [p.prompt for p in again.load("test")] == [p.prompt for p in test]
    other = make_env("word_problems", num_train=300, num_test=100, seed=8)
    assert [p.prompt for p in other.load("test")] != [p.prompt for p in test]


def test_more_training_problems_leave_the_held_out_split_unchanged():
    small = make_env("word_problems", num_train=50, num_test=40).load("test")
    large = make_env("word_problems", num_train=500, num_test=40).load("test")
    assert [p.prompt for p in small] == [p.prompt for p in large]


def test_hand_checked_answers_of_each_template():
    # One story per template, answers computed by hand from the story's own numbers.
    env = WordProblemsEnv(num_train=0, num_test=600, seed=3)
    seen = {}
    for p in env.load("test"):
        seen.setdefault(p.meta["template"], p)
    assert set(seen) == set(TEMPLATES)
    a = {name: _numbers(p.meta["problem"]) for name, p in seen.items()}
    expected = {
        "buy_give": a["buy_give"][0] + a["buy_give"][1] - a["buy_give"][2],
        "boxes": a["boxes"][0] * a["boxes"][1],
        "pages": a["pages"][0] * a["pages"][1] + a["pages"][2],
        "spend": a["spend"][0] - a["spend"][1] - a["spend"][2],
        "times_as_many": a["times_as_many"][0] * (1 + a["times_as_many"][1]),
        "absent": a["absent"][0] * a["absent"][1] - a["absent"][2],
        "packs": a["packs"][0] * a["packs"][1] - a["packs"][2],
        "more_than": 2 * a["more_than"][0] + a["more_than"][1],
        "share": a["share"][0] // a["share"][1],
        "speed": a["speed"][0] * a["speed"][1],
        "slices": a["slices"][0] * a["slices"][1] - a["slices"][2],
        "fewer": a["fewer"][0] - a["fewer"][1],
    }
    for name, answer in expected.items():
        assert seen[name].reference == str(answer), (name, seen[name].meta["problem"])
    assert all(int(p.reference) >= 0 for p in env.load("test"))


def test_rewards_read_the_instructed_form_and_strict_format_ignores_others():
    env = make_env("word_problems", num_train=10, num_test=10)
    problem = env.load("test")[0]
    answer = problem.reference
    right = f"Step one, step two. The final answer is {answer}."
    loose = f"So there are {answer} left."
    wrong = f"The final answer is {int(answer) + 1}."
    assert env.rewards([right, loose, wrong, ""], [problem] * 4) == [1.0, 1.0, 0.0, 0.0]
    strict = make_env("word_problems", num_train=10, num_test=10, strict_format=True)
    assert strict.rewards([right, loose, wrong], [problem] * 3) == [1.0, 0.0, 0.0]


def test_prompt_carries_the_instruction_and_the_correction_never_says_right_or_wrong():
    env = make_env("word_problems", num_train=10, num_test=10)
    problem = env.load("train")[0]
    messages = env.messages(problem, ["The final answer is 3."])
    assert messages[0]["content"].startswith(problem.meta["problem"])
    assert "The final answer is N." in messages[0]["content"]
    assert messages[-1]["content"] == env.correction_instruction
    assert not re.search(r"\b(wrong|incorrect|correct answer)\b", env.correction_instruction, re.IGNORECASE)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"templates": "boxes,nope"}, "env.kwargs.templates"),
    ({"max_value": 5}, "env.kwargs.max_value"),
    ({"num_test": 0}, "env.kwargs.num_train must be >= 0 and num_test"),
])
def test_bad_options_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=re.escape(field)):
        make_env("word_problems", **kwargs)


def test_asking_for_more_problems_than_exist_fails_clearly():
    with pytest.raises(ValueError, match="distinct problems"):
        make_env("word_problems", templates="speed", max_value=10, num_train=5000, num_test=10).load("test")
