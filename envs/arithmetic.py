"""Offline arithmetic: problems generated from a seed, answers checked with `rewards.math`.

Needs no download, so the tests and the demo run anywhere. Train and test problems never overlap.
"""

from __future__ import annotations

import random

from envs.base import Environment, Problem
from rewards import math as math_reward

_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
_OP_WORDS = {"+": "plus", "-": "minus", "*": "times"}


class ArithmeticEnv(Environment):
    """`a op b` with operands of `digits` digits, or from 0 to `max_operand` when given (small numbers for small real
    models: SmolLM2-135M-Instruct adds one-digit numbers but rarely two-digit ones). Short prompts by default so that
    tiny models can learn it."""

    system_prompt = None
    correction_instruction = "Check the answer above and write it again, corrected if needed."
    oracle_wrong = "The answer above is wrong. Write it again, corrected."
    oracle_right = "The answer above is right. Write it again."

    def __init__(
        self,
        digits: int = 2,
        ops: str = "+-",
        num_train: int = 5000,
        num_test: int = 500,
        seed: int = 1234,
        system_prompt: str | None = None,
        correction_instruction: str | None = None,
        feedback: str | None = None,
        max_operand: int | None = None,
        prompt_template: str = "{expression}=",
    ) -> None:
        bad = [op for op in ops if op not in _OPS]
        if bad or not ops:
            raise ValueError(f"env.kwargs.ops: {ops!r} must use only {''.join(_OPS)}")
        if digits < 1:
            raise ValueError(f"env.kwargs.digits must be >= 1, got {digits}")
        if max_operand is not None and max_operand < 1:
            raise ValueError(f"env.kwargs.max_operand must be >= 1 (or null for `digits`), got {max_operand}")
        try:
            prompt_template.format(expression="1+2", a=1, b=2, op="+", op_word="plus")
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"env.kwargs.prompt_template: {prompt_template!r} may use only {{expression}}, {{a}}, "
                             f"{{b}}, {{op}} and {{op_word}} ({error!r})") from None
        self.digits, self.ops, self.seed, self.max_operand = digits, ops, seed, max_operand
        self.prompt_template = prompt_template
        self.num_train, self.num_test = num_train, num_test
        if system_prompt is not None:
            self.system_prompt = system_prompt
        if correction_instruction is not None:
            self.correction_instruction = correction_instruction
        if feedback is not None:  # "oracle": say whether the answer was right (see Environment.feedback)
            self.set_feedback_mode(feedback)
        self._splits: dict[str, list[Problem]] | None = None

    def _generate(self) -> dict[str, list[Problem]]:
        rng = random.Random(self.seed)
        if self.max_operand is not None:
            low, high = 0, self.max_operand
        else:
            low, high = 10 ** (self.digits - 1) if self.digits > 1 else 0, 10**self.digits - 1
        seen: set[str] = set()
        problems: list[Problem] = []
        want = self.num_train + self.num_test
        capacity = (high - low + 1) ** 2 * len(self.ops)
        if want > capacity:
            raise ValueError(f"env.kwargs: {want} problems asked but only {capacity} distinct ones exist")
        while len(problems) < want:
            a, b, op = rng.randint(low, high), rng.randint(low, high), rng.choice(self.ops)
            text = f"{a}{op}{b}"
            if text in seen:
                continue
            seen.add(text)
            prompt = self.prompt_template.format(expression=text, a=a, b=b, op=op, op_word=_OP_WORDS[op])
            problems.append(Problem(id=text, prompt=prompt, reference=str(_OPS[op](a, b))))
        return {"test": problems[: self.num_test], "train": problems[self.num_test :]}

    def load(self, split: str) -> list[Problem]:
        if self._splits is None:
            self._splits = self._generate()
        if split not in self._splits:
            raise ValueError(f"arithmetic has splits 'train' and 'test', not {split!r}")
        return self._splits[split]

    def reward(self, attempt: str, problem: Problem) -> float:
        answer = math_reward.extract_answer(attempt)
        return float(answer is not None and math_reward.is_equiv(answer, problem.reference))
