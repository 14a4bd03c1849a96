r"""Math answer checking: find the final answer of a solution, decide whether it equals the reference, score batches.

    >>> from rewards.math import extract_answer, is_equiv, score
    >>> extract_answer("... Final Answer: The final answer is $\\dfrac{3}{4}$. I hope it is correct.")
    '\\dfrac{3}{4}'
    >>> is_equiv("0.75", "\\frac{3}{4}"), is_equiv("(1,3)", "[1,3]")
    (True, False)

What "equal" means (the structure policy lives in `rewards.math_compare`): numbers in any form (thousands
separators, decimals, `\frac`, `a/b`, mixed numbers, scientific notation, repeating decimals, subscripted bases,
`%` when only one side has it), radicals and pi, expressions equal after algebra, `x = 5` vs `5`, worked arithmetic
by its last side (`3*4 = 12` vs `12`), intervals (ends must match), tuples (ordered), sets and bare comma lists
(unordered), `\pm`, matrices, degrees, multiple-choice letters, `\infty`; different units are different answers, a unit on one side only is dropped.

Numbers, chosen so that a policy trained on this reward cannot farm a near miss:

- Integers and decimals are exact numbers: `3^{45}+1` is not `3^{45}`; a decimal prediction against a decimal
  reference must be the same number (`0.50` is `0.5`, but `3.1416` is not `3.14` and `0.54` is not `0.5`).
- A decimal never equals an exact reference it only approximates: `1.732` is not `\sqrt{3}`, `0.33` is not `1/3`.
- A decimal reference may be the rounding of an exact value: a prediction that no decimal writes exactly
  (`\pi`, `\sqrt{2}`, `1/3`, `0.\overline{6}`) counts when it rounds to the reference at its last digit (`\pi`
  vs `3.14`, `1/3` vs `0.33`). A prediction with a finite decimal form is compared as that decimal (`27/50` is
  `0.54`, not `0.5`), and one written with decimals of its own is compared exactly.
- `rel_tol` (default 0, off) accepts, on request, any prediction within that relative distance of a decimal
  reference.

How the time limit holds (no signals, so it works in any thread, Ray actor or subprocess):

- `is_equiv` first runs the pure-Python fast path in the calling process: size and nesting limits
  (`rewards.math_normalize.check_size`), normalisation, string and exact-number comparison. That path is linear in
  the (at most 1,000-character) answers, so it needs no timer. Only when a leaf needs algebra does the whole check
  move to a helper worker process, which is SIGKILLed and replaced if it passes `timeout`; that counts as False.
- `score` extracts answers and runs the same fast path in the calling process, then sends the checks that need
  algebra to a pool of worker processes, each under the hard limit (`rewards.math_pool.CheckPool`).
  `score(..., return_stats=True)` also returns a `ScoreStats` with the number of checks killed at the limit
  (`timeouts`) and of workers that died (`crashes`), for the training metrics; `IS_EQUIV_STATS` counts the same
  for all `is_equiv` calls.
- Inside workers, numbers that would need more than `rewards.math_sympy.MAX_DIGITS` digits (10^10^10^10, huge
  factorials) are rejected before evaluation, and each worker's address space is capped.

Worker processes are forked from a zygote started as its own program (`python -m rewards.math_worker`), never
through `multiprocessing`: the caller's `__main__` is never imported, so a script read from stdin, a script without
an `if __name__ == "__main__":` guard, a notebook, a thread or a Ray actor gets the same verdicts. sympy is imported
only in the workers, so importing this module is cheap.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from rewards.math_compare import NeedsSympy, answers_equal
from rewards.math_extract import extract_answer
from rewards.math_normalize import AnswerTooComplex
from rewards.math_pool import CRASH, CheckPool, PoolStats, Zygote

__all__ = ["DEFAULT_REL_TOL", "IS_EQUIV_STATS", "ScoreStats", "extract_answer", "is_equiv", "score"]

logger = logging.getLogger(__name__)

DEFAULT_REL_TOL = 0.0
_PRELOAD = ("rewards.math_preload",)
_MEMORY_LIMIT_MB = 3072  # per worker process: a giant number fails with MemoryError instead of filling the machine
_pools: dict[int, CheckPool] = {}
_zygote: tuple[int, Zygote] | None = None  # (the pid that started it, the zygote)
_pools_lock = threading.Lock()


@dataclass
class ScoreStats:
    """What a `score` call (or, cumulatively, `IS_EQUIV_STATS` for `is_equiv`) did.

    `n`: checks; `in_workers`: checks that needed algebra and ran in a worker process; `timeouts`: of those, killed
    at the time limit (they score 0); `crashes`: workers that died (they score 0); `seconds`: wall time;
    `slowest`: the longest worker check in seconds (never more than the limit plus the kill latency).
    """

    n: int = 0
    in_workers: int = 0
    timeouts: int = 0
    crashes: int = 0
    seconds: float = 0.0
    slowest: float = 0.0

    def add(self, pool: PoolStats) -> None:
        self.in_workers += pool.n
        self.timeouts += pool.timeouts
        self.crashes += pool.crashes
        self.slowest = max(self.slowest, pool.slowest)


# Cumulative counters of every `is_equiv` call in this process (for metrics; reset with `IS_EQUIV_STATS.__init__()`).
IS_EQUIV_STATS = ScoreStats()


def is_equiv(prediction: str, reference: str, *, timeout: float = 5.0, rel_tol: float = DEFAULT_REL_TOL) -> bool:
    r"""True when the two answers (raw or LaTeX) are mathematically the same. Never raises on bad input.

    `timeout` (seconds) bounds the whole call; the first call that needs algebra also starts the helper process
    (about a second, not counted). Thread-safe: calls from several threads share one helper, one at a time.

    >>> is_equiv("1,000", "1000"), is_equiv("\\frac{1}{2}", "0.5"), is_equiv("50\\%", "\\frac12")
    (True, True, True)
    >>> is_equiv("\\{2, 1\\}", "\\{1,2\\}"), is_equiv("(2, 1)", "(1,2)")
    (True, False)
    >>> is_equiv(None, "1"), is_equiv("", "1")
    (False, False)
    """
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    start = time.monotonic()
    IS_EQUIV_STATS.n += 1
    fast = _fast_check(prediction, reference, rel_tol)
    if fast is not None:
        return fast
    started = time.monotonic()
    pool = _pool(1)
    start += time.monotonic() - started  # starting the helper (once per process) is not counted
    remaining = timeout - (time.monotonic() - start)
    if remaining <= 0:
        return False
    results, pool_stats = pool.run([(_check, (prediction, reference, rel_tol))], timeout=remaining)
    IS_EQUIV_STATS.add(pool_stats)
    if results[0] == CRASH:
        logger.warning("the math checker's worker process died (out of memory?); the check scored 0")
    return results[0] is True


def score(
    texts: Sequence[str],
    references: Sequence[str],
    *,
    timeout: float = 5.0,
    workers: int | None = None,
    rel_tol: float = DEFAULT_REL_TOL,
    fallback_number: bool = True,
    strict: bool = False,
    return_stats: bool = False,
) -> list[float] | tuple[list[float], ScoreStats]:
    """1.0 or 0.0 per solution: its extracted answer (`extract_answer`) equals its reference (`is_equiv`).

    Extraction and the fast path run here (linear time on bounded input); checks that need algebra run in
    `workers` processes (default: the CPUs this process may use), each under a hard `timeout` in seconds; a check
    that passes it is killed and scores 0. `strict=True` accepts only the instructed answer forms (the "Final Answer:
    The final answer is ..." line or a `\\boxed{}`; see `extract_answer`). With `return_stats=True` the result is `(scores, ScoreStats)`:
    `stats.timeouts` counts the killed checks, `stats.crashes` the workers that died.
    """
    if len(texts) != len(references):
        raise ValueError(f"texts has {len(texts)} items but references has {len(references)}: pass one reference per text")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    start = time.monotonic()
    stats = ScoreStats(n=len(texts))
    scores = [0.0] * len(texts)
    hard: list[tuple[int, str, str]] = []
    for index, (text, reference) in enumerate(zip(texts, references)):
        answer = extract_answer(text, fallback_number=fallback_number, strict=strict) if isinstance(text, str) else None
        fast = _fast_check(answer, reference, rel_tol)
        if fast is None:
            hard.append((index, answer, reference))
        else:
            scores[index] = float(fast)
    if hard:
        tasks = [(_check, (answer, reference, rel_tol)) for _, answer, reference in hard]
        results, pool_stats = _pool(workers).run(tasks, timeout=timeout)
        stats.add(pool_stats)
        for (index, _, _), result in zip(hard, results):
            scores[index] = 1.0 if result is True else 0.0
    stats.seconds = time.monotonic() - start
    return (scores, stats) if return_stats else scores


def _fast_check(prediction, reference, rel_tol: float) -> bool | None:
    """The pure-Python fast path: True/False when it decides, None when the check needs algebra."""
    if not isinstance(prediction, str) or not isinstance(reference, str):
        return False
    try:
        return answers_equal(prediction, reference, rel_tol=rel_tol, leaf_sympy=None)
    except NeedsSympy:
        return None
    except AnswerTooComplex:
        return False
    except Exception:  # a reward must not crash a run; an answer we cannot read is not a right answer
        logger.debug("fast path failed on %r vs %r", prediction[:80], reference[:80], exc_info=True)
        return False


def _check(prediction: str, reference: str, rel_tol: float) -> bool:
    """The full check, algebra included. Runs inside a worker process."""
    from rewards.math_sympy import sympy_equal

    try:
        return answers_equal(prediction, reference, rel_tol=rel_tol, leaf_sympy=sympy_equal)
    except Exception:  # AnswerTooComplex, parser errors, MemoryError under the worker's memory cap, ...
        return False


def _pool(workers: int) -> CheckPool:
    """One long-lived pool per size, per process (a pool inherited through fork belongs to the parent). The pools
    share one zygote, so `is_equiv` and `score` in one process pay for one start of sympy and the parser."""
    global _zygote
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None or pool.pid != os.getpid():
            if _zygote is None or _zygote[0] != os.getpid():
                _zygote = (os.getpid(), Zygote(_PRELOAD, memory_limit_mb=_MEMORY_LIMIT_MB))
            pool = _pools[workers] = CheckPool(workers, zygote=_zygote[1])
        return pool


@atexit.register
def _close_pools() -> None:
    global _zygote
    for pool in _pools.values():
        if pool.pid == os.getpid():
            pool.close()
    _pools.clear()
    if _zygote is not None and _zygote[0] == os.getpid():
        _zygote[1].close()
    _zygote = None
