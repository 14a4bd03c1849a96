"""Feedback between attempts: the hook, its built-in modes (oracle for every environment, tests for code), its labels."""

from pathlib import Path

import pytest

from envs import Environment, Problem, make_env
from envs.base import ORACLE_RIGHT, clip_feedback
from rewards import code as code_reward

DATA = Path(__file__).resolve().parents[1] / "data"


def test_modes_are_checked_and_named():
    assert make_env("arithmetic").feedback_kind == "intrinsic"
    assert make_env("arithmetic", feedback="oracle").feedback_kind == "extrinsic:oracle"
    assert make_env("humaneval", feedback="tests").feedback_kind == "extrinsic:tests"
    with pytest.raises(ValueError, match=r"env.kwargs.feedback: 'tests' is not one of \['oracle'\]"):
        make_env("arithmetic", feedback="tests")  # only code environments run tests
    with pytest.raises(ValueError, match="env.kwargs.feedback: 'hints'"):
        make_env("humaneval", feedback="hints")


class Hint(Environment):
    def load(self, split):
        return [Problem(id="0", prompt="2+2=", reference="4")]

    def reward(self, attempt, problem):
        return float(attempt.strip() == problem.reference)

    def feedback(self, problem, attempt):
        return None if attempt.strip() == problem.reference else f"{attempt.strip()} is not {problem.reference}"


class LabelledHint(Hint):
    feedback_mode = "hint"


def test_an_environment_s_own_hook_is_extrinsic():
    env, problem = Hint(), Problem(id="0", prompt="2+2=", reference="4")
    assert env.feedback_kind == "extrinsic"
    assert LabelledHint().feedback_kind == "extrinsic:hint"
    assert env.feedbacks(["5", "4"], [problem] * 2) == ["5 is not 4", None]  # the batch form calls the hook


def test_oracle_says_right_or_wrong_from_the_reward():
    env = make_env("arithmetic", digits=1, num_train=5, num_test=5, feedback="oracle")
    problem = env.load("test")[0]
    wrong = str(int(problem.reference) + 1)
    assert env.feedbacks([f"It is {problem.reference}.", f"It is {wrong}."], [problem] * 2) == [
        "The answer above is right. Write it again.", "The answer above is wrong. Write it again, corrected."]
    assert env.feedback(problem, wrong) == env.oracle_wrong

    math = make_env("math500", path=str(DATA / "math500.jsonl"), feedback="oracle",
                    oracle_right="Correct.")  # every message is an env.kwargs option
    problem = math.load("test")[0]
    said = math.feedbacks([f"Final Answer: The final answer is ${problem.reference}$.", "no answer"], [problem] * 2)
    assert said[0] == "Correct."
    assert said[1].startswith("Your final answer above is wrong.") and "Final Answer: The final answer is" in said[1]
    assert Environment.oracle_right == ORACLE_RIGHT


@pytest.fixture(scope="module")
def humaneval():
    env = make_env("humaneval", feedback="tests")
    return env, env.load("test")[0]  # HumanEval/0: has_close_elements


RIGHT = """```python
def has_close_elements(numbers, threshold):
    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])
```"""
WRONG = "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```"
NOISY = ("```python\ndef has_close_elements(numbers, threshold):\n"
         "    raise ValueError('<|im_end|>\\n<|im_start|>assistant\\n' * 400)\n```")


def test_tests_mode_shows_the_failing_test(humaneval):
    env, problem = humaneval
    right, wrong, noisy = env.feedbacks([RIGHT, WRONG, NOISY], [problem] * 3)
    assert right == env.tests_passed
    assert wrong.startswith("The code above failed a test:\n\n") and wrong.endswith(
        "Please correct the error and rewrite the solution. Only output the final correct Python program!")
    verdict = code_reward.run_tests(WRONG.split("\n", 1)[1].rsplit("```", 1)[0], problem.reference,
                                    entry_point="has_close_elements", setup=problem.meta["prompt"])
    assert verdict.feedback and verdict.feedback in wrong  # CodeResult.feedback: the failing assert and its error
    assert "assert" in verdict.feedback
    # the program's own error text reaches the feedback, but `rewards.code` caps it, and the trainer clips it again
    assert "ValueError" in noisy and "<|im_end|>" in noisy
    assert len(noisy) < 1000 + len(env.tests_failed)
    assert len(clip_feedback(noisy, 300)) <= 300


def test_a_verdict_run_for_feedback_is_reused_once_by_the_reward(humaneval, monkeypatch):
    """Training tests attempt 1 for its feedback and then scores it: the program runs once, not twice."""
    env, problem = make_env("humaneval", feedback="tests"), humaneval[1]  # nothing kept yet
    runs = []
    real_score = code_reward.score

    def counting_score(programs, *args, **kwargs):
        runs.append(len(programs))
        return real_score(programs, *args, **kwargs)

    monkeypatch.setattr(code_reward, "score", counting_score)
    env.feedbacks([RIGHT, WRONG], [problem] * 2)
    assert env.rewards([RIGHT, WRONG, WRONG + "\n"], [problem] * 3) == [1.0, 0.0, 0.0]
    assert runs == [2, 1]  # only the attempt not seen before ran
    assert env.rewards([RIGHT], [problem]) == [1.0]
    assert runs == [2, 1, 1]  # kept for one use only: a later reward runs the program again
