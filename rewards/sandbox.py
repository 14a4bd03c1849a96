"""Run untrusted jobs (`_code_runner.py`) inside bubblewrap, with resource limits and a wall-clock kill.

The isolation comes from existing tools, not from Python tricks:
- bubblewrap (`bwrap`, Debian package `bubblewrap`): new PID, network, IPC and UTS namespaces (no network at all), a
  root made of read-only binds of /usr and the Python install only (the project, /work, /root and /home are absent),
  a private size-capped tmpfs /tmp, an empty environment, a new session (no terminal), killed with its parent.
- rlimits set by the runner before any untrusted code runs: address space, CPU seconds, file size, process count.
- The host kills the whole process group on wall-clock timeout; bwrap's death tears down the PID namespace with it.

Two ways to run bwrap ("profiles"), probed once with a real run:
- "drop" (the host user is root): for real root RLIMIT_NPROC is not enforced, so there is no user namespace; the
  sandbox keeps only CAP_SETUID/CAP_SETGID and the runner drops to a fresh unprivileged uid, which clears them.
- "userns" (any other user, or root where "drop" fails, e.g. a rootless container): bwrap's own user namespace.

Warm sandboxes (profile "drop" only): starting bwrap and an interpreter costs ~25 ms of CPU per program, more than
the program itself, so by default each worker thread keeps one sandbox running `_code_runner.py --serve`, which forks
a fresh child per program from an interpreter with the common stdlib modules already imported. Every program still
runs under its own uid with its own rlimits and wall-clock kill, everything that uid left running is killed after it,
and a sandbox whose program left files, IPC objects or processes behind is thrown away, not reused.

Without bwrap (`sandbox="rlimits"`, or `"auto"` when bwrap is missing) only the rlimits, an empty environment, a
private working directory and the process-group kill remain; a warning says so once. `sandbox="bwrap"` refuses to
run without the real sandbox.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import logging
import marshal
import math
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger(__name__)

SandboxMode = Literal["auto", "bwrap", "rlimits"]
# RLIMIT_NPROC counts every process of a uid host-wide, so each run gets its own unprivileged uid (round robin over
# a range no distribution or container tool assigns; runs 1000 apart never overlap in time).
_UID_BASE, _UID_SLOTS = 2_000_000_000, 1000
_run_counter = itertools.count()
_RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_code_runner.py")
RUNNER_IN_SANDBOX = "/runner.py"
PRIVATE_DIR = "/run/score"  # the warm server's root-only per-job files (same path in _code_runner.py)
_WARM_GRACE = 10.0  # seconds a warm sandbox may take beyond the job's timeout (its own start, the cleanup) to reply
_MAX_IDLE = 2 * (os.cpu_count() or 1)  # idle warm sandboxes kept (each is ~15 MB: bwrap and one interpreter)


class SandboxUnavailableError(RuntimeError):
    """bubblewrap was required (mode="bwrap") but cannot run on this machine."""


@dataclass(frozen=True)
class Limits:
    """Resource limits for one run. Memory is address space, so it also bounds what a fork bomb can allocate."""

    timeout: float = 5.0
    memory_mb: int = 1024
    max_procs: int = 8
    file_mb: int = 16
    tmpfs_mb: int = 64

    def __post_init__(self) -> None:
        for field in ("timeout", "memory_mb", "max_procs", "file_mb", "tmpfs_mb"):
            if not getattr(self, field) > 0:
                raise ValueError(f"{field} must be > 0, got {getattr(self, field)!r}")


@dataclass(frozen=True)
class Finished:
    """What the host saw of one run: the runner's verdict channel, the stderr tail and how the process ended."""

    channel: bytes
    stderr_tail: str
    returncode: int
    timed_out: bool
    sandboxed: bool


Profile = Literal["drop", "userns"]


@functools.cache
def bwrap_profile() -> Profile | None:
    """The bwrap profile that works on this machine (see the module docstring), or None: probed by a real run."""
    if shutil.which("bwrap") is None:
        return None
    candidates: list[Profile] = ["drop", "userns"] if os.geteuid() == 0 else ["userns"]
    probe = {"nonce": "probe", "program": "", "tests": ["pass"], "mode": "asserts", "entry_point": None}
    for profile in candidates:
        finished = run_runner(probe, Limits(timeout=30), profile=profile, warm=False)
        if b"probe done" in finished.channel:
            if profile == "userns" and os.geteuid() == 0:
                logger.warning("bwrap runs as root in a user namespace: the process-count limit is not enforced")
            return profile
        logger.warning("bwrap profile %r cannot start a sandbox here: %s", profile, finished.stderr_tail.strip())
    return None


@functools.cache
def _warn_unsandboxed(reason: str) -> None:
    logger.warning(
        "UNSANDBOXED CODE EXECUTION (%s): untrusted programs run with rlimits only; they can read host files and use "
        "the network%s. Install bubblewrap (apt-get install bubblewrap) or pass sandbox='bwrap' to refuse to run.",
        reason,
        "; as root, the process-count limit is not enforced either" if os.geteuid() == 0 else "",
    )


def resolve_mode(mode: SandboxMode) -> Profile | None:
    """The bwrap profile runs will use (None: rlimits only); raises SandboxUnavailableError for mode="bwrap" without
    a working bwrap."""
    if mode not in ("auto", "bwrap", "rlimits"):
        raise ValueError(f"sandbox must be 'auto', 'bwrap' or 'rlimits', got {mode!r}")
    if mode == "rlimits":
        _warn_unsandboxed("sandbox='rlimits'")
        return None
    profile = bwrap_profile()
    if profile is None and mode == "bwrap":
        raise SandboxUnavailableError(
            "sandbox='bwrap' but bwrap is missing or cannot start: apt-get install bubblewrap"
        )
    if profile is None:
        _warn_unsandboxed("bwrap not available")
    return profile


def _fresh_uid() -> int:
    return _UID_BASE + next(_run_counter) % _UID_SLOTS  # next() on a count is atomic under the GIL


def _python() -> tuple[str, str]:
    """(interpreter, install prefix): the base interpreter, not the venv, since the sandbox needs only the stdlib."""
    prefix = os.path.realpath(sys.base_prefix)
    exe = os.path.join(prefix, "bin", f"python{sys.version_info.major}.{sys.version_info.minor}")
    return (exe if os.path.exists(exe) else os.path.realpath(sys.executable)), prefix


@functools.cache
def _bwrap_args(limits: Limits, profile: Profile, serve: bool = False) -> tuple[str, ...]:
    # An absolute path: the sandbox is started with an empty environment, so PATH would not find /usr/local/bin.
    args = [shutil.which("bwrap") or "bwrap", "--die-with-parent", "--new-session", "--clearenv"]
    if profile == "drop":
        # No user namespace: the runner must become a real unprivileged uid for RLIMIT_NPROC to count.
        args += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-all"]
    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    _, prefix = _python()
    if prefix != "/usr" and not prefix.startswith("/usr/"):
        # bwrap creates missing parents as 0700 root; the runner, once unprivileged, must traverse them.
        parents = []
        parent = os.path.dirname(prefix)
        while parent != "/":
            parents.append(parent)
            parent = os.path.dirname(parent)
        for parent in reversed(parents):
            args += ["--perms", "0755", "--dir", parent]
        args += ["--ro-bind", prefix, prefix]
    args += ["--ro-bind", _RUNNER, RUNNER_IN_SANDBOX, "--proc", "/proc", "--dev", "/dev"]
    args += ["--perms", "1777", "--size", str(limits.tmpfs_mb << 20), "--tmpfs", "/tmp", "--chdir", "/tmp"]
    if serve:  # room for one job's channel and stderr files, each capped by RLIMIT_FSIZE
        args += ["--perms", "0700", "--size", str((2 * limits.file_mb + 1) << 20), "--tmpfs", PRIVATE_DIR]
    return tuple(args)


def _tail(fd: int, n_bytes: int = 2000) -> str:
    size = os.fstat(fd).st_size
    return os.pread(fd, n_bytes, max(0, size - n_bytes)).decode("utf-8", "replace")


def run_runner(job: dict, limits: Limits, *, profile: Profile | None, warm: bool | None = None) -> Finished:
    """Run `job` (we add the limits and the channel fd) in a sandbox of `profile` (None: no bwrap), killed after
    `limits.timeout` s. `warm` picks a warm sandbox (see the module docstring); None uses one whenever it works."""
    if warm is None:
        warm = profile == "drop" and _warm_works()
    if warm:
        if profile != "drop":
            raise ValueError(f"warm sandboxes need the 'drop' profile (root), got {profile!r}")
        return _run_warm(job, limits)
    return _run_once(job, limits, profile)


def _run_once(job: dict, limits: Limits, profile: Profile | None) -> Finished:
    """Start a sandbox and an interpreter for this one job.

    The runner's stdin (the job), stderr and verdict channel are unnamed host files (mode 0600, owned by us), so
    nothing has to be drained while it runs, output is capped by RLIMIT_FSIZE, and the program, once unprivileged,
    cannot reopen them to read the nonce.
    """
    with (
        tempfile.TemporaryFile() as job_file,
        tempfile.TemporaryFile() as stderr_file,
        tempfile.TemporaryFile() as channel_file,
        tempfile.TemporaryDirectory(prefix="score-code-") if profile is None else contextlib.nullcontext() as workdir,
    ):
        # The child gets a write-only descriptor of the channel; we read the file through our own.
        channel_w = os.open(f"/proc/self/fd/{channel_file.fileno()}", os.O_WRONLY | os.O_APPEND)
        try:
            marshal.dump({**job, "channel_fd": channel_w, **_runner_settings(limits, profile)}, job_file)
            job_file.seek(0)
            proc = subprocess.Popen(
                _command(limits, profile),
                stdin=job_file,
                stdout=subprocess.DEVNULL,
                stderr=stderr_file,
                pass_fds=(channel_w,),
                env={},
                cwd=workdir,
                start_new_session=True,  # its own process group, killed as a whole on timeout
            )
        finally:
            os.close(channel_w)
        timed_out = not _exits_within(proc, limits.timeout)
        if timed_out:
            _kill_group(proc.pid)
        returncode = proc.wait()
        if profile is None:
            _kill_group(proc.pid)  # children the program left behind (bwrap's PID namespace already ended them)
        channel = os.pread(channel_file.fileno(), 1 << 20, 0)
        return Finished(channel, _tail(stderr_file.fileno()), returncode, timed_out, profile is not None)


def _runner_settings(limits: Limits, profile: Profile | None) -> dict:
    return {
        # As root without a user namespace RLIMIT_NPROC is not enforced: the runner must drop to another uid.
        "drop_to_uid": _fresh_uid() if profile == "drop" else None,
        "limits": {
            "memory_mb": limits.memory_mb,
            "cpu_seconds": math.ceil(limits.timeout) + 1,
            "file_mb": limits.file_mb,
            "max_procs": limits.max_procs,
        },
    }


def _command(limits: Limits, profile: Profile | None) -> list[str]:
    python, _ = _python()
    if profile is not None:
        return [*_bwrap_args(limits, profile), python, "-I", "-S", "-B", RUNNER_IN_SANDBOX]
    return [python, "-I", "-S", "-B", _RUNNER]


def _exits_within(proc: subprocess.Popen, seconds: float) -> bool:
    """Wait for `proc` to exit, at most `seconds`. A pidfd wakes us the moment it exits: `Popen.wait(timeout)` polls
    with sleeps of up to 50 ms, which would dominate the ~30 ms a short program needs."""
    pidfd = os.pidfd_open(proc.pid)
    try:
        poller = select.poll()  # not select.select: it fails on descriptors above 1024, common in a trainer
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(seconds * 1000))
    finally:
        os.close(pidfd)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# Warm sandboxes (see the module docstring).


class _ServerFailed(RuntimeError):
    """A warm sandbox's server did not answer (it died or hung); the job may not have run."""


class _WarmSandbox:
    """One long-lived sandbox running `_code_runner.py --serve`; used by one thread at a time."""

    def __init__(self, limits: Limits) -> None:
        python, _ = _python()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - the server's stderr, closed in close()
        self._proc = subprocess.Popen(
            [*_bwrap_args(limits, "drop", serve=True), python, "-I", "-S", "-B", RUNNER_IN_SANDBOX, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={},
            start_new_session=True,
        )
        self.alive = True

    def run(self, job: dict, limits: Limits) -> Finished:
        data = marshal.dumps({**job, **_runner_settings(limits, "drop"), "timeout": limits.timeout})
        try:
            self._proc.stdin.write(struct.pack("<I", len(data)) + data)
            self._proc.stdin.flush()
            deadline = time.monotonic() + limits.timeout + _WARM_GRACE
            size = struct.unpack("<I", self._read(4, deadline))[0]
            reply = marshal.loads(self._read(size, deadline))
        except (OSError, EOFError, TimeoutError, ValueError) as exc:
            message = f"warm sandbox failed ({exc!r}): {_tail(self._log.fileno())}"
            self.close()
            raise _ServerFailed(message) from exc
        if not reply["reusable"]:
            self.close()
        return Finished(reply["channel"], reply["stderr_tail"], reply["returncode"], reply["timed_out"], True)

    def _read(self, n: int, deadline: float) -> bytes:
        fd, chunks, got = self._proc.stdout.fileno(), [], 0
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while got < n:
            if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                raise TimeoutError("no reply from the warm sandbox")
            chunk = os.read(fd, n - got)
            if not chunk:
                raise EOFError("the warm sandbox exited")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        if self.alive:
            self.alive = False
            _kill_group(self._proc.pid)
            self._proc.wait()
            for stream in (self._proc.stdin, self._proc.stdout, self._log):
                with contextlib.suppress(OSError):  # a dead server's stdin cannot be flushed
                    stream.close()


_idle: dict[tuple[int, int], list[_WarmSandbox]] = {}  # keyed by the sandbox-level limits (tmpfs sizes)
_idle_lock = threading.Lock()
# bwrap --die-with-parent ties a sandbox to the *thread* that started it (PR_SET_PDEATHSIG), and the callers' worker
# threads come and go, so warm sandboxes are started from this one thread, which lives as long as the process.
_starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warm-sandbox-starter")


def _run_warm(job: dict, limits: Limits) -> Finished:
    """Run `job` in an idle warm sandbox, or a new one. A program cannot stop its server (root, out of its reach), so
    a server that fails to answer failed for outside reasons: the job is retried once in a new sandbox."""
    key = (limits.tmpfs_mb, limits.file_mb)
    with _idle_lock:
        box = _idle[key].pop() if _idle.get(key) else None
    for attempt in range(2):
        box = box or _starter.submit(_WarmSandbox, limits).result()
        try:
            finished = box.run(job, limits)
        except _ServerFailed as failure:
            if attempt == 1:
                return Finished(b"", str(failure), -9, False, True)  # no "ready" line: status sandbox_error
            box = None
            continue
        if box.alive:
            with _idle_lock:
                if len(_idle.setdefault(key, [])) < _MAX_IDLE:
                    _idle[key].append(box)
                    box = None
            if box is not None:
                box.close()
        return finished
    raise AssertionError("unreachable")


def _forget_after_fork() -> None:
    # A forked child must not share the parent's sandboxes (or its dead starter thread).
    global _idle_lock, _starter
    _idle.clear()
    _idle_lock = threading.Lock()
    _starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warm-sandbox-starter")


os.register_at_fork(after_in_child=_forget_after_fork)


@atexit.register
def close_warm_sandboxes() -> None:
    """Stop the idle warm sandboxes (they also die with this process: bwrap --die-with-parent)."""
    with _idle_lock:
        boxes = [box for boxes in _idle.values() for box in boxes]
        _idle.clear()
    for box in boxes:
        box.close()


@functools.cache
def _warm_works() -> bool:
    probe = {"nonce": "probe", "program": "", "tests": ["pass"], "mode": "asserts", "entry_point": None}
    finished = _run_warm(probe, Limits(timeout=30))
    if b"probe done" not in finished.channel:
        logger.warning("warm sandboxes do not work here, starting one sandbox per program: %s", finished.stderr_tail)
    return b"probe done" in finished.channel
