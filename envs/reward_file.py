"""Bring your own reward: an OpenRLHF `reward_func` file or a verl `compute_score` file as an environment's reward.

    env:
      name: math_dataset
      kwargs: {path: data/qa.jsonl, reward_file: my_reward.py}      # or my_reward.py:function_name

The environment keeps its problems and prompts; every attempt is scored by the function in the file, unchanged.
The file is imported the way OpenRLHF and verl import it (by path), and the function is recognised by its parameters:

- OpenRLHF: `reward_func(queries, prompts, labels, **kwargs)`, returning a dict with "rewards" (a tensor or list)
  or the rewards themselves. It gets `queries = [problem prompt + attempt]`, `prompts = [problem prompt]`,
  `labels = [problem reference]`, one attempt per call (as OpenRLHF's single-turn executor calls it).
- verl: `compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs)`, returning a number or a
  dict with "score". It gets the attempt as `solution_str`, the reference as `ground_truth`, the row's
  `data_source` column (else the environment's name) and the row's `extra_info` column plus `index` (the problem id).

Without a function name, the file's `reward_func` is used, else its `compute_score`. A relative path is read from the
working directory, like `model.path` (on a multi-node cluster the file must be at the same path on every node).

Model output must never stop a run: each call runs in a worker process under a time limit (`reward_timeout`
seconds, default 30), and a call that raises, returns something that is not a number, crashes or runs out of time
scores 0 and is reported once per kind of failure.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import logging
import os
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from envs.base import Environment, Problem

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
DEFAULT_NAMES = ("reward_func", "compute_score")


def _import_function(path: str, name: str | None) -> tuple[Callable, str]:
    """The reward function in `path` (by `name`, else the first of DEFAULT_NAMES it defines) and its name."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"env.kwargs.reward_file: no such file {path!r} (working directory {os.getcwd()})")
    spec = importlib.util.spec_from_file_location(f"score_reward_file_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's file: say which one failed and why
        raise ValueError(f"env.kwargs.reward_file: importing {path!r} failed: {type(err).__name__}: {err}") from err
    names = (name,) if name else DEFAULT_NAMES
    found = next((n for n in names if callable(getattr(module, n, None))), None)
    if found is None:
        raise ValueError(f"env.kwargs.reward_file: {path!r} defines no function {' or '.join(names)}; "
                         "name another one with 'file.py:function_name'")
    return getattr(module, found), found


def reward_kind(function: Callable) -> str:
    """'verl' for compute_score(data_source, solution_str, ground_truth, extra_info), 'openrlhf' for
    reward_func(queries, prompts, labels); verl passes keywords (the names matter), OpenRLHF positions.

    >>> reward_kind(lambda data_source, solution_str, ground_truth, extra_info=None: 1.0)
    'verl'
    >>> reward_kind(lambda queries, prompts, labels, **kwargs: [1.0])
    'openrlhf'
    """
    parameters = inspect.signature(function).parameters
    if {"solution_str", "ground_truth"} <= parameters.keys():
        return "verl"
    try:
        inspect.signature(function).bind([], [], [])
    except TypeError:
        raise ValueError(
            f"env.kwargs.reward_file: {getattr(function, '__name__', function)}{inspect.signature(function)} takes "
            "neither (queries, prompts, labels) like OpenRLHF's reward_func nor (data_source, solution_str, "
            "ground_truth, extra_info) like verl's compute_score"
        ) from None
    return "openrlhf"


def _as_number(result: Any, kind: str) -> float:
    """The one reward in what the function returned (a dict, a tensor or list of one, or a number)."""
    if isinstance(result, dict):
        result = result["score"] if kind == "verl" else result.get("rewards", result.get("scores"))
    if hasattr(result, "tolist"):  # torch tensors and numpy arrays
        result = result.tolist()
    if isinstance(result, list | tuple):
        (result,) = result
    return float(result)


_loaded: dict[tuple[str, str | None], tuple[Callable, str]] = {}


def _load(path: str, name: str | None) -> tuple[Callable, str]:
    if (path, name) not in _loaded:
        function, _ = _import_function(path, name)
        _loaded[path, name] = function, reward_kind(function)
    return _loaded[path, name]


def _call(path: str, name: str | None, query: dict[str, Any]) -> float:
    """Runs in a worker process: one attempt through the user's function (imported once per worker)."""
    function, kind = _load(path, name)
    if kind == "verl":
        result = function(data_source=query["data_source"], solution_str=query["attempt"],
                          ground_truth=query["reference"], extra_info=query["extra_info"])
    else:
        result = function([query["prompt"] + query["attempt"]], [query["prompt"]], [query["reference"]])
    if inspect.isawaitable(result):  # verl also accepts async reward functions
        result = asyncio.run(result)
    return _as_number(result, kind)


def _warm(path: str, name: str | None) -> bool:
    _load(path, name)
    return True


class FileReward:
    """`rewards(attempts, problems)` from a reward file, run in worker processes under a time limit."""

    def __init__(self, spec: str, env_name: str, *, timeout: float = DEFAULT_TIMEOUT, workers: int | None = None):
        path, _, name = spec.partition(":")
        function, found = _import_function(path, name or None)  # fail now, in this process, with a clear message
        self.kind = reward_kind(function)
        self.path, self.name, self.env_name = str(Path(path).resolve()), found, env_name
        if not timeout > 0:
            raise ValueError(f"env.kwargs.reward_timeout must be > 0 seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self.workers = workers or min(4, os.cpu_count() or 1)
        self._pool = None
        self._reported: set[str] = set()

    def _query(self, attempt: str, problem: Problem) -> dict[str, Any]:
        extra = problem.meta.get("extra_info")
        return {"attempt": attempt, "prompt": problem.prompt, "reference": problem.reference,
                "data_source": problem.meta.get("data_source", self.env_name),
                "extra_info": {**(extra if isinstance(extra, dict) else {}), "index": problem.id}}

    def _start_pool(self):
        from rewards.math_pool import CheckPool

        pool = CheckPool(self.workers, memory_limit_mb=None)
        weakref.finalize(self, pool.close)  # the workers go when the environment does
        # Importing the user's file (often torch) can take longer than one call may: do it once per worker first.
        pool.run([(_warm, (self.path, self.name))] * self.workers, timeout=max(120.0, self.timeout))
        return pool

    def __call__(self, attempts: list[str], problems: list[Problem]) -> list[float]:
        if self._pool is None:
            self._pool = self._start_pool()
        tasks = [(_call, (self.path, self.name, self._query(a, p))) for a, p in zip(attempts, problems, strict=True)]
        results, _ = self._pool.run(tasks, timeout=self.timeout)
        rewards = []
        for result in results:
            if isinstance(result, float):
                rewards.append(result)
                continue
            failure = result[1] if isinstance(result, tuple) else str(result)  # ("error", type name), timeout, crash
            if failure not in self._reported:
                self._reported.add(failure)
                log.warning("reward_file %s:%s: a call ended in %s; such attempts score 0", self.path, self.name,
                            failure)
            rewards.append(0.0)
        return rewards


def use_reward_file(env: Environment, spec: str, *, timeout: float | None = None) -> Environment:
    """Score `env`'s attempts with the function in `spec` ('file.py' or 'file.py:function_name')."""
    file_reward = FileReward(spec, env.name, timeout=DEFAULT_TIMEOUT if timeout is None else timeout)
    env.rewards = file_reward
    env.reward = lambda attempt, problem: file_reward([attempt], [problem])[0]
    return env
