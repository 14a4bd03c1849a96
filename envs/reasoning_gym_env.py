"""Adapter for the procedural tasks of the `reasoning-gym` package: about a hundred tasks, generated offline.

Each task generates its problems from a seed and scores answers with its own scorer; the model gives its answer
between <answer> and </answer> tags. SCoRe's rewards are binary, so by default an attempt earns 1.0 only when the
task's scorer gives full marks (`binary=False` keeps the scorer's partial credit).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envs.base import Environment, Problem

SYSTEM_PROMPT = (
    "Solve the problem step by step. At the end of your response, give only the final answer between <answer> and "
    "</answer> tags, in the format the problem asks for."
)
CORRECTION_INSTRUCTION = (
    "There might be an error in the solution above because of lack of understanding of the question. Please correct "
    "the error, if any, and rewrite the solution. Only output the final solution! At the end of your response, give "
    "only the final answer between <answer> and </answer> tags."
)
# reasoning-gym derives item i from Random(seed + i): test problems start this far from the training seed.
_TEST_SEED_OFFSET = 1_000_003


class ReasoningGymEnv(Environment):
    """One or more reasoning-gym tasks mixed in one environment.

    `tasks` is a task name, a comma-separated string or a list; `task_config` gives a task its generator options
    (`{"chain_sum": {"num_terms": 3}}`). `size` and `test_size` count problems per task. Test problems are
    generated from another seed and any question also present in the test split is dropped from training.
    """

    system_prompt = SYSTEM_PROMPT
    correction_instruction = CORRECTION_INSTRUCTION
    fields = {"problem": "question", "reference": "answer"}

    def __init__(
        self,
        tasks: str | list[str] = "chain_sum",
        size: int = 1000,
        test_size: int = 100,
        seed: int = 1234,
        task_config: Mapping[str, Mapping[str, Any]] | None = None,
        binary: bool = True,
        **overrides: Any,
    ) -> None:
        super().__init__(**overrides)
        from reasoning_gym.factory import DATASETS

        self.tasks = [t.strip() for t in tasks.split(",")] if isinstance(tasks, str) else list(tasks)
        unknown = [t for t in self.tasks if t not in DATASETS]
        if unknown or not self.tasks:
            raise ValueError(
                f"env.kwargs.tasks: unknown reasoning-gym task(s) {unknown}; available: {sorted(DATASETS)}"
            )
        self.task_config = {name: dict(config) for name, config in (task_config or {}).items()}
        stray = sorted(set(self.task_config) - set(self.tasks))
        if stray:
            raise ValueError(f"env.kwargs.task_config names task(s) {stray} that are not in env.kwargs.tasks")
        if size < 1 or test_size < 1:
            raise ValueError(f"env.kwargs.size and test_size must be >= 1, got {size} and {test_size}")
        self.sizes = {"train": int(size), "test": int(test_size)}
        self.seed, self.binary = int(seed), bool(binary)
        self._datasets: dict[tuple[str, str], Any] = {}

    def _dataset(self, split: str, task: str):
        if (split, task) not in self._datasets:
            import reasoning_gym

            seed = self.seed + (_TEST_SEED_OFFSET if split == "test" else 0)
            config = {"size": self.sizes[split], "seed": seed, **self.task_config.get(task, {})}
            self._datasets[split, task] = reasoning_gym.create_dataset(task, **config)
        return self._datasets[split, task]

    def rows(self, split: str) -> list[dict[str, Any]]:
        held_out = {p.prompt for p in self.load("test")} if split == "train" else set()
        rows = []
        for task in self.tasks:
            for index, entry in enumerate(self._dataset(split, task)):
                if entry["question"] not in held_out:
                    rows.append({**entry, "task": task, "id": f"{task}/{split}/{index}"})
        return rows

    def make_problem(self, row: Mapping[str, Any], index: int, split: str) -> Problem:
        entry = {key: row[key] for key in ("question", "answer", "metadata")}
        # The reference is the whole entry: some scorers read its metadata, not only the answer.
        meta = {"task": row["task"], "split": split}
        return Problem(id=row["id"], prompt=row["question"], reference=entry, meta=meta)

    def score(self, attempt: str, problem: Problem) -> float:
        """The task scorer's grade of the attempt's <answer>, in [0, 1]; 0.0 if the scorer fails on odd output."""
        from reasoning_gym.utils import extract_answer

        try:
            answer = extract_answer(attempt or "")
            dataset = self._dataset(problem.meta["split"], problem.meta["task"])
            return float(dataset.score_answer(answer, problem.reference))
        except Exception:  # a scorer choking on model output is a wrong answer, never a crashed training run
            return 0.0

    def reward(self, attempt: str, problem: Problem) -> float:
        score = self.score(attempt, problem)
        return float(score >= 1.0) if self.binary else score

    def reward_details(self, attempt: str, problem: Problem) -> dict[str, Any]:
        from reasoning_gym.utils import extract_answer

        return {
            "task": problem.meta["task"],
            "extracted_answer": extract_answer(attempt or ""),
            "task_score": self.score(attempt, problem),
        }
