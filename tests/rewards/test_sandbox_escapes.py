"""Untrusted programs that try to escape: each fails safely and the host stays untouched.

Every test runs the real bubblewrap sandbox (sandbox="bwrap": a missing bwrap is an error, not a skip), both in a
warm sandbox (as root) and in a fresh one. The tests given to the sandbox assert that the escape *worked*, so a pass
would mean the sandbox leaked. Attempts to forge a verdict or to leave state for the next job are in
test_code_attacks.py, which also runs them without bubblewrap.
"""

import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from rewards.code import run_tests
from rewards.sandbox import bwrap_profile


@pytest.fixture(
    params=[True, False] if bwrap_profile() == "drop" else [False], ids=lambda warm: "warm" if warm else "fresh"
)
def warm(request):
    return request.param


@pytest.fixture
def run(warm):
    def _run(program: str, tests: list[str], **kwargs):
        return run_tests(program, tests, sandbox="bwrap", warm=warm, **kwargs)

    return _run


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains `marker`."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _gone_within(marker: str, seconds: float) -> bool:
    # The kernel reaps a dead PID namespace asynchronously; poll (not sleep) until it is empty.
    deadline = time.monotonic() + seconds
    while processes_with(marker):
        if time.monotonic() > deadline:
            return False
        os.sched_yield()
    return True


def test_infinite_loop_is_killed_on_time(run):
    start = time.monotonic()
    result = run("def f():\n    while True:\n        pass\n", ["f()"], timeout=1.0)
    assert result.status == "timeout" and not result.passed
    assert time.monotonic() - start < 3.0


def test_fork_bomb_is_contained_and_cleaned_up(run):
    # As root only the "drop" profile makes RLIMIT_NPROC count; never set a real fork bomb loose on the machine.
    assert os.geteuid() != 0 or bwrap_profile() == "drop", "as root, bwrap must run with the 'drop' profile"
    marker = f"forkbomb-{secrets.token_hex(8)}"
    bomb = (
        "import os, sys\n"
        "def f():\n"
        "    children = 0\n"
        "    for _ in range(200):\n"
        "        try:\n"
        "            if os.fork() == 0:\n"
        "                os.execv(sys.executable, [sys.executable, '-c',\n"
        "                    'import os\\nwhile True:\\n    try: os.fork()\\n    except OSError: pass', "
        f"'{marker}'])\n"
        "            children += 1\n"
        "        except OSError:\n"
        "            pass\n"
        "    return children\n"
    )
    result = run(bomb, ["assert f() > 100"], timeout=3.0)  # more than the 64 tasks the limit allows
    assert not result.passed and result.status in ("failed", "timeout")
    assert _gone_within(marker, 10.0), "fork bomb processes survived the sandbox"
    assert subprocess.run(["true"], check=False).returncode == 0  # the host can still start processes


def test_memory_bomb_hits_the_limit(run):
    bomb = "def f():\n    hoard = []\n    while True:\n        hoard.append(bytearray(64 << 20))\n"
    result = run(bomb, ["f()"], memory_mb=512)
    assert result.status == "memory" and not result.passed


def test_gigabyte_of_stdout_is_discarded_and_the_verdict_stays_exact(run):
    program = (
        "import os, sys\n"
        "def f(x):\n"
        "    chunk = 'x' * (1 << 20)\n"
        "    for _ in range(512):\n"
        "        print(chunk)\n"
        "        os.write(1, chunk.encode())\n"
        "    return x + 1\n"
    )
    result = run(program, ["assert f(1) == 2"], timeout=20.0)
    assert result.status == "passed"
    assert len(result.stderr) <= 2000


def test_gigabyte_of_stderr_is_cut_off(run):
    program = (
        "import os\ndef f():\n    chunk = b'e' * (1 << 20)\n    for _ in range(1024):\n        os.write(2, chunk)\n"
    )
    result = run(program, ["f()"], timeout=20.0)
    # Python ignores SIGXFSZ, so at the 16 MB file-size limit the write raises EFBIG and the test fails.
    assert result.status == "failed" and not result.passed
    assert len(result.stderr) <= 2000


def test_cannot_write_outside_the_sandbox_tmp(run, tmp_path):
    targets = [tmp_path / "escaped.txt", Path(__file__).parent / f"escaped-{secrets.token_hex(4)}.txt"]
    program = (
        "def f(paths):\n"
        "    written = 0\n"
        "    for path in paths + ['/usr/escaped.txt', '/tmp/inside.txt']:\n"
        "        try:\n"
        "            with open(path, 'w') as fh:\n"
        "                fh.write('pwned')\n"
        "            written += 1\n"
        "        except OSError:\n"
        "            pass\n"
        "    return written\n"
    )
    paths = [str(t) for t in targets]
    # Only the sandbox's private /tmp is writable: exactly one write succeeds.
    result = run(program, [f"assert f({paths!r}) == 1", f"assert f({paths!r}) > 1"])
    assert (result.n_passed, result.n_total) == (1, 2)
    assert not any(t.exists() for t in targets)
    assert not Path("/usr/escaped.txt").exists()


def test_cannot_read_a_file_the_host_wrote(run, tmp_path):
    secret = secrets.token_hex(16)
    (tmp_path / "secret.txt").write_text(secret)
    program = (
        "def f(path):\n"
        "    try:\n"
        "        return open(path).read()\n"
        "    except OSError as exc:\n"
        "        return repr(exc)\n"
    )
    result = run(program, [f"assert f({str(tmp_path / 'secret.txt')!r}) == {secret!r}"])
    assert result.status == "failed" and not result.passed
    # The project and the host's system files are not even visible.
    visible = run("import os\n", ["assert os.path.exists('/work') or os.path.exists('/etc/passwd')"])
    assert visible.status == "failed"


def test_cannot_open_a_tcp_connection_to_the_host(run):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        program = (
            "import socket\n"
            "def f(port):\n"
            "    with socket.create_connection(('127.0.0.1', port), timeout=1) as s:\n"
            "        s.sendall(b'pwned')\n"
            "    return True\n"
        )
        result = run(program, [f"assert f({port})"])
        assert result.status == "failed" and not result.passed
        listener.setblocking(False)
        try:
            listener.accept()
            connected = True
        except BlockingIOError:
            connected = False
        assert not connected


def test_cannot_read_an_environment_secret(run, monkeypatch):
    secret = secrets.token_hex(16)
    monkeypatch.setenv("SCORE_TEST_SECRET", secret)
    program = (
        "import glob, os\n"
        "def leaked():\n"
        "    found = ' '.join(os.environ.values())\n"
        "    for path in glob.glob('/proc/*/environ'):\n"
        "        try:\n"
        "            found += open(path, 'rb').read().decode(errors='replace')\n"
        "        except OSError:\n"
        "            pass\n"
        "    return found\n"
    )
    result = run(program, [f"assert {secret!r} in leaked()"])
    assert result.status == "failed" and not result.passed


def test_cannot_kill_the_parent_or_any_host_process(run):
    sentinel = subprocess.Popen(["sleep", "60"])
    try:
        program = (
            "import os, signal\n"
            "def f(sentinel):\n"
            "    for pid in [os.getppid(), sentinel, 1] + list(range(2, 4096)):\n"
            "        if pid == os.getpid():\n"
            "            continue\n"
            "        try:\n"
            "            os.kill(pid, signal.SIGKILL)\n"
            "        except OSError:\n"
            "            pass\n"
            "    return True\n"
        )
        # kill(-1) signals every process the caller may signal: inside the sandbox, none (ESRCH) or only its own.
        result = run(
            program, [f"assert f({sentinel.pid})", "import os\ntry:\n    os.kill(-1, 9)\nexcept OSError:\n    pass"]
        )
        assert sentinel.poll() is None, "a host process was killed from inside the sandbox"
        assert (result.status, result.n_passed) == ("passed", 2)  # nothing it could reach stopped the run
    finally:
        sentinel.send_signal(signal.SIGKILL)
        sentinel.wait()
