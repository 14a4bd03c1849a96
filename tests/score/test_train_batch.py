"""How a step's trajectories become the learner's batch: truncated attempts handled as algo.truncated says."""

import pytest

from envs.base import Problem
from score.config import load_config
from score.engines.base import Completion
from score.rollout import Trajectory
from score.train import make_batch


def _trajectory(group, y1_finished, y2_finished, r1, r2):
    return Trajectory(problem=Problem(id=str(group), prompt="p", reference="1"), group=group, prompt_ids=[1, 2],
                      y1=Completion([3, 4], [-0.1, -0.2], y1_finished), between_ids=[5],
                      y2=Completion([6, 7, 8], [-0.1] * 3, y2_finished), r1=r1, r2=r2)


@pytest.fixture
def trajectories():
    # y1 of sample 0 and y2 of sample 1 hit the length limit, yet their partial text scored 1
    return [_trajectory(0, False, True, 1.0, 1.0), _trajectory(0, True, False, 1.0, 1.0),
            _trajectory(0, True, True, 0.0, 1.0)]


def _cfg(tiny_model_path, mode, stage=2):
    return load_config(None, [f"model.path={tiny_model_path}", f"stage={stage}", f"algo.truncated={mode}",
                              "algo.baseline=none", "algo.alpha=10"])


def test_truncated_attempts_earn_zero(trajectories, tiny_model_path):
    batch, rewards = make_batch(trajectories, _cfg(tiny_model_path, "zero"))
    # Stage II by hand: turn 1 reward r1; turn 2 reward r2 + 10 (r2 - r1), with the cut-off attempts' r set to 0
    assert rewards.tolist() == [[0.0, 11.0], [1.0, -10.0], [0.0, 11.0]]
    assert batch.turn_ids == [t.turn_ids for t in trajectories]  # every token still trained


def test_truncated_attempts_masked_out_of_the_loss(trajectories, tiny_model_path):
    batch, rewards = make_batch(trajectories, _cfg(tiny_model_path, "mask"))
    assert rewards.tolist() == [[1.0, 1.0], [1.0, 1.0], [0.0, 11.0]]  # rewards as scored
    assert batch.turn_ids[0] == [0, 0, 0, 0, 0, 2, 2, 2]  # y1 cut: its tokens out
    assert batch.turn_ids[1] == [0, 0, 1, 1, 0, 0, 0, 0]  # y2 cut: its tokens out
    assert batch.turn_ids[2] == [0, 0, 1, 1, 0, 2, 2, 2]


def test_truncated_attempts_scored_as_they_are(trajectories, tiny_model_path):
    batch, rewards = make_batch(trajectories, _cfg(tiny_model_path, "score"))
    assert rewards.tolist() == [[1.0, 1.0], [1.0, 1.0], [0.0, 11.0]]  # rewards as scored, cut or not
    assert batch.turn_ids == [t.turn_ids for t in trajectories]


def test_unknown_mode_is_refused(tiny_model_path):
    with pytest.raises(ValueError, match="algo.truncated"):
        load_config(None, [f"model.path={tiny_model_path}", "algo.truncated=drop"])


def test_training_rewards_only_the_instructed_answer_form():
    from envs import make_env
    from score.train import training_env_kwargs

    assert training_env_kwargs("math", {}) == {"strict_format": True}
    assert training_env_kwargs("math", {"strict_format": False}) == {"strict_format": False}  # an explicit choice
    assert training_env_kwargs("arithmetic", {"digits": 1}) == {"digits": 1}  # no such switch there
    problem = Problem(id="0", prompt="What is 6 * 7?", reference="42")
    formless = "6 * 7 is 42 and then the text is cut off mid"
    instructed = "6 * 7 = 42.\nFinal Answer: The final answer is $42$. I hope it is correct."
    train_env = make_env("math", **training_env_kwargs("math", {}))
    assert train_env.rewards([formless, instructed], [problem, problem]) == [0.0, 1.0]
    assert make_env("math").rewards([formless, instructed], [problem, problem]) == [1.0, 1.0]  # the lenient reading
