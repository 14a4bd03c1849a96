"""How a score problem travels through OpenRLHF and verl: its first-turn chat messages as the prompt, and a label
that names it, so that the exported reward code finds the problem (and its reference) again on their side.

A label is JSON text, `{"split": ..., "problem_id": ...}`. Any other label is taken as the reference itself, so the
exported reward files also score datasets of the frameworks' own kind (a prompt column and an answer column).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from envs import Environment, Problem, make_env


def problem_label(split: str, problem: Problem) -> str:
    """The label that names `problem`.

    >>> problem_label("test", Problem(id="2+3", prompt="2+3=", reference="5"))
    '{"split": "test", "problem_id": "2+3"}'
    """
    return json.dumps({"split": split, "problem_id": problem.id})


def parse_label(label: Any) -> tuple[str, str] | None:
    """(split, problem id) from a label made by `problem_label`; None for any other label.

    >>> parse_label('{"split": "test", "problem_id": "2+3"}'), parse_label("5"), parse_label('{"a": 1}')
    (('test', '2+3'), None, None)
    """
    if isinstance(label, str):
        try:
            label = json.loads(label)
        except ValueError:
            return None
    if isinstance(label, dict) and {"split", "problem_id"} <= label.keys():
        return str(label["split"]), str(label["problem_id"])
    return None


def prompt_rows(env: Environment, split: str, limit: int | None = None) -> list[dict[str, Any]]:
    """One row per problem of `split`: its first-turn messages (system prompt, few-shot turns, problem) and label."""
    problems = env.load(split)[:limit]
    if not problems:
        raise ValueError(f"--env {env.name}: split {split!r} has no problems")
    return [{"messages": env.first_turn_messages(p), "label": problem_label(split, p)} for p in problems]


class ProblemIndex:
    """An environment and its problems by label, built once per process on the frameworks' side."""

    def __init__(self, env_name: str, env_kwargs: dict[str, Any]) -> None:
        self.env = make_env(env_name, **env_kwargs)
        self._by_id: dict[str, dict[str, Problem]] = {}

    def find(self, label: Any, prompt: str = "") -> Problem:
        named = parse_label(label)
        if named is None:
            return Problem(id="", prompt=prompt, reference=label)
        split, problem_id = named
        if split not in self._by_id:
            self._by_id[split] = {p.id: p for p in self.env.load(split)}
        try:
            return self._by_id[split][problem_id]
        except KeyError:
            raise ValueError(
                f"label {label!r}: environment {self.env.name!r} has no problem {problem_id!r} in split {split!r}; "
                "export the prompts and the reward/agent file with the same --env and --env-kwargs"
            ) from None


@functools.cache
def _index(env_name: str, env_kwargs_json: str) -> ProblemIndex:
    return ProblemIndex(env_name, json.loads(env_kwargs_json))


def problem_index(env_name: str, env_kwargs: dict[str, Any]) -> ProblemIndex:
    """The process's one `ProblemIndex` for this environment and these kwargs."""
    return _index(env_name, json.dumps(env_kwargs, sort_keys=True))
