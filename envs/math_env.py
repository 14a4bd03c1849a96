"""The `math` family: MATH (MATH-500 as its test split), GSM8K, and any dataset with a problem and an answer column.

All use SCoRe's math prompts and `rewards.math` (answer extraction, then symbolic equivalence with time limits).
The hub datasets are loaded through `datasets`, so network use is the user's; every environment also takes a
local JSON/JSONL/Parquet file through `env.kwargs.path` (per split: `{"train": ..., "test": ...}` or `{split}`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envs.base import MATH_CORRECTION_INSTRUCTION, MATH_SYSTEM_PROMPT, Environment, Problem

_ANSWER_FORM = ('At the end of the Solution, when you give your final answer, write it in the form "Final Answer: The '
                'final answer is $answer$. I hope it is correct."')
from rewards import math as math_reward


def last_boxed(text: str) -> str | None:
    r"""The content of the last `\boxed{...}` (or `\fbox{...}`) in `text`, braces balanced; None if there is none.

    >>> last_boxed(r"so $x = \boxed{\frac{1}{2}}$.")
    '\\frac{1}{2}'
    >>> last_boxed("no box") is None
    True
    """
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    brace = text.find("{", start)
    if brace < 0:
        return None
    depth = 0
    for position in range(brace, len(text)):
        depth += {"{": 1, "}": -1}.get(text[position], 0)
        if depth == 0:
            return text[brace + 1 : position].strip()
    return None


def gsm8k_answer(solution: str) -> str:
    """GSM8K's final answer: what follows '####', without thousands separators.

    >>> gsm8k_answer("She pays 2 * 600 = 1,200 dollars.\\n#### 1,200")
    '1200'
    """
    _, marker, answer = solution.rpartition("####")
    if not marker:
        raise ValueError("a GSM8K answer must end with '#### <number>'")
    return answer.strip().replace(",", "")


# How a reference column becomes the answer string that `rewards.math` compares with.
ANSWER_FORMATS = {
    "raw": lambda value: str(value).strip(),
    "boxed": lambda value: last_boxed(str(value)) or str(value).strip(),
    "gsm8k": lambda value: gsm8k_answer(str(value)),
}


class MathEnv(Environment):
    """Generic math environment (`math_dataset`): any dataset with a problem column and an answer column.

    `answer_format` says how to read the reference column: "raw" (the answer itself), "boxed" (a worked solution
    ending in \\boxed{...}, like MATH) or "gsm8k" (a solution ending in '#### answer'). `strict_format=True` rewards
    only answers given in the instructed form (the "Final Answer: The final answer is ..." line or a \\boxed{}), never
    one found by a fallback such as the last number of the text (see `rewards.math.extract_answer`).
    `feedback="oracle"` tells the model, before its next attempt, whether its final answer was right.
    """

    system_prompt = MATH_SYSTEM_PROMPT
    correction_instruction = MATH_CORRECTION_INSTRUCTION
    oracle_wrong = f"Your final answer above is wrong. Please correct the error and rewrite the solution. {_ANSWER_FORM}"
    oracle_right = f"Your final answer above is right. Please rewrite the solution. {_ANSWER_FORM}"
    answer_format = "raw"
    timeout = 5.0
    strict_format = False

    def __init__(self, answer_format: str | None = None, timeout: float | None = None,
                 strict_format: bool | None = None, **overrides: Any) -> None:
        super().__init__(**overrides)
        if answer_format is not None:
            self.answer_format = answer_format
        if self.answer_format not in ANSWER_FORMATS:
            raise ValueError(f"env.kwargs.answer_format: {self.answer_format!r} is not one of {sorted(ANSWER_FORMATS)}")
        if timeout is not None:
            self.timeout = float(timeout)
        if strict_format is not None:
            if not isinstance(strict_format, bool):
                raise ValueError(f"env.kwargs.strict_format: {strict_format!r} must be true or false")
            self.strict_format = strict_format

    def make_problem(self, row: Mapping[str, Any], index: int, split: str) -> Problem:
        problem = super().make_problem(row, index, split)
        try:
            problem.reference = ANSWER_FORMATS[self.answer_format](problem.reference)
        except ValueError as err:
            where = f"env {self.name!r}, split {split!r}: row {index}, field {self.fields['reference']!r}"
            raise ValueError(f"{where}: {err}") from err
        return problem

    def reward(self, attempt: str, problem: Problem) -> float:
        answer = math_reward.extract_answer(attempt, strict=self.strict_format)
        return float(answer is not None and math_reward.is_equiv(answer, problem.reference, timeout=self.timeout))

    def rewards(self, attempts: list[str], problems: list[Problem]) -> list[float]:
        # One parallel, time-limited batch in `rewards.math` instead of one call per attempt.
        return math_reward.score(attempts, [p.reference for p in problems], timeout=self.timeout,
                                 strict=self.strict_format)

    def reward_details(self, attempt: str, problem: Problem) -> dict[str, Any]:
        answer = math_reward.extract_answer(attempt, strict=self.strict_format)
        return {"extracted_answer": answer, "reference": problem.reference}


class MATHEnv(MathEnv):
    """MATH (Hendrycks et al., 2021): train on its 7,500 training problems, test on MATH-500 (Lightman et al.).

    Splits: "train" (7,500), "test" (MATH-500), "train12k" (the paper's training set, the 12k split of Lightman et
    al.: the 7,500 training problems plus the 4,500 MATH test problems that are not in MATH-500) and "math_test"
    (all 5,000 MATH test problems, MATH-500 included: only an ingredient of train12k). Problems are matched to
    MATH-500 by their text, whitespace ignored.
    """

    path = {"train": "DigitalLearningGmbH/MATH-lighteval", "test": "HuggingFaceH4/MATH-500",
            "math_test": "DigitalLearningGmbH/MATH-lighteval"}
    splits = {"train": "train", "test": "test", "train12k": "train", "math_test": "test"}
    fields = {"problem": "problem", "reference": "solution"}
    answer_format = "boxed"

    def rows(self, split: str):
        if split != "train12k":
            return super().rows(split)
        column = self.fields["problem"]

        def key(row) -> str:
            return " ".join(str(row[column]).split())

        held_out = {key(row) for row in super().rows("test")}
        if not held_out:
            raise ValueError("env math, split 'train12k': MATH-500 (the 'test' split) is empty")
        return [*super().rows("train"), *(row for row in super().rows("math_test") if key(row) not in held_out)]


class MATH500Env(MathEnv):
    """MATH-500 only (evaluation): the 500 test problems of Lightman et al., 2023."""

    path = "HuggingFaceH4/MATH-500"
    splits = {"test": "test"}
    fields = {"problem": "problem", "reference": "answer", "id": "unique_id"}


class GSM8KEnv(MathEnv):
    """GSM8K (Cobbe et al., 2021): grade-school word problems; the answer follows '####' in the solution."""

    path = "openai/gsm8k"
    config = "main"
    fields = {"problem": "question", "reference": "answer"}
    answer_format = "gsm8k"
