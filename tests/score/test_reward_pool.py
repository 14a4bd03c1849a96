"""Reward workers: light processes that score attempts in order, split over the workers."""

import sys

import ray

from envs import Problem
from score.reward_pool import RewardPool


def test_two_workers_score_in_order_without_importing_torch(ray_cluster):
    """Each worker scores its half; the answers come back in the attempts' order. The worker's process imports the
    environments and rewards only: with torch it would take ~9 s longer to start in every run."""
    problems = [Problem(id=f"p{i}", prompt=f"{i}+1=", reference=str(i + 1)) for i in range(5)]
    attempts = ["1", "0", "3", "4", "nope"]  # right, wrong, right, right, no number
    pool = RewardPool("arithmetic", {"digits": 1}, num_workers=2)
    try:
        assert pool.score(attempts, problems) == [1.0, 0.0, 1.0, 1.0, 0.0]
        heavy = ("torch", "transformers", "vllm")
        loaded = ray.get([w.__ray_call__.remote(lambda self: [m for m in heavy if m in sys.modules])
                          for w in pool.workers])
        assert loaded == [[], []]
    finally:
        pool.shutdown()
