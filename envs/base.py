"""The environment interface: where problems come from, how they are prompted, and how an attempt is rewarded.

An environment is a small class. The trainer and `score eval` only ever call the members defined here, so the
SCoRe loop (and loops with more than two attempts) needs nothing environment-specific.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

MATH_SYSTEM_PROMPT = (
    "You are a math expert. When you respond, respond only with the Solution of the final Problem, thinking step by "
    'step. At the end of the Solution, when you give your final answer, write it in the form "Final Answer: The final '
    'answer is $answer$. I hope it is correct."'
)
MATH_CORRECTION_INSTRUCTION = (
    "There might be an error in the solution above because of lack of understanding of the question. Please correct "
    "the error, if any, and rewrite the solution. Only output the final solution! At the end of the Solution, when you "
    'give your final answer, write it in the form "Final Answer: The final answer is $answer$. I hope it is correct."'
)
CODE_CORRECTION_INSTRUCTION = (
    "There might be an error in the code above because of lack of understanding of the question. Please correct the "
    "error, if any, and rewrite the solution. Only output the final correct Python program!"
)
ORACLE_WRONG = "The answer above is wrong. Please correct the error and rewrite the solution."
ORACLE_RIGHT = "The answer above is right. Please rewrite the solution."
FEEDBACK_MAX_CHARS = 2000
"""Feedback longer than this is cut (it may quote program output, which the model controls)."""


def clip_feedback(text: str, limit: int = FEEDBACK_MAX_CHARS) -> str:
    r"""Feedback made safe to show: control characters (other than newline and tab) removed, cut to at most `limit`
    characters, saying how many were cut.

    >>> clip_feedback("line 1\x1b[31m red\x00\n", 100)
    'line 1[31m red\n'
    >>> clip_feedback("x" * 50, 30)
    'xxxxxxx... [43 characters cut]'
    """
    if not isinstance(text, str):
        raise TypeError(f"feedback must be a str or None, got {type(text).__name__}")
    text = "".join(ch for ch in text if ch in "\n\t" or ch.isprintable())
    if len(text) <= limit:
        return text
    marker = "... [{} characters cut]"
    keep = max(0, limit - len(marker.format(len(text))))  # the marker, with at most len(text)'s digits, fits
    return text[:keep] + marker.format(len(text) - keep)


@dataclass
class Problem:
    """One task. `reference` is whatever the environment's reward needs: an answer string, a test suite, ..."""

    id: str
    prompt: str
    reference: Any
    meta: dict[str, Any] = field(default_factory=dict)


class LabelLeakError(RuntimeError):
    """Code that must not see gold labels (a self-training loop) used one."""


class _HiddenReference:
    """Stands in for `Problem.reference` in views without labels: any use of it raises `LabelLeakError`.

    >>> HIDDEN == "42"
    Traceback (most recent call last):
      ...
    envs.base.LabelLeakError: the gold reference of this problem is hidden: code that trains without labels used it
    """

    def __repr__(self) -> str:  # harmless, so that a problem can still be printed in an error message
        return "<hidden reference>"

    def __reduce__(self) -> str:
        return "HIDDEN"  # pickles as the module's singleton

    def _leak(self, *_: Any, **__: Any) -> Any:
        raise LabelLeakError("the gold reference of this problem is hidden: code that trains without labels used it")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # introspection (copy, inspect, doctest) probes dunders: not a use of the label
            raise AttributeError(name)
        self._leak()

    __str__ = __format__ = __eq__ = __ne__ = __hash__ = __bool__ = __len__ = __iter__ = __contains__ = _leak
    __getitem__ = __lt__ = __le__ = __gt__ = __ge__ = __int__ = __float__ = _leak


HIDDEN = _HiddenReference()
"""The reference of every problem in `Environment.load_unlabelled`."""


class Environment:
    """Base class of every environment. Subclasses implement `reward`, and either say where their rows come from
    (`path`, `fields`) or override `rows` (a generator) or `load`; the rest has SCoRe's defaults.

    Class attributes are defaults; keyword arguments of the same name (a config's `env.kwargs`) override them, so
    one class serves a hub dataset, a local file and a different column layout without new code.

    Messages use the Hugging Face chat format (`[{"role": "user", "content": ...}]`) so that every model renders
    them with its own chat template.
    """

    #: Name used in configs and on the command line (`make_env` sets it to the name it was called with).
    name: str = "base"
    #: System prompt of the first turn, or None for no system message.
    system_prompt: str | None = None
    #: The self-correction instruction p, sent as the user message before every attempt after the first. It never
    #: says whether the previous attempt was right.
    correction_instruction: str = MATH_CORRECTION_INSTRUCTION
    #: Feedback between attempts, from `env.kwargs.feedback`: None is SCoRe's intrinsic setting (the fixed
    #: `correction_instruction` before every attempt after the first); a mode in `feedback_modes` replaces it with what
    #: `feedbacks` says about the attempt. "oracle" (every environment) says whether the attempt was right, from the
    #: environment's own reward; the code environments add "tests" (the first failing test's message).
    feedback_mode: str | None = None
    feedback_modes: tuple[str, ...] = ("oracle",)
    #: The "oracle" mode's messages after a wrong and after a right attempt.
    oracle_wrong: str = ORACLE_WRONG
    oracle_right: str = ORACLE_RIGHT
    #: Feedback is cut to this many characters before it is shown (`clip_feedback`).
    feedback_max_chars: int = FEEDBACK_MAX_CHARS
    #: Few-shot examples as (problem, solution) pairs, rendered as earlier user/assistant turns.
    few_shot: tuple[tuple[str, str], ...] = ()
    #: The turn-1 user message; `{problem}` and any column of the row may appear in it.
    prompt_template: str = "{problem}"

    #: Where rows come from: a Hugging Face hub dataset name, a local .json/.jsonl/.parquet file, a path with
    #: `{split}` in it, or a mapping split -> name/file. None means the subclass overrides `rows` or `load`.
    path: str | Mapping[str, str] | None = None
    #: The hub dataset's configuration (`datasets.load_dataset(path, config)`), e.g. "main" for GSM8K.
    config: str | None = None
    #: Our split names ("train", "test") -> the dataset's split names.
    splits: Mapping[str, str] = MappingProxyType({"train": "train", "test": "test"})
    #: What a problem needs -> the column that holds it: "problem" and "reference" are required, "id" is optional.
    fields: Mapping[str, str] = MappingProxyType({"problem": "problem", "reference": "answer"})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:  # error messages name the class until the registry sets the config name
            cls.name = cls.__name__

    def __init__(self, **overrides: Any) -> None:
        known = ("system_prompt", "correction_instruction", "few_shot", "prompt_template", "path", "config", "splits",
                 "fields", "feedback", "oracle_wrong", "oracle_right", "feedback_max_chars")
        for key, value in overrides.items():
            if key not in known:
                raise TypeError(f"env.kwargs.{key}: unknown option for {type(self).__name__}; known: {known}")
            if value is None:
                continue
            if key == "feedback":  # the attribute is feedback_mode: `feedback` is the hook below
                self.set_feedback_mode(value)
                continue
            if key == "few_shot":
                value = tuple((str(shot[0]), str(shot[1])) for shot in value)
            if key == "fields":
                value = {**self.fields, **value}  # override some columns, keep the rest
            setattr(self, key, value)

    # ----- problems -------------------------------------------------------------------------------------------

    def rows(self, split: str) -> Iterable[Mapping[str, Any]]:
        """The raw rows of a split. Override this to generate problems instead of reading a dataset."""
        if self.path is None:
            raise NotImplementedError(
                f"{type(self).__name__}: set `path` (a hub dataset or a local file) or override `rows` or `load`"
            )
        from envs.datasets import load_rows

        return load_rows(self.path, split=split, hub_split=self.splits[split], config=self.config)

    def load(self, split: str) -> list[Problem]:
        """All problems of a split ("train" or "test"), checked once: a bad row fails here, naming its index."""
        cache = self.__dict__.setdefault("_problems", {})
        if split not in cache:
            if split not in self.splits:
                raise ValueError(f"environment {self.name!r} has splits {sorted(self.splits)}, not {split!r}")
            from envs.datasets import check_rows

            rows = check_rows(self.rows(split), self.fields, where=f"env {self.name!r}, split {split!r}")
            cache[split] = [self.make_problem(row, index, split) for index, row in enumerate(rows)]
        return cache[split]

    def load_unlabelled(self, split: str) -> list[Problem]:
        """The problems of a split as a loop without labels may see them: the reference is `HIDDEN` (any use of it
        raises `LabelLeakError`) and the reference column is dropped from `meta`. Ids and prompts are unchanged."""
        column = self.fields.get("reference")
        return [Problem(id=p.id, prompt=p.prompt, reference=HIDDEN,
                        meta={k: v for k, v in p.meta.items() if k != column})
                for p in self.load(split)]

    def make_problem(self, row: Mapping[str, Any], index: int, split: str) -> Problem:
        """One checked row -> a `Problem`. Override to parse the reference (e.g. the answer after '####')."""
        try:
            prompt = self.prompt_template.format_map({**row, "problem": row[self.fields["problem"]]})
        except KeyError as err:
            raise ValueError(
                f"env {self.name!r}, split {split!r}: prompt_template uses {{{err.args[0]}}} but row {index} has only "
                f"the fields {sorted(row)} (and 'problem')"
            ) from err
        id_column = self.fields.get("id")
        return Problem(
            id=str(row[id_column]) if id_column else f"{split}-{index}",
            prompt=prompt,
            reference=row[self.fields["reference"]],
            meta=dict(row),
        )

    # ----- rewards --------------------------------------------------------------------------------------------

    def reward(self, attempt: str, problem: Problem) -> float:
        """The reward of one attempt: 1.0 when it solves the problem, else 0.0. Must never raise on model output."""
        raise NotImplementedError

    def rewards(self, attempts: list[str], problems: list[Problem]) -> list[float]:
        """Batch rewards. Environments with a faster batch scorer (parallel, time-limited) override this."""
        return [self.reward(a, p) for a, p in zip(attempts, problems, strict=True)]

    def reward_details(self, attempt: str, problem: Problem) -> dict[str, Any]:
        """Extra facts about one attempt for logs and samples.jsonl (the extracted answer, tests passed, ...)."""
        return {}

    # ----- feedback between attempts -----------------------------------------------------------------------------

    def set_feedback_mode(self, mode: str | None) -> None:
        """Choose the feedback between attempts (`env.kwargs.feedback`): None or one of `feedback_modes`."""
        if mode is not None and mode not in self.feedback_modes:
            raise ValueError(f"env.kwargs.feedback: {mode!r} is not one of {list(self.feedback_modes)} for "
                             f"{type(self).__name__}; leave it out for SCoRe's fixed correction instruction")
        self.feedback_mode = mode

    def feedback(self, problem: Problem, attempt: str) -> str | None:
        """What the model is told about `attempt` before its next attempt, in place of `correction_instruction`;
        None keeps the instruction. Override it to give your own feedback (a tool's result, a hint); its text is
        shown as the user turn, cut to `feedback_max_chars`, and never trained on. Must never raise on model output.

        This default runs the built-in mode chosen by `env.kwargs.feedback` (none: always None).
        """
        if self.feedback_mode is None:
            return None
        return self.feedbacks([attempt], [problem])[0]

    def feedbacks(self, attempts: list[str], problems: list[Problem]) -> list[str | None]:
        """Batch `feedback`, one per attempt. Environments with a faster batch form (parallel tests) override this."""
        if type(self).feedback is not Environment.feedback:  # the environment's own hook
            return [self.feedback(p, a) for a, p in zip(attempts, problems, strict=True)]
        if self.feedback_mode is None:
            return [None] * len(attempts)
        if self.feedback_mode == "oracle":
            rewards = self.rewards(attempts, problems)
            return [self.oracle_right if r >= 0.5 else self.oracle_wrong for r in rewards]
        raise NotImplementedError(f"{type(self).__name__}: feedback mode {self.feedback_mode!r} has no implementation")

    @property
    def feedback_kind(self) -> str:
        """Which feedback the model gets between attempts, recorded with every Δ so that results of different kinds
        never share a table: "intrinsic" (the fixed instruction, SCoRe's setting), "extrinsic:MODE" (a built-in
        mode, or a hook's own `feedback_mode` label) or "extrinsic" (an unlabelled `feedback` hook)."""
        if self.feedback_mode:
            return f"extrinsic:{self.feedback_mode}"
        return "intrinsic" if type(self).feedback is Environment.feedback else "extrinsic"

    # ----- prompts --------------------------------------------------------------------------------------------

    def first_turn_messages(self, problem: Problem) -> list[dict[str, str]]:
        """The conversation before attempt 1: optional system prompt, few-shot turns, then the problem."""
        messages: list[dict[str, str]] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        for shot_problem, shot_solution in self.few_shot:
            messages.append({"role": "user", "content": shot_problem})
            messages.append({"role": "assistant", "content": shot_solution})
        messages.append({"role": "user", "content": problem.prompt})
        return messages

    def messages(self, problem: Problem, attempts: list[str],
                 instructions: list[str] | None = None) -> list[dict[str, str]]:
        """The conversation before attempt `len(attempts) + 1`: turn 1, then each attempt and the instruction p
        (or, given `instructions`, the message that followed each attempt: the feedback on it).

        This is all a loop with K attempts needs: [user: x] [assistant: y1] [user: p] [assistant: y2] [user: p] ...
        """
        messages = self.first_turn_messages(problem)
        for k, attempt in enumerate(attempts):
            messages.append({"role": "assistant", "content": attempt})
            messages.append({"role": "user",
                             "content": instructions[k] if instructions else self.correction_instruction})
        return messages
