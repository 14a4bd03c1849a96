"""`env.kwargs.reward_file`: existing OpenRLHF and verl reward files, unchanged, as the reward of a score environment.

The two files below are written the way those frameworks document their reward functions (OpenRLHF:
`reward_func(queries, prompts, labels, **kwargs)` returning {"rewards": tensor, "scores": tensor, "extra_logs": ...};
verl: `compute_score(data_source, solution_str, ground_truth, extra_info=None)` returning a number or
{"score": ...}), in our own words.
"""

from __future__ import annotations

import pytest

from envs import make_env

OPENRLHF_REWARD = '''
import torch


def reward_func(queries, prompts, labels, **kwargs):
    rewards = []
    for query, prompt, label in zip(queries, prompts, labels):
        response = query[len(prompt):] if query.startswith(prompt) else query
        rewards.append(1.0 if response.strip().split()[-1:] == [label] else 0.0)
    rewards = torch.tensor(rewards)
    return {"rewards": rewards, "scores": rewards, "extra_logs": {"mean": rewards.mean()}}
'''

VERL_REWARD = '''
import time


def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    if "divide" in solution_str:
        return 1 / 0
    if "sleep" in solution_str:
        time.sleep(60)
    if "text" in solution_str:
        return "not a number"
    assert data_source == "arithmetic" and extra_info["index"]
    return {"score": float(solution_str.strip() == ground_truth), "exact": True}
'''

KWARGS = {"digits": 1, "num_train": 10, "num_test": 4}


def _env(tmp_path, source: str, name: str = "my_reward.py", spec: str | None = None, **kwargs):
    (tmp_path / name).write_text(source)
    return make_env("arithmetic", **KWARGS, reward_file=str(tmp_path / (spec or name)), **kwargs)


def test_openrlhf_reward_func_scores_attempts(tmp_path):
    env = _env(tmp_path, OPENRLHF_REWARD)
    problems = env.load("test")[:2]
    answers = [p.reference for p in problems]
    assert env.rewards([f"It is {answers[0]}", "It is 99"], problems) == [1.0, 0.0]
    assert env.reward(answers[1], problems[1]) == 1.0


def test_verl_compute_score_and_failures_score_zero(tmp_path, caplog):
    env = _env(tmp_path, VERL_REWARD, reward_timeout=2)
    problem = env.load("test")[0]
    attempts = [problem.reference, "99", "divide", "sleep", "text", problem.reference]
    assert env.rewards(attempts, [problem] * len(attempts)) == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    reported = " ".join(r.getMessage() for r in caplog.records)
    assert "ZeroDivisionError" in reported and "timeout" in reported and "ValueError" in reported


def test_named_function_and_clear_errors(tmp_path):
    source = "def judge(data_source, solution_str, ground_truth, extra_info=None):\n    return 0.5\n"
    env = _env(tmp_path, source, name="judge.py", spec="judge.py:judge")
    assert env.rewards(["x"], env.load("test")[:1]) == [0.5]

    with pytest.raises(ValueError, match="env.kwargs.reward_file: no such file"):
        make_env("arithmetic", **KWARGS, reward_file=str(tmp_path / "missing.py"))
    with pytest.raises(ValueError, match="defines no function reward_func or compute_score"):
        _env(tmp_path, "def other(): pass\n", name="other.py")
    with pytest.raises(ValueError, match="takes neither"):
        _env(tmp_path, "def reward_func(text):\n    return 1.0\n", name="one_arg.py")
    with pytest.raises(ValueError, match="importing .* failed: NameError"):
        _env(tmp_path, "undefined_name\n", name="broken.py")
    with pytest.raises(ValueError, match="reward_timeout applies to env.kwargs.reward_file"):
        make_env("arithmetic", **KWARGS, reward_timeout=3)
