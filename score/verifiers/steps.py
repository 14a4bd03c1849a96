"""Step splitting for process reward models, and where the steps end in a model's tokens.

A solution is cut into steps on its text, so that step labels are independent of any tokenizer; a step is
identified by the character offset where it ends (exclusive). `data.steps.split` chooses how:

- `newline` (default, as PRM800K and Math-Shepherd): a step ends at each line break; blank lines are not steps;
- `regex`: a step ends after each match of `data.steps.pattern` (e.g. `[.!?](?=\\s)` for sentences, `\\n\\n` for
  paragraphs);
- `chars`: a step is every `data.steps.every` non-space characters (the demo's arithmetic answers: `every: 1` makes
  each digit a step).

The solution's end is always the last step's end; trailing whitespace belongs to no step. Step boundaries become
token positions with `token_step_ends` (a generator's ids, to sample Math-Shepherd completions from a prefix) or
`offsets_step_ends` (a verifier's tokenizer offsets, to place the PRM's per-step logits).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass
class StepConfig:
    split: str = "newline"
    """newline, regex or chars (see score.verifiers.steps)."""
    pattern: str = ""
    """split=regex: a step ends after each match."""
    every: int = 1
    """split=chars: non-space characters per step."""


def step_ends(text: str, cfg: StepConfig) -> list[int]:
    """Character offsets (exclusive) where the steps of `text` end; [] for a text without content.

    >>> step_ends("a = 1\\n\\nb = 2\\nso 3\\n", StepConfig())
    [5, 12, 17]
    >>> step_ends("Add 4. Then 5! Done", StepConfig("regex", r"[.!?](?=\\s)"))
    [6, 14, 19]
    >>> step_ends(" 125", StepConfig("chars", every=1)), step_ends("12 345", StepConfig("chars", every=2))
    ([2, 3, 4], [2, 5, 6])
    """
    end = len(text.rstrip())
    if end == 0:
        return []
    if cfg.split == "newline":
        cuts = [m.start() for m in re.finditer(r"\n", text)]
    elif cfg.split == "regex":
        if not cfg.pattern:
            raise ValueError("data.steps.pattern: split=regex needs a pattern, e.g. '[.!?](?=\\s)'")
        cuts = [m.end() for m in re.finditer(cfg.pattern, text)]
    elif cfg.split == "chars":
        if cfg.every < 1:
            raise ValueError(f"data.steps.every: must be >= 1, got {cfg.every}")
        cuts, seen = [], 0
        for i, ch in enumerate(text):
            if not ch.isspace():
                seen += 1
                if seen % cfg.every == 0:
                    cuts.append(i + 1)
    else:
        raise ValueError(f"data.steps.split: {cfg.split!r} is not one of newline, regex, chars")
    ends, start = [], 0
    for cut in [*cuts, end]:
        cut = min(cut, end)
        if text[start:cut].strip():  # a step has content; whitespace between steps joins the next one
            ends.append(cut)
            start = cut
    return ends


def token_step_ends(token_ids: Sequence[int], ends: Sequence[int], decode: Callable[[list[int]], str]) -> list[int]:
    """For each step end (a character offset in decode(token_ids)), the number of tokens whose text covers it: the
    prefix `token_ids[:count]` holds the step. Counts are strictly increasing (steps that fall in one token merge
    into the later one's count, so duplicates are dropped by the caller through `merge_steps`).

    >>> token_step_ends([1, 2, 3], [2, 5], lambda ids: "".join({1: "ab", 2: "cd", 3: "e"}[i] for i in ids))
    [1, 3]
    """
    lengths = [len(decode(list(token_ids[:i]))) for i in range(len(token_ids) + 1)]
    return [min(bisect_left(lengths, end), len(token_ids)) for end in ends]


def offsets_step_ends(offsets: Sequence[tuple[int, int]], ends: Sequence[int]) -> list[int]:
    """For each step end, the index of the last token that starts before it (tokenizer offset mapping).

    >>> offsets_step_ends([(0, 2), (2, 4), (4, 5)], [2, 5])
    [0, 2]
    """
    starts = [start for start, _ in offsets]
    return [max(bisect_left(starts, end) - 1, 0) for end in ends]


def merge_steps(positions: Sequence[int], labels: Sequence[float]) -> tuple[list[int], list[float]]:
    """Steps that end on the same token become one step whose label is the later one's (its prefix holds both).

    >>> merge_steps([0, 2, 2, 4], [1.0, 1.0, 0.0, 0.0])
    ([0, 2, 4], [1.0, 0.0, 0.0])
    """
    out_pos: list[int] = []
    out_lab: list[float] = []
    for position, label in zip(positions, labels):
        if out_pos and out_pos[-1] == position:
            out_lab[-1] = label
        else:
            out_pos.append(position)
            out_lab.append(label)
    return out_pos, out_lab
