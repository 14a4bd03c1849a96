"""The trainer's reward path for code: a Ray reward worker scores HumanEval attempts through rewards.code."""

from envs import make_env
from envs.code_env import fenced
from score.reward_pool import RewardPool


def test_reward_workers_score_code_attempts_in_the_sandbox(ray_cluster):
    humaneval = make_env("humaneval")
    problems = [p for p in humaneval.load("test") if p.id in ("HumanEval/0", "HumanEval/38")]
    right = [fenced(p.meta["prompt"] + p.meta["canonical_solution"]) for p in problems]
    forged = [  # an object equal to anything, and an identity "decoder" with the prompt's helper redefined
        fenced("class A:\n    __eq__ = lambda self, other: True\n\ndef has_close_elements(numbers, threshold):\n"
               "    return A()"),
        fenced("def encode_cyclic(s):\n    return s\n\ndef decode_cyclic(s):\n    return s"),
    ]
    pool = RewardPool("humaneval", {}, num_workers=1)
    try:
        assert pool.score(right + forged, problems + problems) == [1.0, 1.0, 0.0, 0.0]
    finally:
        pool.shutdown()

