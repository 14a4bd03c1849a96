"""Offline GSM8K-like word problems: short stories with one to three arithmetic steps, generated from a seed.

GSM8K itself needs a download; these problems need nothing, so a real small model (SmolLM2-135M-Instruct) can be
trained and evaluated on them anywhere. Each template draws its numbers from a seeded generator and computes the
answer, which is always a whole number >= 0. Train and test problems never share a text.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from envs.math_env import MathEnv

NAMES = ("Tom", "Sara", "Ali", "Maria", "Ben", "Lena", "Omar", "Julia", "Ken", "Rosa", "Ivan", "Mia")
THINGS = ("apples", "pencils", "stickers", "marbles", "cookies", "books", "cards", "stamps", "shells", "coins")

SYSTEM_PROMPT = None
PROMPT_TEMPLATE = "{problem}\nSolve it step by step, then end with: The final answer is N."
"""The turn-1 user message; N stands for the number. Chosen on the train split (see benchmarks/real_model_survey.py)."""
CORRECTION_INSTRUCTION = (
    "There might be an error in the solution above because of lack of understanding of the question. Please correct "
    "the error, if any, and rewrite the solution. End with: The final answer is N."
)

Template = Callable[[random.Random, int], tuple[str, int]]


def _two(rng: random.Random) -> tuple[str, str]:
    first, second = rng.sample(NAMES, 2)
    return first, second


def _buy_give(rng: random.Random, top: int) -> tuple[str, int]:
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    a, b = rng.randint(2, top), rng.randint(2, top)
    c = rng.randint(1, a + b - 1)
    return (f"{name} has {a} {thing}. {name} gets {b} more and then gives {c} to a friend. "
            f"How many {thing} does {name} have now?", a + b - c)


def _boxes(rng: random.Random, top: int) -> tuple[str, int]:
    thing = rng.choice(THINGS)
    a, b = rng.randint(2, max(2, top // 2)), rng.randint(2, 9)
    return f"A box holds {a} {thing}. How many {thing} are in {b} boxes?", a * b


def _pages(rng: random.Random, top: int) -> tuple[str, int]:
    name = rng.choice(NAMES)
    a, b, c = rng.randint(2, max(2, top // 2)), rng.randint(2, 7), rng.randint(1, top)
    return (f"{name} reads {a} pages a day for {b} days, and then {c} more pages. "
            f"How many pages did {name} read in total?", a * b + c)


def _spend(rng: random.Random, top: int) -> tuple[str, int]:
    name = rng.choice(NAMES)
    b, c = rng.randint(1, top), rng.randint(1, top)
    a = b + c + rng.randint(0, top)
    return (f"{name} had {a} dollars. {name} spent {b} dollars on a book and {c} dollars on lunch. "
            f"How many dollars does {name} have left?", a - b - c)


def _times_as_many(rng: random.Random, top: int) -> tuple[str, int]:
    a, b = rng.randint(2, max(2, top // 2)), rng.randint(2, 5)
    return (f"A farmer has {a} cows and {b} times as many chickens. "
            f"How many cows and chickens does the farmer have in total?", a + a * b)


def _absent(rng: random.Random, top: int) -> tuple[str, int]:
    a, b = rng.randint(10, max(10, top)), rng.randint(2, 6)
    c = rng.randint(1, a * b - 1)
    return (f"There are {a} students in each of {b} classes. {c} students are absent today. "
            f"How many students are present?", a * b - c)


def _packs(rng: random.Random, top: int) -> tuple[str, int]:
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    a, b = rng.randint(2, 9), rng.randint(2, max(2, top // 2))
    c = rng.randint(1, a * b - 1)
    return (f"{name} buys {a} packs of {b} {thing} and gives away {c} {thing}. "
            f"How many {thing} does {name} have left?", a * b - c)


def _more_than(rng: random.Random, top: int) -> tuple[str, int]:
    first, second = _two(rng)
    thing = rng.choice(THINGS)
    a, b = rng.randint(2, top), rng.randint(1, top)
    return (f"{first} has {a} {thing}. {second} has {b} more {thing} than {first}. "
            f"How many {thing} do they have together?", 2 * a + b)


def _share(rng: random.Random, top: int) -> tuple[str, int]:
    thing = rng.choice(THINGS)
    each, kids = rng.randint(2, max(2, top // 2)), rng.randint(2, 9)
    return (f"{each * kids} {thing} are shared equally among {kids} children. "
            f"How many {thing} does each child get?", each)


def _speed(rng: random.Random, top: int) -> tuple[str, int]:
    a, b = rng.randint(10, max(10, top)), rng.randint(2, 6)
    return f"A train travels {a} km every hour. How many km does it travel in {b} hours?", a * b


def _slices(rng: random.Random, top: int) -> tuple[str, int]:
    a, b = rng.randint(2, 9), rng.randint(4, 12)
    c = rng.randint(1, a * b - 1)
    return (f"A baker makes {a} cakes and cuts each cake into {b} slices. {c} slices are sold. "
            f"How many slices are left?", a * b - c)


def _fewer(rng: random.Random, top: int) -> tuple[str, int]:
    first, second = _two(rng)
    thing = rng.choice(THINGS)
    b = rng.randint(1, top)
    a = b + rng.randint(1, top)
    return (f"{first} has {a} {thing}. {second} has {b} fewer {thing} than {first}. "
            f"How many {thing} does {second} have?", a - b)


TEMPLATES: dict[str, Template] = {
    "buy_give": _buy_give, "boxes": _boxes, "pages": _pages, "spend": _spend, "times_as_many": _times_as_many,
    "absent": _absent, "packs": _packs, "more_than": _more_than, "share": _share, "speed": _speed,
    "slices": _slices, "fewer": _fewer,
}


class WordProblemsEnv(MathEnv):
    """`word_problems`: GSM8K-like stories with small whole numbers; rewards as in the math environments.

    `max_value` bounds the numbers in a story (larger is harder); `templates` picks a subset of `TEMPLATES`.
    The prompt asks for the solution to end with "The final answer is N.", a form `rewards.math` reads even with
    `strict_format=True`.
    """

    system_prompt = SYSTEM_PROMPT
    prompt_template = PROMPT_TEMPLATE
    correction_instruction = CORRECTION_INSTRUCTION
    splits = {"train": "train", "test": "test"}
    fields = {"problem": "problem", "reference": "answer", "id": "id"}

    def __init__(self, num_train: int = 5000, num_test: int = 1000, seed: int = 1234, max_value: int = 50,
                 templates: str | list[str] | None = None, **overrides: Any) -> None:
        super().__init__(**overrides)
        names = [t.strip() for t in templates.split(",")] if isinstance(templates, str) else list(templates or TEMPLATES)
        unknown = [t for t in names if t not in TEMPLATES]
        if unknown or not names:
            raise ValueError(f"env.kwargs.templates: unknown template(s) {unknown}; available: {sorted(TEMPLATES)}")
        if max_value < 10:
            raise ValueError(f"env.kwargs.max_value must be >= 10, got {max_value}")
        if num_train < 0 or num_test < 1:
            raise ValueError(f"env.kwargs.num_train must be >= 0 and num_test >= 1, got {num_train} and {num_test}")
        self.num_train, self.num_test, self.seed, self.max_value = num_train, num_test, seed, max_value
        self.templates = names
        self._generated: dict[str, list[dict[str, Any]]] | None = None

    def _generate(self) -> dict[str, list[dict[str, Any]]]:
        rng = random.Random(self.seed)
        seen: set[str] = set()
        rows: list[dict[str, Any]] = []
        want, tries = self.num_test + self.num_train, 0
        while len(rows) < want:
            tries += 1
            if tries > 50 * want:
                raise ValueError(f"env.kwargs: only {len(rows)} distinct problems found for {want} asked; raise "
                                 "max_value or lower num_train/num_test")
            template = rng.choice(self.templates)
            text, answer = TEMPLATES[template](rng, self.max_value)
            if text in seen:
                continue
            seen.add(text)
            rows.append({"problem": text, "answer": str(answer), "template": template})
        # The test split comes first, so that growing num_train never changes the held-out problems.
        split = {"test": rows[: self.num_test], "train": rows[self.num_test :]}
        return {name: [{**row, "id": f"{name}-{i}"} for i, row in enumerate(part)] for name, part in split.items()}

    def rows(self, split: str) -> list[dict[str, Any]]:
        if self._generated is None:
            self._generated = self._generate()
        return self._generated[split]

