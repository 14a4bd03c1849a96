"""Runs untrusted programs and their tests inside the sandbox; started by `rewards.sandbox`, never imported.

Two ways to start it:
- `runner.py`: one job, read from stdin, run in this process (any sandbox profile, or no sandbox at all).
- `runner.py --serve`: a warm server ("drop" profile only, see `rewards.sandbox`). It imports the stdlib modules that
  programs usually import once, then for every job it reads from stdin it forks a child that runs the job, waits for
  it (wall-clock limit), kills everything the job's uid left behind and replies on stdout. Each job runs under its own
  uid, so the cleanup kills exactly its processes. If a job leaves anything else behind (files in /tmp, SysV IPC
  objects) the server exits after replying, so the host starts a fresh sandbox instead of reusing a dirty one.

A job is a dict: nonce, program, tests, mode ("check" or "asserts"), entry_point, limits, drop_to_uid, channel_fd.
The verdict channel is a write-only descriptor; every line starts with the job's random nonce (the host ignores any
line without it): "ready" once set up, "test I pass|fail|memory" per test, "done" after the last test.
stdout and stdin point at /dev/null; stderr is a size-capped file whose tail the host reports.

Why the verdict cannot be forged by the common tricks a model finds under optimization pressure:
- `sys.exit(0)`, `os._exit(0)`, an atexit hook or a crash before/while the tests run leave no "done" line: no pass.
- Everything the runner calls after the program starts (exec, compile, os.write, the exception classes) is bound to a
  local variable of `run_job` first, so monkeypatching `builtins` or this module cannot change what the runner does.
- Test code runs in its own namespace whose builtins are a private copy taken before the program ran, so a program that
  rebinds `abs`, `all`, `len`, `isinstance`... in `builtins` only fools itself.
Known limit (documented in rewards/code.py): the program runs in this same process, so deliberate introspection
(`gc`, frame walking) or returning objects whose `__eq__` always says True can still defeat in-process testing.
"""

import builtins
import marshal
import os
import resource
import select
import signal
import struct
import sys

# Imported once by the warm server so that forked jobs start with them loaded (not `random`: forked copies would
# share one seed).
PRELOAD = ("typing", "collections", "re", "math", "itertools", "functools", "heapq", "bisect", "string", "operator")
PRIVATE_DIR = "/run/score"  # root-only tmpfs for the server's per-job files (see rewards.sandbox)


def run_job(job: dict) -> None:
    """Run one job in this process and end it with `os._exit`; never returns."""
    # Bind everything we use later before untrusted code can rebind it.
    _exec, _compile, _dict, _range = builtins.exec, builtins.compile, builtins.dict, builtins.range
    _str, _repr, _type = builtins.str, builtins.repr, builtins.type
    _BaseException, _MemoryError = builtins.BaseException, builtins.MemoryError
    _write, _exit = os.write, os._exit
    pristine_builtins = _dict(builtins.__dict__)
    nonce, channel = job.pop("nonce").encode(), job["channel_fd"]

    def report(*words: str) -> None:
        _write(channel, nonce + b" " + " ".join(words).encode() + b"\n")

    def log(message: str) -> None:
        try:
            _write(2, (message[-2000:] + "\n").encode("utf-8", "replace"))
        except _BaseException:
            pass

    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives for the whole process
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115

    limits = job.pop("limits")
    for name, value in [
        ("RLIMIT_AS", limits["memory_mb"] << 20),
        ("RLIMIT_CPU", limits["cpu_seconds"]),
        ("RLIMIT_FSIZE", limits["file_mb"] << 20),
        ("RLIMIT_NPROC", limits["max_procs"]),
        ("RLIMIT_CORE", 0),
    ]:
        resource.setrlimit(getattr(resource, name), (value, value))
    # As root without a user namespace RLIMIT_NPROC is not enforced, so become an unprivileged uid (clears all caps).
    if job["drop_to_uid"] is not None:
        _become(job["drop_to_uid"])
    tests, n_tests = job["tests"], len(job["tests"])
    report("ready")

    program_globals = {"__name__": "__candidate__", "__builtins__": builtins}
    try:
        _exec(_compile(job["program"], "<program>", "exec"), program_globals)
        program_ok = True
    except _MemoryError:
        report("memory")
        program_ok = False
    except _BaseException as exc:  # SystemExit and KeyboardInterrupt too: the program never gets to end the run
        try:
            log(f"program raised {_type(exc).__name__}: {_repr(exc)[:500]}")
        except _BaseException:
            log("program raised an exception")
        program_ok = False

    for index in _range(n_tests):
        if not program_ok:
            report("test", _str(index), "fail")
            continue
        # A fresh namespace per test with the program's names and untouched builtins.
        test_globals = _dict(program_globals)
        test_globals["__builtins__"] = _dict(pristine_builtins)
        verdict = "pass"
        try:
            _exec(_compile(tests[index], f"<test {index}>", "exec"), test_globals)
            if job["mode"] == "check":
                test_globals["check"](program_globals[job["entry_point"]])
        except _MemoryError:
            verdict = "memory"
        except _BaseException as exc:
            verdict = "fail"
            try:
                log(f"test {index} failed: {_type(exc).__name__}: {_repr(exc)[:300]}")
            except _BaseException:
                log(f"test {index} failed")
        report("test", _str(index), verdict)
    report("done")
    # Skip interpreter shutdown: no atexit hooks, finalizers or buffered writes of the program run after the verdict.
    _exit(0)


def _become(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def serve() -> None:
    """The warm server loop (see the module docstring). Messages both ways: 4-byte length, then a marshal dump."""
    for name in PRELOAD:
        __import__(name)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = stdin.read(4)
        if len(header) < 4:
            return  # the host closed the pipe
        job = marshal.loads(stdin.read(struct.unpack("<I", header)[0]))
        reply = _serve_one(job)
        data = marshal.dumps(reply)
        stdout.write(struct.pack("<I", len(data)) + data)
        stdout.flush()
        if not reply["reusable"]:
            return


def _serve_one(job: dict) -> dict:
    # Per-job files in a root-only directory; the child gets write-only descriptors, so it cannot read the nonce back.
    channel_rw = os.open(PRIVATE_DIR, os.O_TMPFILE | os.O_RDWR, 0o600)
    stderr_rw = os.open(PRIVATE_DIR, os.O_TMPFILE | os.O_RDWR, 0o600)
    channel_w = os.open(f"/proc/self/fd/{channel_rw}", os.O_WRONLY | os.O_APPEND)
    stderr_w = os.open(f"/proc/self/fd/{stderr_rw}", os.O_WRONLY | os.O_APPEND)
    timeout, uid = job.pop("timeout"), job["drop_to_uid"]
    pid = os.fork()
    if pid == 0:  # the job: keep only stderr and the channel (as fd 3), then run it
        try:
            os.dup2(stderr_w, 2)
            os.dup2(channel_w, 3)
            os.closerange(4, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
            run_job({**job, "channel_fd": 3})
        finally:
            os._exit(70)
    os.close(channel_w)
    os.close(stderr_w)
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    timed_out = not poller.poll(timeout * 1000)
    os.close(pidfd)
    _kill_uid(uid)  # the job and anything it started, timed out or not
    _, status = os.waitpid(pid, 0)
    size = os.fstat(stderr_rw).st_size
    reply = {
        "channel": os.pread(channel_rw, 1 << 20, 0),
        "stderr_tail": os.pread(stderr_rw, 2000, max(0, size - 2000)).decode("utf-8", "replace"),
        "returncode": os.waitstatus_to_exitcode(status),
        "timed_out": timed_out,
        "reusable": _clean(),
    }
    os.close(channel_rw)
    os.close(stderr_rw)
    return reply


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid` in this PID namespace: kill(-1) from a helper running as that uid."""
    helper = os.fork()
    if helper == 0:
        try:
            _become(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(helper, 0)


def _clean() -> bool:
    """True when the last job left nothing another job could see: no file in /tmp or /dev/shm, no SysV IPC object,
    no process but the namespace's init and this server (killed ones may linger a moment; then we just restart)."""
    if os.listdir("/tmp") or (os.path.isdir("/dev/shm") and os.listdir("/dev/shm")):
        return False
    for table in ("shm", "sem", "msg"):
        try:
            with open(f"/proc/sysvipc/{table}") as f:
                if len(f.readlines()) > 1:  # a header line, then one line per object
                    return False
        except FileNotFoundError:  # a kernel without SysV IPC
            pass
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit()) == sorted({1, os.getpid()})


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        run_job(marshal.loads(sys.stdin.buffer.read()))
