"""The supervisor of code jobs inside the sandbox; started by `rewards.sandbox` as a script, never imported by it.

    python -I -S -B _code_runner.py --serve    a warm sandbox: jobs one after another, while each leaves it clean
    python -I -S -B _code_runner.py --once     one job, then exit (a fresh sandbox, or the no-bwrap fallback)

Jobs and replies are length-prefixed JSON frames (`_code_wire`) on stdin and stdout. For each job:
- a **candidate** process runs the untrusted program (`_code_candidate.py`). It is forked by a zygote: a process forked
  at start-up, before any job arrived, so the candidate's memory holds no test, no other job's program and no verdict;
  the candidate reads its own program from a file descriptor after the fork. It gets the job's unprivileged uid, its
  rlimits and the syscall filter before reading the program.
- a **tester** process runs the trusted tests (`_code_tester.py`) under a uid of its own, not dumpable, under the
  filter. It talks to the candidate through a socket that carries only plain data, and alone holds the socket on
  which the verdict comes back. It is forked from this supervisor, which never runs a program, and is kept for the
  next job as long as each job's tests finish before the deadline (forking it afresh cost as much as the job).
- when the tester is done, or the wall-clock deadline passes, the candidate and every process it started are killed:
  this process is a child subreaper, so everything the program forked ends up as its child, and is killed and reaped
  until none is left. A warm sandbox then checks that the job left nothing behind (files in /tmp or /dev/shm, SysV IPC
  objects, processes) and otherwise exits after replying, so the host starts a clean one.
"""

from __future__ import annotations

import functools
import gc
import os
import resource
import select
import signal
import socket
import sys
import time

if __name__ == "__main__":  # started as a script with -I: make `rewards` (this file's package) importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rewards import _code_wire as wire

# A warm sandbox imports these once, before the zygote forks, so that every job starts with them loaded (not `random`,
# nor modules that import it such as tempfile: forked copies would share one seed).
PRELOAD = ("typing", "collections", "re", "math", "itertools", "functools", "heapq", "bisect", "string", "operator")
_STDLIB_FD = 9  # see _reach_stdlib
_REPLY_GRACE = 5.0  # seconds the zygote may take to report the candidate's end after it was killed
_VERDICT_BYTES = 8 << 20  # the most verdict data read from one tester
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, PR_SET_CHILD_SUBREAPER = 4, 38, 22, 36
SECCOMP_MODE_FILTER = 2


def main(argv: list[str]) -> None:
    once = argv[:1] == ["--once"]
    if argv[:1] not in (["--once"], ["--serve"]) or len(argv) not in (1, 3) or argv[1:2] not in ([], ["--tmpfs-mb"]):
        sys.exit("usage: _code_runner.py --serve | --once [--tmpfs-mb N]")
    for name in PRELOAD if not once else ():
        __import__(name)
    import ctypes
    import fcntl

    from rewards import _code_candidate, _code_tester

    if len(argv) == 3:
        _own_namespaces(int(argv[2]))
    _reach_stdlib()

    # What exists now is shared by every fork: keep the collector from touching (and so copying) it in the children.
    gc.freeze()
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_DUMPABLE, 0)  # a program running under our uid (no root here) cannot open our /proc files
    zygote_sock, mine = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    zygote = os.fork()
    if zygote == 0:
        mine.close()
        _zygote(zygote_sock)
    zygote_sock.close()
    tester = Tester()
    while True:
        try:
            job = wire.recv(0)
        except EOFError:
            return  # the host closed the pipe
        try:
            reply = run_job(job, mine, zygote, tester)
        except Exception as exc:  # our own failure (not the program's): report it, and let the host start afresh
            reply = {"error": f"{type(exc).__name__}: {exc}", "reusable": False}
        wire.send(1, reply)
        if once or not reply["reusable"]:
            return


def _reach_stdlib() -> None:
    """Let the job's uids import the standard library even where its install is not readable by them.

    Without bubblewrap, an interpreter under a private home (pyenv in /root) is out of reach of any other uid, unless
    _expose_interpreter could mount it into reach. A descriptor of its install directory, opened now as root and
    inherited by every child, is a path into it that does not cross the private parent: sys.path goes through
    /proc/self/fd/9. (New interpreters the program starts still cannot run there.)
    """
    prefix = os.path.realpath(sys.prefix)
    if os.geteuid() != 0 or _world_traversable(prefix):
        return
    fd = os.open(prefix, os.O_PATH | os.O_DIRECTORY)
    os.dup2(fd, _STDLIB_FD)
    os.close(fd)

    def via_fd(path: str) -> str:
        return f"/proc/self/fd/{_STDLIB_FD}{path[len(prefix):]}" if path.startswith(prefix + "/") else path

    sys.path[:] = [via_fd(path) for path in sys.path]
    for module in list(sys.modules.values()):  # packages already imported find their submodules by __path__
        if isinstance(getattr(module, "__path__", None), list):
            module.__path__[:] = [via_fd(path) for path in module.__path__]


_PRIVATE_MOUNTS = False  # set when _own_namespaces gave this process tree its own /tmp


def _own_namespaces(tmpfs_mb: int) -> None:
    """Without bubblewrap but as root, still give the job what bubblewrap would: its own network (none; not even the
    host's abstract Unix sockets), its own SysV/POSIX IPC, and its own size-capped /tmp, /var/tmp and /dev/shm, so
    nothing it writes there outlives it. Where the kernel refuses (no privilege), the job runs without them."""
    import ctypes

    global _PRIVATE_MOUNTS
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x00020000 | 0x40000000 | 0x08000000) != 0:  # CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC
        return
    ms_nosuid, ms_nodev, ms_rec, ms_private = 2, 4, 1 << 14, 1 << 18
    if libc.mount(b"none", b"/", None, ms_rec | ms_private, None) != 0:  # our mounts stay ours
        return
    options = f"size={tmpfs_mb}m,mode=1777".encode()
    for directory in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(directory) and libc.mount(b"tmpfs", directory.encode(), b"tmpfs", ms_nosuid | ms_nodev,
                                                   options) != 0:
            return
    if os.path.isdir("/dev/mqueue"):  # the host's POSIX message queues, reachable by open(): hide them
        libc.mount(b"tmpfs", b"/dev/mqueue", b"tmpfs", ms_nosuid | ms_nodev, b"size=1m,mode=0755")
    _PRIVATE_MOUNTS = True
    _expose_interpreter(libc)


def _expose_interpreter(libc) -> None:
    """Let the job's uids run the interpreter (multiprocessing starts new ones) where it lives under a private home
    (pyenv in /root): cover that home with an empty directory holding only the interpreter's install. The rest of the
    home is hidden from the job as a bonus."""
    prefix = os.path.realpath(sys.prefix)
    parts = prefix.strip("/").split("/")
    closed = next((p for p in ("/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1))
                   if not os.stat(p).st_mode & 0o001), None)
    if closed is None or closed == prefix:
        return
    ms_bind, ms_rec, ms_nosuid, ms_nodev, mnt_detach = 4096, 1 << 14, 2, 4, 2
    stage = "/tmp/.score-python"  # in our own /tmp, gone again below
    os.mkdir(stage, 0o700)
    if libc.mount(prefix.encode(), stage.encode(), None, ms_bind | ms_rec, None) != 0:
        os.rmdir(stage)
        return
    try:
        if libc.mount(b"tmpfs", closed.encode(), b"tmpfs", ms_nosuid | ms_nodev, b"size=1m,mode=0755") != 0:
            return
        os.makedirs(prefix, mode=0o755, exist_ok=True)
        libc.mount(stage.encode(), prefix.encode(), None, ms_bind | ms_rec, None)
    finally:
        libc.umount2(stage.encode(), mnt_detach)
        os.rmdir(stage)


def _world_traversable(path: str) -> bool:
    while path != "/":
        if not os.stat(path).st_mode & 0o001:
            return False
        path = os.path.dirname(path)
    return True


def run_job(job: dict, zygote_sock: socket.socket, zygote: int, tester: Tester) -> dict:
    """Run one job (see the module docstring) and return the reply for the host."""
    deadline = _now() + job["timeout"]
    program_rw = _memory_file("program", job["program"].encode("utf-8", "surrogatepass"))
    stderr_rw = _memory_file("stderr", b"")
    tester_end, candidate_end = socket.socketpair()
    uids = job.get("uids") or [None, None]
    try:
        # The tests first (they wait for the program's greeting), then the program's process.
        tester.start_job(job, uids[1], tester_end)
        tester_end.close()
        # The candidate gets its own descriptors: a read-only program file and a write-only stderr (it cannot read
        # back what others wrote there, nor reopen them: they have no name).
        program_ro = os.open(f"/proc/self/fd/{program_rw}", os.O_RDONLY)
        stderr_w = os.open(f"/proc/self/fd/{stderr_rw}", os.O_WRONLY | os.O_APPEND)
        settings = {key: job[key] for key in ("mode", "limits", "seccomp")}
        settings["workdir"] = "/tmp" if _PRIVATE_MOUNTS else job["workdir"]
        if settings["seccomp"] is not None:
            _filter_program(wire.decode({"b": settings["seccomp"]}))
        socket.send_fds(zygote_sock, [wire.dumps({**settings, "uid": uids[0]})],
                        [program_ro, candidate_end.fileno(), stderr_w])
        for fd in (program_ro, stderr_w):
            os.close(fd)
        candidate_end.close()
        pidfd = _receive_pidfd(zygote_sock)
        frames, timed_out = tester.verdict(deadline)
        # The tests are done (or out of time): end the program and everything it started, then collect them all.
        _pidfd_kill(pidfd)
        exit_code = _candidate_exit(zygote_sock)
        os.close(pidfd)
        if uids[0] is not None and _children() - {zygote, tester.pid}:
            _kill_uid(uids[0])  # at once, so a fork bomb cannot outrun the sweep below
        _sweep(keep={zygote, tester.pid})
        size = os.fstat(stderr_rw).st_size
        stderr_tail = os.pread(stderr_rw, 2000, max(0, size - 2000)).decode("utf-8", "replace")
        reusable = exit_code is not None and _clean({zygote, tester.pid})
    finally:
        os.close(program_rw)
        os.close(stderr_rw)
    return {"frames": frames, "exit": exit_code, "timed_out": timed_out, "stderr": stderr_tail, "reusable": reusable}


class Tester:
    """The tests' process: forked from this supervisor (never from anything that held a program), under its own uid,
    and kept for the next job as long as each job's tests finish. Jobs and verdicts travel on a socket only the two
    of them hold; the job itself in a memory file, whatever its size."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.uid: int | None = None
        self.sock: socket.socket | None = None

    def start_job(self, job: dict, uid: int | None, conn: socket.socket) -> None:
        if self.pid is not None and self.uid != uid:
            self.stop()
        if self.pid is None:
            self._start(job, uid)
        job_fd = _memory_file("job", wire.dumps({k: job[k] for k in ("tests", "mode", "entry_point", "setup")}))
        try:
            socket.send_fds(self.sock, [b"job"], [job_fd, conn.fileno()])
        finally:
            os.close(job_fd)

    def _start(self, job: dict, uid: int | None) -> None:
        if job["seccomp"] is not None:
            _filter_program(wire.decode({"b": job["seccomp"]}))
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            mine.close()
            _tester_child(job["limits"], job["seccomp"], uid, theirs.fileno())
        theirs.close()
        self.pid, self.uid, self.sock = pid, uid, mine

    def verdict(self, deadline: float) -> tuple[list, bool]:
        """The job's verdict frames, up to the tests' {"done": true}; (frames, True) if the deadline came first. A
        tester that did not finish its job cleanly is stopped (the next job starts a new one)."""
        frames: list = []
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        while True:
            remaining = deadline - _now()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                self.stop()
                return frames, True
            message = self.sock.recv(1 << 20)
            frame = _frames(message)[:1] if message else []
            if not frame:  # the tester died (or sent something that is not a frame)
                self.stop()
                return frames, False
            frames.append(frame[0])
            if isinstance(frame[0], dict) and ("done" in frame[0] or "error" in frame[0]):
                return frames, False

    def stop(self) -> None:
        if self.pid is not None:
            _kill(self.pid)
            os.waitpid(self.pid, 0)
            self.sock.close()
            self.pid = self.uid = self.sock = None


def _zygote(sock: socket.socket) -> None:
    """Fork one candidate per request; report its pidfd, then how it ended. Never returns."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):  # the host's pipes are not ours to keep
        os.dup2(devnull, fd)
    os.close(devnull)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 1 << 16, 3)
        except OSError:
            os._exit(0)
        if not message:
            os._exit(0)  # the supervisor is gone
        settings = wire.loads(message)
        if settings["seccomp"] is not None:
            _filter_program(wire.decode({"b": settings["seccomp"]}))  # built here once, not in every child
        pid = os.fork()
        if pid == 0:
            sock.close()
            _candidate_child(settings, *fds)
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        socket.send_fds(sock, [b"{}"], [pidfd])
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        sock.send(wire.dumps({"exit": os.waitstatus_to_exitcode(status)}))


def _candidate_child(settings: dict, program_fd: int, conn_fd: int, stderr_fd: int) -> None:
    try:
        _keep_only({2: stderr_fd, 3: conn_fd, 4: program_fd})
        sys.stdin = open(os.devnull)
        sys.stdout = open(os.devnull, "w")
        with open("/proc/self/oom_score_adj", "w") as f:  # under memory pressure, the program goes first
            f.write("1000")
        _confine(settings["limits"], settings["uid"], settings["seccomp"], settings["workdir"])
        from rewards import _code_candidate

        _code_candidate.main(3, 4, settings["mode"])
    finally:
        os._exit(70)


def _tester_child(limits: dict, seccomp: str | None, uid: int | None, control_fd: int) -> None:
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        _keep_only({2: devnull, 3: control_fd})
        # The address space covers decoding what the program sends back; no CPU limit: the tester lives across jobs,
        # and the supervisor ends a job that runs past its deadline.
        tester_limits = {**limits, "memory_mb": 2 * limits["memory_mb"] + 512, "cpu_seconds": resource.RLIM_INFINITY}
        _confine(tester_limits, uid, seccomp, "/")
        _prctl(PR_SET_DUMPABLE, 0)  # the program's processes cannot read or write this one's memory or descriptors
        from rewards import _code_tester

        _code_tester.serve(3)
        os._exit(0)
    finally:
        os._exit(71)


def _keep_only(wanted: dict[int, int]) -> None:
    """Make descriptor `new` a copy of `old` for each {new: old}, stdin and stdout /dev/null; close all others."""
    import fcntl

    # First copy each out of the way (an old number may be another's new one), then into place.
    moved = {new: fcntl.fcntl(old, fcntl.F_DUPFD, 10) for new, old in wanted.items()}
    devnull = os.open(os.devnull, os.O_RDWR)
    for new, old in {0: devnull, 1: devnull, **moved}.items():
        os.dup2(old, new)
    os.closerange(max(wanted) + 1, _STDLIB_FD)
    os.closerange(_STDLIB_FD + 1, 1 << 20)


def _confine(limits: dict, uid: int | None, seccomp: str | None, workdir: str) -> None:
    """rlimits, then the uid (as root here, RLIMIT_NPROC only counts for another uid), then the syscall filter."""
    import ctypes

    for name, value in [
        ("RLIMIT_AS", limits["memory_mb"] << 20),
        ("RLIMIT_CPU", limits["cpu_seconds"]),
        ("RLIMIT_FSIZE", limits["file_mb"] << 20),
        ("RLIMIT_NPROC", limits["max_procs"]),
        ("RLIMIT_CORE", 0),
    ]:
        resource.setrlimit(getattr(resource, name), (value, value))
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    os.chdir(workdir)
    if seccomp is not None:
        _load_syscall_filter(wire.decode({"b": seccomp}))


def _load_syscall_filter(bpf: bytes) -> None:
    """Install a compiled seccomp program (built on the host by libseccomp, see `rewards.syscall_filter`)."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, _filter_program(bpf))


@functools.lru_cache(maxsize=4)
def _filter_program(bpf: bytes) -> int:
    """The address of a `struct sock_fprog` for `bpf`; built once in the parent, so a forked child only calls prctl."""
    import ctypes

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buffer = ctypes.create_string_buffer(bpf, len(bpf))
    program = SockFprog(len(bpf) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    _keep_alive.append((buffer, program))
    return ctypes.addressof(program)


_keep_alive: list = []


_libc = None


def _prctl(option: int, arg: int, arg3: int = 0) -> None:
    import ctypes

    global _libc
    libc = _libc = _libc or ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(arg3), ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}): {os.strerror(errno)}")


def _memory_file(name: str, data: bytes) -> int:
    fd = os.memfd_create(name)  # no name on any file system: reachable only through the descriptors we hand out
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return fd


def _receive_pidfd(sock: socket.socket) -> int:
    _, fds, _, _ = socket.recv_fds(sock, 64, 1)
    if len(fds) != 1:
        raise RuntimeError("the zygote did not start the candidate")
    return fds[0]


def _candidate_exit(sock: socket.socket) -> int | None:
    """How the candidate ended (an exit code, or minus the signal), as the zygote saw it; None if it did not say."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    if not poller.poll(_REPLY_GRACE * 1000):
        return None
    try:
        return int(wire.loads(sock.recv(4096))["exit"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def _read_until_eof(fd: int, deadline: float) -> tuple[bytes, bool]:
    """Everything written to `fd` until its writer closed it; (data, True) if the deadline came first."""
    chunks, size = [], 0
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        remaining = deadline - _now()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            return b"".join(chunks), True
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks), False
        if size < _VERDICT_BYTES:
            chunks.append(chunk)
            size += len(chunk)


def _frames(data: bytes) -> list:
    frames, offset = [], 0
    while offset + 4 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        if offset + 4 + size > len(data):
            break
        try:
            frames.append(wire.loads(data[offset + 4 : offset + 4 + size]))
        except wire.WireError:
            break
        offset += 4 + size
    return frames


def _now() -> float:
    return time.monotonic()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _pidfd_kill(pidfd: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _children() -> set[int]:
    """Our live and zombie children: where everything the program forked lands once its parents are gone."""
    pids: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids.update(int(pid) for pid in f.read().split())
        except FileNotFoundError:  # a kernel without CONFIG_PROC_CHILDREN: read every process's parent
            return {pid for pid in _all_pids() if _parent(pid) == os.getpid()}
    return pids


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid` at once: kill(-1) from a helper running as that uid. The kernel signals them
    all in one pass that no fork can race, and the uid is this job's alone."""
    helper = os.fork()
    if helper == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(helper, 0)


def _sweep(keep: set[int]) -> None:
    """Kill and reap our children (but `keep`) until none is left: each round's dead hand their children to us."""
    while True:
        stray = _children() - keep
        if not stray:
            return
        for pid in stray:
            _kill(pid)
        for pid in stray:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _clean(ours: set) -> bool:
    """True when the job left nothing another job could see: no file in /tmp or /dev/shm, no SysV IPC object, no
    process but the namespace's init, this supervisor, the zygote and the tester."""
    for directory in ("/tmp", "/dev/shm"):
        if os.path.isdir(directory) and os.listdir(directory):
            return False
    for table in ("shm", "sem", "msg"):
        try:
            with open(f"/proc/sysvipc/{table}") as f:
                if len(f.readlines()) > 1:  # a header line, then one line per object
                    return False
        except FileNotFoundError:  # a kernel without SysV IPC
            pass
    return set(_all_pids()) <= {1, os.getpid(), *ours}


if __name__ == "__main__":
    main(sys.argv[1:])
