"""Run code jobs (`_code_runner.py`) inside bubblewrap, with resource limits, a syscall filter and a wall-clock kill.

The isolation comes from existing tools, not from Python tricks:
- bubblewrap (`bwrap`, Debian package `bubblewrap`): new PID, network, IPC and UTS namespaces (no network at all), a
  root made of read-only binds of /usr and the Python install only (the project, /work, /root and /home are absent),
  private size-capped tmpfs mounts on /tmp and /dev/shm (so multiprocessing works), an empty environment, a new
  session (no terminal), killed with its parent.
- a seccomp filter compiled by libseccomp (`rewards.syscall_filter`): no keyrings, no SysV or POSIX IPC, no memfd,
  no ptrace, no bpf, userfaultfd or perf events, no new namespaces, no sockets but Unix ones.
- rlimits set before any untrusted code runs: address space, CPU seconds, file size, tasks (processes and threads).
- uids no other job on this host holds: the program gets one per job, the tests' process one per sandbox, leased
  through an abstract Unix socket whose name only one process on the host can hold, so RLIMIT_NPROC counts this job
  alone and two scoring processes never share (or starve) a uid.
- the runner kills everything the program started when the tests are done (it is the program's child subreaper), and
  the host kills the whole sandbox on a wall-clock timeout.

Two ways to run bwrap ("profiles"), probed once with a real job:
- "drop" (the host user is root): no user namespace; the sandbox keeps only CAP_SETUID/CAP_SETGID (to drop) and
  CAP_KILL (to end the job's processes, all in its PID namespace); the runner's children drop to the leased uids,
  which clears them.
- "userns" (any other user, or root where "drop" fails, e.g. a rootless container): bwrap's own user namespace; the
  program and the tests share the one mapped uid, the tests' process is not dumpable, and the filter forbids ptrace.

Warm sandboxes (profile "drop" only): starting bwrap and an interpreter costs ~25 ms of CPU per job, more than most
programs, so by default each worker thread keeps one sandbox running `_code_runner.py --serve`, which forks each
job's program process from a zygote that never saw any job, and keeps its tests' process across jobs. A sandbox whose
job left files, IPC objects or processes behind is thrown away, not reused.

Without bwrap (`sandbox="rlimits"`, or `"auto"` when bwrap is missing) the same runner runs directly on the host:
the tests in their own process, the leased uids, the filter, the rlimits and the subreaper kill all remain, and as
root the runner still gives the job its own network, IPC and mount namespaces with private capped /tmp, /var/tmp and
/dev/shm. What is lost: the read-only root (the program can read world-readable host files) and, when the host user
is not root, every uid-based protection (the program then runs as that user). A warning says so once;
`sandbox="bwrap"` refuses to run without bwrap.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import dataclasses
import functools
import logging
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from rewards import _code_wire as wire
from rewards import syscall_filter
from rewards.cgroups import Cgroup

logger = logging.getLogger(__name__)

SandboxMode = Literal["auto", "bwrap", "rlimits"]
Profile = Literal["drop", "userns"]

# Leased uids: slot k gives BASE + 2k (the program) and BASE + 2k + 1 (the tests); a range no distribution or container
# tool assigns. The lease is an abstract Unix socket named after the slot (freed by the kernel if this process dies).
_UID_BASE, _UID_SLOTS = 2_000_000_000, 1 << 20
_REWARDS_DIR = os.path.dirname(os.path.abspath(__file__))
_RUNNER = os.path.join(_REWARDS_DIR, "_code_runner.py")
_REWARDS_IN_SANDBOX = "/score/rewards"
_WARM_GRACE = 10.0  # seconds a sandbox may take beyond the job's timeout (its own start, the cleanup) to reply
_SANDBOX_MB = 128  # memory for the sandbox's own processes (runner, zygote, tests), beyond the program's
_MAX_IDLE = 2 * (os.cpu_count() or 1)  # idle warm sandboxes kept (each is ~25 MB: bwrap and two interpreters)


class SandboxUnavailableError(RuntimeError):
    """bubblewrap was required (mode="bwrap") but cannot run on this machine."""


@dataclass(frozen=True)
class Limits:
    """Resource limits for one job. `memory_mb` is the address space of each of the program's processes;
    `max_procs` counts its processes and threads together; /tmp and /dev/shm hold `tmpfs_mb` each."""

    timeout: float = 5.0
    memory_mb: int = 1024
    max_procs: int = 64
    file_mb: int = 16
    tmpfs_mb: int = 64

    def __post_init__(self) -> None:
        for field in ("timeout", "memory_mb", "max_procs", "file_mb", "tmpfs_mb"):
            if not getattr(self, field) > 0:
                raise ValueError(f"{field} must be > 0, got {getattr(self, field)!r}")


@dataclass(frozen=True)
class Reply:
    """What came back from one job: the tests' verdict frames, how the program's process ended, its stderr tail."""

    frames: list
    exit_code: int | None  # the program's process: exit status, or minus the signal; None if unknown
    timed_out: bool
    stderr_tail: str
    error: str = ""  # the sandbox itself failed (not the program)
    oom_killed: bool = False  # the kernel killed a process of the job for the cgroup's memory limit


@functools.cache
def bwrap_profile() -> Profile | None:
    """The bwrap profile that works on this machine (see the module docstring), or None: probed by a real job."""
    if shutil.which("bwrap") is None:
        return None
    candidates: list[Profile] = ["drop", "userns"] if os.geteuid() == 0 else ["userns"]
    for profile in candidates:
        reply = run_job(_PROBE, Limits(timeout=30), profile=profile, warm=False)
        if _probe_ok(reply):
            return profile
        logger.warning("bwrap profile %r cannot start a sandbox here: %s", profile, reply.error or reply.stderr_tail)
    return None


_PROBE = {"program": "def f():\n    return 1\n", "tests": ["assert f() == 1"], "mode": "asserts",
          "entry_point": None, "setup": ""}


def _probe_ok(reply: Reply) -> bool:
    return {"test": 0, "verdict": "pass", "message": ""} in reply.frames and {"done": True} in reply.frames


@functools.cache
def _warn_unsandboxed(reason: str) -> None:
    if os.geteuid() == 0:
        lost = "programs see the host's root file system (world-readable files can be read)"
    else:
        lost = "programs get no namespaces and no uid of their own: they run as this user and can signal its processes"
    logger.warning(
        "CODE RUNS WITHOUT BUBBLEWRAP (%s): the tests still run apart from the program, under the syscall filter and "
        "rlimits; but %s. Install bubblewrap (apt-get install bubblewrap) or pass sandbox='bwrap' to "
        "refuse to run.",
        reason,
        lost,
    )


@functools.cache
def _warn_unfiltered() -> None:
    logger.warning("NO SYSCALL FILTER: libseccomp or its Python binding is missing (pip install pyseccomp)")


def resolve_mode(mode: SandboxMode) -> Profile | None:
    """The bwrap profile jobs will use (None: no bwrap); raises SandboxUnavailableError for mode="bwrap" without
    a working bwrap or without the syscall filter."""
    if mode not in ("auto", "bwrap", "rlimits"):
        raise ValueError(f"sandbox must be 'auto', 'bwrap' or 'rlimits', got {mode!r}")
    if not syscall_filter.available():
        if mode == "bwrap":
            raise SandboxUnavailableError("sandbox='bwrap' needs the syscall filter: pip install pyseccomp")
        _warn_unfiltered()
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


def run_job(job: dict, limits: Limits, *, profile: Profile | None, warm: bool | None = None) -> Reply:
    """Run `job` (program, tests, mode, entry_point, setup) in a sandbox of `profile` (None: no bwrap), killed after
    `limits.timeout` s. `warm` picks a warm sandbox (see the module docstring); None uses one whenever it works."""
    if warm is None:
        warm = profile == "drop" and _warm_works()
    if warm and profile != "drop":
        raise ValueError(f"warm sandboxes need the 'drop' profile (root), got {profile!r}")
    with _uid_lease(profile) as uids:
        job = {**job, **_settings(limits, uids)}
        if warm:
            return _run_warm(job, limits)
        return _run_once(job, limits, profile)


def _settings(limits: Limits, uids: tuple[int, int] | None) -> dict:
    return {
        "timeout": limits.timeout,
        "uids": list(uids) if uids else None,
        "seccomp": base64.b64encode(syscall_filter.compiled()).decode() if syscall_filter.available() else None,
        "workdir": "/tmp",
        "limits": {
            "memory_mb": limits.memory_mb,
            "cpu_seconds": int(limits.timeout) + 2,
            "file_mb": limits.file_mb,
            "max_procs": limits.max_procs,
        },
    }


@contextlib.contextmanager
def _uid_lease(profile: Profile | None):
    """Two uids no other job on this host holds (as root without a user namespace; None otherwise)."""
    if profile == "userns" or os.geteuid() != 0:
        yield None
        return
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        while True:
            slot = random.randrange(_UID_SLOTS)
            try:
                lock.bind(f"\0score-sandbox-uid-{slot}")
                break
            except OSError:  # held by another job: try another slot
                continue
        yield _UID_BASE + 2 * slot, _UID_BASE + 2 * slot + 1
    finally:
        lock.close()


def _python() -> tuple[str, str]:
    """(interpreter, install prefix): the base interpreter, not the venv, since the sandbox needs only the stdlib."""
    prefix = os.path.realpath(sys.base_prefix)
    exe = os.path.join(prefix, "bin", f"python{sys.version_info.major}.{sys.version_info.minor}")
    return (exe if os.path.exists(exe) else os.path.realpath(sys.executable)), prefix


@functools.cache
def _bwrap_command(limits: Limits, profile: Profile, serve: bool) -> tuple[str, ...]:
    # An absolute path: the sandbox is started with an empty environment, so PATH would not find /usr/local/bin.
    args = [shutil.which("bwrap") or "bwrap", "--die-with-parent", "--new-session", "--clearenv"]
    if profile == "drop":
        # No user namespace: the runner's children must become real unprivileged uids for RLIMIT_NPROC to count.
        args += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_KILL"]
    else:
        args += ["--unshare-all"]
    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    python, prefix = _python()
    if prefix != "/usr" and not prefix.startswith("/usr/"):
        args += _parents_traversable(prefix) + ["--ro-bind", prefix, prefix]
    args += ["--dir", "/score", "--ro-bind", _REWARDS_DIR, _REWARDS_IN_SANDBOX, "--proc", "/proc", "--dev", "/dev"]
    for shared in ("/tmp", "/dev/shm"):  # private, writable by every uid, capped
        args += ["--perms", "1777", "--size", str(limits.tmpfs_mb << 20), "--tmpfs", shared]
    args += ["--chdir", "/tmp", python, "-I", "-S", "-B", f"{_REWARDS_IN_SANDBOX}/_code_runner.py"]
    return (*args, "--serve" if serve else "--once")


def _parents_traversable(path: str) -> list[str]:
    # bwrap creates missing parents as 0700 root; the unprivileged uids must traverse them.
    parents, parent = [], os.path.dirname(path)
    while parent != "/":
        parents.append(parent)
        parent = os.path.dirname(parent)
    return [arg for parent in reversed(parents) for arg in ("--perms", "0755", "--dir", parent)]


def _cgroup(limits: Limits) -> Cgroup | None:
    """The sandbox's own cgroup where the host allows one: the job's memory in total (`memory_mb`, the capped tmpfs
    mounts and room for the sandbox's own processes), and its tasks."""
    return Cgroup.create((limits.memory_mb + 2 * limits.tmpfs_mb + _SANDBOX_MB) << 20, limits.max_procs + 16)


def _run_once(job: dict, limits: Limits, profile: Profile | None) -> Reply:
    """A fresh sandbox (or, with profile None, a plain process) for this one job."""
    if profile is not None:
        return _exchange(list(_bwrap_command(limits, profile, serve=False)), job, limits, env={}, cwd=None)
    # As root the runner gives the job its own network, IPC and /tmp (see _own_namespaces in the runner); otherwise
    # the job works in a private directory of the host's /tmp.
    uids = job["uids"]
    with tempfile.TemporaryDirectory(prefix="score-code-") as workdir:
        if uids:
            os.chown(workdir, uids[0], uids[0])
        os.chmod(workdir, 0o700)
        python, _ = _python()
        return _exchange([python, "-I", "-S", "-B", _RUNNER, "--once", "--tmpfs-mb", str(limits.tmpfs_mb)],
                         {**job, "workdir": workdir}, limits, env={"TMPDIR": workdir}, cwd=workdir)


def _exchange(command: list[str], job: dict, limits: Limits, env: dict, cwd: str | None) -> Reply:
    cgroup = _cgroup(limits)
    proc = subprocess.Popen(cgroup.wrap(command) if cgroup else command, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
                            start_new_session=True)  # its own process group, killed as a whole on timeout
    try:
        try:
            wire.send(proc.stdin.fileno(), job)
            proc.stdin.close()
            reply = _read_frame(proc.stdout.fileno(), time.monotonic() + limits.timeout + _WARM_GRACE)
        except (OSError, EOFError, TimeoutError, wire.WireError) as exc:
            _kill_group(proc.pid)
            proc.wait()
            return Reply([], None, isinstance(exc, TimeoutError), "", f"sandbox failed ({exc!r}): "
                         + proc.stderr.read(4000).decode("utf-8", "replace"))
        return _reply(reply, oom_killed=bool(cgroup and cgroup.oom_kills()))
    finally:
        _kill_group(proc.pid)
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()
        if cgroup:
            cgroup.remove()


def _reply(data: object, oom_killed: bool) -> Reply:
    if type(data) is not dict:
        return Reply([], None, False, "", "malformed reply from the sandbox")
    if data.get("error"):
        return Reply([], None, False, "", str(data["error"]))
    exit_code = data.get("exit")
    return Reply(list(data.get("frames") or []), exit_code if type(exit_code) is int else None,
                 bool(data.get("timed_out")), str(data.get("stderr") or ""), oom_killed=oom_killed)


def _read_frame(fd: int, deadline: float) -> object:
    def read(n: int) -> bytes:
        chunks, got = [], 0
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while got < n:
            if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                raise TimeoutError("no reply from the sandbox")
            chunk = os.read(fd, n - got)
            if not chunk:
                raise EOFError("the sandbox exited without a reply")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    size = int.from_bytes(read(4), "big")
    if size > wire.MAX_FRAME:
        raise wire.WireError("oversized reply")
    return wire.loads(read(size))


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
        # The tests' process lives as long as the sandbox (see Tester in the runner): its uid is leased for as long.
        self._lease = contextlib.ExitStack()
        self.tester_uid = self._lease.enter_context(_uid_lease("drop"))[1]
        self._log = tempfile.TemporaryFile()
        self._cgroup = _cgroup(limits)
        command = _bwrap_command(limits, "drop", serve=True)
        self._proc = subprocess.Popen(
            self._cgroup.wrap(command) if self._cgroup else command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={},
            start_new_session=True,
        )
        self.alive = True

    def run(self, job: dict, limits: Limits) -> Reply:
        oom_kills = self._cgroup.oom_kills() if self._cgroup else 0
        job = {**job, "uids": [job["uids"][0], self.tester_uid]}
        try:
            wire.send(self._proc.stdin.fileno(), job)
            data = _read_frame(self._proc.stdout.fileno(), time.monotonic() + limits.timeout + _WARM_GRACE)
        except (OSError, EOFError, TimeoutError, wire.WireError) as exc:
            self._log.seek(0)
            message = f"warm sandbox failed ({exc!r}): {self._log.read()[-2000:].decode('utf-8', 'replace')}"
            self.close()
            raise _ServerFailed(message) from exc
        oom_killed = bool(self._cgroup and self._cgroup.oom_kills() > oom_kills)
        if type(data) is not dict or not data.get("reusable") or oom_killed:
            self.close()
        return _reply(data, oom_killed)

    def close(self) -> None:
        if self.alive:
            self.alive = False
            _kill_group(self._proc.pid)
            self._proc.wait()
            for stream in (self._proc.stdin, self._proc.stdout, self._log):
                with contextlib.suppress(OSError):  # a dead server's stdin cannot be flushed
                    stream.close()
            if self._cgroup:
                self._cgroup.remove()
            self._lease.close()


_idle: dict[Limits, list[_WarmSandbox]] = {}  # keyed by the limits, but for the timeout
_idle_lock = threading.Lock()
# bwrap --die-with-parent ties a sandbox to the *thread* that started it (PR_SET_PDEATHSIG), and the callers' worker
# threads come and go, so warm sandboxes are started from this one thread, which lives as long as the process.
_starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warm-sandbox-starter")


def _run_warm(job: dict, limits: Limits) -> Reply:
    """Run `job` in an idle warm sandbox, or a new one. A program cannot stop its server (root, out of its reach), so
    a server that fails to answer failed for outside reasons: the job is retried once in a new sandbox."""
    key = dataclasses.replace(limits, timeout=1.0)  # the sandbox (its mounts, its cgroup) fits any timeout
    with _idle_lock:
        box = _idle[key].pop() if _idle.get(key) else None
    for attempt in range(2):
        box = box or _starter.submit(_WarmSandbox, limits).result()
        try:
            reply = box.run(job, limits)
        except _ServerFailed as failure:
            if attempt == 1:
                return Reply([], None, False, "", str(failure))
            box = None
            continue
        if box.alive:
            with _idle_lock:
                if len(_idle.setdefault(key, [])) < _MAX_IDLE:
                    _idle[key].append(box)
                    box = None
            if box is not None:
                box.close()
        return reply
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
    with _uid_lease("drop") as uids:
        reply = _run_warm({**_PROBE, **_settings(Limits(timeout=30), uids)}, Limits(timeout=30))
    if not _probe_ok(reply):
        logger.warning("warm sandboxes do not work here, starting one sandbox per job: %s",
                       reply.error or reply.stderr_tail)
    return _probe_ok(reply)
