"""Code-execution reward: r(y) = 1 when the program in attempt y passes all of its tests (HumanEval, MBPP).

The program was written by a model under optimization pressure, so it runs in `rewards.sandbox` (bubblewrap +
rlimits + wall-clock kill) and its verdict comes back on a nonce-tagged channel written by the runner
(`rewards/_code_runner.py`) only after each test ran in the runner's own frame: exiting early, crashing or
monkeypatching builtins yields a failure, never a pass.

Known limit: tests call the program in-process (they must: they call its functions), so a program that deliberately
walks frames or the heap (`gc`, `sys._getframe`) or returns an object whose `__eq__` always says True can still fool
the tests. The sandbox keeps such a program from touching anything outside, but the reward may be wrong.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from rewards.sandbox import Finished, Limits, Profile, SandboxMode, resolve_mode, run_runner

Status = Literal["passed", "failed", "timeout", "memory", "crash", "sandbox_error"]

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_PYTHON_TAGS = {"python", "python3", "py"}
# RLIMIT_CPU kills with SIGXCPU (24); bwrap reports a child killed by a signal as 128 + signal.
_CPU_LIMIT_EXITS = {-24, 128 + 24}


@dataclass(frozen=True)
class CodeResult:
    """The verdict on one program: `passed` only when every test passed; `stderr` is a truncated tail."""

    passed: bool
    n_passed: int
    n_total: int
    status: Status
    stderr: str = ""

    @property
    def reward(self) -> float:
        return 1.0 if self.passed else 0.0


def extract_program(text: str) -> str:
    """The program in a model completion: the last complete ```python fenced block, else the last untagged fenced
    block, else the text itself (with a dangling opening fence of a truncated completion removed).

    >>> extract_program("Here:\\n```python\\ndef f():\\n    return 1\\n```\\nDone.")
    'def f():\\n    return 1\\n'
    >>> extract_program("```python\\nx = 1\\n```\\nFixed:\\n```python\\nx = 2\\n```")
    'x = 2\\n'
    >>> extract_program("```bash\\npip install x\\n```\\n```\\ny = 3\\n```")
    'y = 3\\n'
    >>> extract_program("def g(a):\\n    return a")
    'def g(a):\\n    return a'
    >>> extract_program("```python\\ndef h():\\n    return")
    'def h():\\n    return'
    """
    blocks = [(tag.lower(), body) for tag, body in _FENCE.findall(text)]
    for wanted in (lambda tag: tag in _PYTHON_TAGS, lambda tag: tag == ""):
        chosen = [body for tag, body in blocks if wanted(tag)]
        if chosen:
            return chosen[-1]
    dangling = re.match(r"\s*```[ \t]*(python3?|py)?[ \t]*\n", text, re.IGNORECASE)
    return text[dangling.end() :] if dangling else text


def _job(program: str, tests: str | list[str], entry_point: str | None) -> dict:
    if not isinstance(program, str):
        raise TypeError(f"program must be a str (use extract_program on a completion), got {type(program).__name__}")
    if isinstance(tests, str):
        if not re.search(r"^def check\(", tests, re.MULTILINE):
            raise ValueError("tests: a str must define check(candidate) (HumanEval); pass MBPP asserts as a list[str]")
        if not entry_point:
            raise ValueError(
                "entry_point is required with HumanEval-style check(candidate) tests (e.g. 'has_close_elements')"
            )
        return {"program": program, "tests": [tests], "mode": "check", "entry_point": entry_point}
    if not isinstance(tests, (list, tuple)) or not tests or not all(isinstance(t, str) for t in tests):
        raise ValueError("tests must be a HumanEval check(candidate) str or a non-empty list of MBPP assert strs")
    return {"program": program, "tests": list(tests), "mode": "asserts", "entry_point": entry_point}


def _verdict(finished: Finished, nonce: str, n_total: int) -> CodeResult:
    """Read the nonce-tagged lines of the runner's channel; anything else (the program's forgeries) is ignored."""
    ready = done = memory = False
    tests: dict[int, str] = {}
    prefix = nonce + " "
    for line in finished.channel.decode("ascii", "replace").splitlines():
        if not line.startswith(prefix):
            continue
        words = line[len(prefix) :].split()
        if words == ["ready"]:
            ready = True
        elif words == ["memory"]:
            memory = True
        elif words == ["done"]:
            done = True
        elif len(words) == 3 and words[0] == "test" and words[1].isdigit():
            tests.setdefault(int(words[1]), words[2])
    n_passed = sum(tests.get(i) == "pass" for i in range(n_total))
    memory = memory or "memory" in tests.values() or (not done and "MemoryError" in finished.stderr_tail)
    killed_for_time = finished.timed_out or finished.returncode in _CPU_LIMIT_EXITS
    if not ready:
        status: Status = "sandbox_error"
    elif done and n_passed == n_total:
        status = "passed"
    elif killed_for_time and not done:
        status = "timeout"
    elif memory:
        status = "memory"
    elif done:
        status = "failed"
    else:
        status = "crash"
    return CodeResult(status == "passed", n_passed, n_total, status, finished.stderr_tail)


def run_tests(
    program: str,
    tests: str | list[str],
    *,
    entry_point: str | None = None,
    timeout: float = 5.0,
    memory_mb: int = 1024,
    sandbox: SandboxMode = "auto",
    warm: bool | None = None,
) -> CodeResult:
    """Run `program` against `tests` in the sandbox and report exactly which tests passed.

    `tests` is either a HumanEval test string defining `check(candidate)` (one test; `entry_point` names the
    candidate function) or a list of MBPP `assert` statements (each counted separately). `timeout` is wall-clock
    seconds for the whole run. `sandbox="bwrap"` refuses to run without bubblewrap; "auto" falls back to rlimits
    with a warning; "rlimits" never uses bwrap. `warm=False` starts a fresh sandbox for the program instead of
    forking it in a warm one (slower; see `rewards.sandbox`); None uses a warm one when possible.
    """
    job = _job(program, tests, entry_point)
    limits = Limits(timeout=timeout, memory_mb=memory_mb)
    return _run(job, limits, resolve_mode(sandbox), warm)


def _run(job: dict, limits: Limits, profile: Profile | None, warm: bool | None = None) -> CodeResult:
    nonce = secrets.token_hex(16)  # fresh per run: the program never sees it before its tests are judged
    finished = run_runner({**job, "nonce": nonce}, limits, profile=profile, warm=warm)
    return _verdict(finished, nonce, len(job["tests"]))


def score(
    programs: Sequence[str],
    tests: Sequence[str | list[str]],
    entry_points: Sequence[str | None] | None = None,
    *,
    timeout: float = 5.0,
    memory_mb: int = 1024,
    workers: int | None = None,
    sandbox: SandboxMode = "auto",
    warm: bool | None = None,
) -> list[CodeResult]:
    """`run_tests` on many programs at once, `workers` sandboxes at a time (default: the CPU count).

    Pass programs, not completions (see `extract_program`). Threads only drive the sandboxes; each program runs in
    its own process, so the GIL is not the limit. Results come back in input order.

    >>> [r.reward for r in score(["def f():\\n    return 1\\n"] * 2, [["assert f() == 1"], ["assert f() == 2"]])]
    [1.0, 0.0]
    """
    if len(tests) != len(programs):
        raise ValueError(f"tests has {len(tests)} entries but programs has {len(programs)}: give one per program")
    if entry_points is None:
        entry_points = [None] * len(programs)
    if len(entry_points) != len(programs):
        raise ValueError(f"entry_points has {len(entry_points)} entries but programs has {len(programs)}")
    # Check everything before starting any work: bad input, and the sandbox (refuse or warn once).
    jobs = [_job(*args) for args in zip(programs, tests, entry_points)]
    limits = Limits(timeout=timeout, memory_mb=memory_mb)
    profile = resolve_mode(sandbox)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        return list(pool.map(lambda job: _run(job, limits, profile, warm), jobs))
