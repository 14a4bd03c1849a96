"""Code-execution reward: r(y) = 1 when the program in attempt y passes all its tests (HumanEval, MBPP, stdin/stdout).

The program was written by a model under optimization pressure, and under RL any forged pass becomes the learned
behaviour. So the tests never run in the program's interpreter. The program runs alone in its process in the sandbox
(`rewards.sandbox`: bubblewrap, a syscall filter, rlimits, uids of its own, a wall-clock kill); the tests run in a
separate process that holds no model code, and reach the program's functions through a proxy whose arguments and
results cross as plain data (`rewards/_code_wire.py`): numbers, strings, bytes, None, and lists, tuples, dicts and
sets of them. The verdict is decided in the tests' process. Patched builtins, fake modules, objects that equal
anything, tracing, frame or gc tricks, exits and forks all stay in the program's own process: they can change which
values come back, never how the tests judge them. A result that cannot cross (a function, a generator, an instance of
the program's own class) fails its test with status "unserializable", unless the test only hands it back to the
program (then it crosses as an inert reference).

What remains (also in the README):
- The tests see only values: a test that checks that the candidate mutated its argument in place, or that passes it
  a function (a callback), cannot work, and fails.
- Without bubblewrap there are no namespaces: the program can read world-readable host files, and when the host user
  is not root it also runs as that user (it could signal or read that user's other processes). Use bubblewrap.
- Where the host gives no cgroup (`rewards.cgroups`: root and the memory controller are needed), memory is limited
  per process (address space), so a program may use up to `max_procs` times `memory_mb` in all; /tmp and /dev/shm
  are capped tmpfs mounts, and memfd and SysV shared memory are refused by the syscall filter, either way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from rewards.sandbox import Limits, Profile, Reply, SandboxMode, resolve_mode, run_job

Status = Literal["passed", "failed", "timeout", "memory", "crash", "unserializable", "sandbox_error"]
# HumanEval: a str defining check(candidate); MBPP: a list of assert statements; stdin/stdout: a list of
# {"input": str, "output": str} cases.
Tests = str | Sequence[str] | Sequence[Mapping[str, str]]

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_PYTHON_TAGS = {"python", "python3", "py"}
_CPU_LIMIT_EXIT = -24  # RLIMIT_CPU ends the program's process with SIGXCPU


@dataclass(frozen=True)
class CodeResult:
    """The verdict on one program: `passed` only when every test passed. `feedback` is the first failing test's
    line and error (plain text, at most 1000 characters: what an environment may show the model); `stderr` is the
    tail of the program's own stderr."""

    passed: bool
    n_passed: int
    n_total: int
    status: Status
    stderr: str = ""
    feedback: str = ""

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


def _job(program: str, tests: Tests, entry_point: str | None, setup: str = "") -> dict:
    if not isinstance(program, str):
        raise TypeError(f"program must be a str (use extract_program on a completion), got {type(program).__name__}")
    if not isinstance(setup, str):
        raise TypeError(f"setup must be a str of trusted code, got {type(setup).__name__}")
    job = {"program": program, "entry_point": entry_point, "setup": setup}
    if isinstance(tests, str):
        if not re.search(r"^def check\(", tests, re.MULTILINE):
            raise ValueError("tests: a str must define check(candidate) (HumanEval); pass MBPP asserts as a list[str]")
        if not entry_point:
            raise ValueError(
                "entry_point is required with HumanEval-style check(candidate) tests (e.g. 'has_close_elements')"
            )
        return {**job, "tests": [tests], "mode": "check"}
    if isinstance(tests, (list, tuple)) and tests and all(isinstance(t, str) for t in tests):
        return {**job, "tests": list(tests), "mode": "asserts"}
    if isinstance(tests, (list, tuple)) and tests and all(_is_io_case(t) for t in tests):
        return {**job, "tests": [{"input": t["input"], "output": t["output"]} for t in tests], "mode": "stdio"}
    raise ValueError(
        "tests must be a HumanEval check(candidate) str, a non-empty list of MBPP assert strs, or a non-empty list "
        'of {"input": str, "output": str} stdin/stdout cases'
    )


def _is_io_case(case: object) -> bool:
    return isinstance(case, Mapping) and isinstance(case.get("input"), str) and isinstance(case.get("output"), str)


def _verdict(reply: Reply, n_total: int) -> CodeResult:
    """The tests' own verdict frames, read together with how the program's process ended."""
    verdicts: dict[int, tuple[str, str]] = {}
    done = False
    error = reply.error
    for frame in reply.frames:
        if type(frame) is not dict:
            continue
        if frame.get("done") is True:
            done = True
        elif "error" in frame:
            error = str(frame["error"])
        elif type(frame.get("test")) is int and 0 <= frame["test"] < n_total:
            verdicts.setdefault(frame["test"], (str(frame.get("verdict")), str(frame.get("message") or "")))
    n_passed = sum(verdicts.get(i, ("",))[0] == "pass" for i in range(n_total))
    reported = [verdicts[i] for i in range(n_total) if i in verdicts and verdicts[i][0] != "pass"]
    missing = [("fail", f"test {i} reported no verdict") for i in range(n_total) if i not in verdicts]
    failures = reported + missing
    feedback = reported[0][1] if reported else ""
    status: Status
    if error:
        status, feedback = "sandbox_error", error[-1000:]
    elif done and n_passed == n_total:
        status = "passed"
    elif reply.oom_killed:
        status = "memory"
        feedback = feedback or "the program ran out of memory"
    elif reply.exit_code == _CPU_LIMIT_EXIT or (reply.timed_out and not done):
        status = "timeout"
        feedback = feedback or "the program ran out of time"
    elif not done:
        status, feedback = "sandbox_error", "the tests did not finish"
    else:
        feedback = feedback or failures[0][1]
        status = {"memory": "memory", "crash": "crash", "unserializable": "unserializable"}.get(failures[0][0],
                                                                                                "failed")
    return CodeResult(status == "passed", n_passed, n_total, status, reply.stderr_tail, feedback)


def run_tests(
    program: str,
    tests: Tests,
    *,
    entry_point: str | None = None,
    setup: str = "",
    timeout: float = 5.0,
    memory_mb: int = 1024,
    sandbox: SandboxMode = "auto",
    warm: bool | None = None,
) -> CodeResult:
    """Run `program` in the sandbox and `tests` against it in a separate trusted process; report which passed.

    `tests` is a HumanEval test string defining `check(candidate)` (one test; `entry_point` names the candidate
    function), a list of MBPP `assert` statements (each counted separately), or a list of stdin/stdout cases
    (`{"input": ..., "output": ...}`; the program runs as a script once per case, and its output is compared line by
    line, ignoring trailing whitespace). `setup` is trusted code run before the tests in the tests' process (a
    HumanEval prompt's helper functions, an MBPP task's setup code): names it defines are never taken from the program.
    `timeout` is wall-clock seconds for the whole run; `memory_mb` limits each of the program's processes.
    `sandbox="bwrap"` refuses to run without bubblewrap; "auto" falls back to running without it, with a warning;
    "rlimits" never uses it. `warm=False` starts a fresh sandbox for the program instead of using a warm one
    (slower; see `rewards.sandbox`); None uses a warm one when possible.
    """
    job = _job(program, tests, entry_point, setup)
    limits = Limits(timeout=timeout, memory_mb=memory_mb)
    return _run(job, limits, resolve_mode(sandbox), warm)


def _run(job: dict, limits: Limits, profile: Profile | None, warm: bool | None = None) -> CodeResult:
    return _verdict(run_job(job, limits, profile=profile, warm=warm), len(job["tests"]))


def score(
    programs: Sequence[str],
    tests: Sequence[Tests],
    entry_points: Sequence[str | None] | None = None,
    *,
    setups: Sequence[str] | None = None,
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
    n = len(programs)
    for name, values in (("tests", tests), ("entry_points", entry_points), ("setups", setups)):
        if values is not None and len(values) != n:
            raise ValueError(f"{name} has {len(values)} entries but programs has {n}: give one per program")
    entry_points = [None] * n if entry_points is None else entry_points
    setups = [""] * n if setups is None else setups
    # Check everything before starting any work: bad input, and the sandbox (refuse or warn once).
    jobs = [_job(*args) for args in zip(programs, tests, entry_points, setups)]
    limits = Limits(timeout=timeout, memory_mb=memory_mb)
    profile = resolve_mode(sandbox)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        return list(pool.map(lambda job: _run(job, limits, profile, warm), jobs))
