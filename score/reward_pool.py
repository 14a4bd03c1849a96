"""Reward workers: Ray actors that score attempts with their own copy of the environment.

Kept apart from `score.actors` so that a reward worker's process imports the environments and the reward functions
only (well under a second), not torch, transformers and the learner (about 9 s on a 2-core machine), which Ray would
import with the module that defines the actor class.
"""

from __future__ import annotations

from typing import Any

import ray

from envs import Problem, make_env
from score.split import split_evenly


class RewardWorker:
    """Scores attempts with its own copy of the environment (time limits live inside the reward functions)."""

    def __init__(self, env_name: str, env_kwargs: dict[str, Any]) -> None:
        self.env = make_env(env_name, **env_kwargs)

    def rewards(self, attempts: list[str], problems: list[Problem]) -> list[float]:
        return [float(r) for r in self.env.rewards(attempts, problems)]

    def feedbacks(self, attempts: list[str], problems: list[Problem]) -> list[str | None]:
        return self.env.feedbacks(attempts, problems)


class RewardPool:
    """Splits a batch of attempts across reward workers."""

    def __init__(self, env_name: str, env_kwargs: dict[str, Any], *, num_workers: int) -> None:
        actor = ray.remote(RewardWorker).options(num_cpus=0.5, max_restarts=1, max_task_retries=1)
        self.workers = [actor.remote(env_name, env_kwargs) for _ in range(num_workers)]

    def score(self, attempts: list[str], problems: list[Problem]) -> list[float]:
        shards = split_evenly(attempts, len(self.workers))
        refs = [w.rewards.remote(attempts[s], problems[s]) for w, s in zip(self.workers, shards)]
        return [r for part in ray.get(refs) for r in part]

    def feedbacks(self, attempts: list[str], problems: list[Problem]) -> list[str | None]:
        """The environment's feedback on each attempt, computed by the workers (it may run the code's tests; a
        worker that later scores the same attempt reuses that verdict, see `CodeEnv.results`)."""
        shards = split_evenly(attempts, len(self.workers))
        refs = [w.feedbacks.remote(attempts[s], problems[s]) for w, s in zip(self.workers, shards)]
        return [f for part in ray.get(refs) for f in part]

    def shutdown(self) -> None:
        for w in self.workers:
            ray.kill(w)
