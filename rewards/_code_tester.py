"""The trusted side of a code job: run the tests against the program through a proxy, and decide the verdict.

Runs inside the sandbox in a process that holds no model code: forked by the supervisor, which never runs a program,
under an unprivileged uid of its own when the sandbox runs as root, not dumpable, under the syscall filter; a warm
sandbox keeps it for the next job while every job's tests finish in time. The program runs in another process
(`_code_candidate.py`); every name the tests take from the program is a `Remote`, whose calls cross the socket as
plain data (`_code_wire`). The verdict is decided here, where the tests run, and goes to the supervisor on a socket
that only this process holds.

Names the tests use are resolved in this order: the test's own code, the trusted `setup` (a HumanEval prompt's
helpers, an MBPP task's setup code), Python's builtins, the standard library's modules (when the program's name is a
module), and only then the program's top-level names. So a program cannot shadow `sorted`, `math` or a prompt helper
such as `encode_cyclic` for the tests.

Verdict frames: {"test": i, "verdict": "pass"|"fail"|"unserializable"|"memory"|"crash", "message": str}, then
{"done": true}; {"error": str} when the trusted setup itself fails.
"""

from __future__ import annotations

import builtins
import keyword
import os
import socket
import sys

from rewards import _code_wire as wire

_MESSAGE_CHARS = 1000


class ProgramDied(Exception):
    """The program's process ended (exit, crash, killed) before answering."""


class ProgramMemoryError(Exception):
    """The program ran out of memory while answering a call."""


class ProgramError(Exception):
    """The program raised an exception that is not one of Python's builtin ones (named in the message)."""


class Remote:
    """A name or object that lives in the program's process: it can be called, have attributes read or be iterated
    (each a round trip whose result is plain data), and passed back to the program. It cannot stand for a value:
    comparing, hashing, testing its truth or printing it raises `wire.Unserializable`."""

    __slots__ = ("_conn", "_label", "_target")

    def __init__(self, conn: Connection, target: str | dict, label: str) -> None:
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_label", label)

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self._conn.request({"call": self._target, "a": self._conn.encode(list(args)),
                                   "k": self._conn.encode(kwargs)})

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._conn.request({"attr": self._target, "n": name})

    def __iter__(self) -> object:
        return iter(self._conn.request({"iter": self._target}))

    def __repr__(self) -> str:
        return f"<{self._label} in the program>"

    def _refuse(self, *args: object, **kwargs: object) -> object:
        raise wire.Unserializable(f"{self!r} is not plain data, so it cannot be compared or used as a value")

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __bool__ = __len__ = __contains__ = __getitem__ = _refuse
    __str__ = __format__ = __int__ = __float__ = __index__ = __complex__ = __bytes__ = __setattr__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __floordiv__ = __mod__ = _refuse
    __neg__ = __pos__ = __abs__ = __round__ = __and__ = __or__ = __xor__ = __invert__ = _refuse

    def __hash__(self) -> int:
        self._refuse()
        return 0


class Connection:
    """The test side of the socket to the program's process."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def encode(self, value: object) -> object:
        def ref(obj: object) -> int:
            if isinstance(obj, Remote) and isinstance(obj._target, dict):
                return obj._target["r"]
            raise wire.Unserializable(f"a test argument of type {type(obj).__name__} cannot cross as plain data")

        return wire.encode(value, ref)

    def receive(self) -> object:
        try:
            return wire.recv(self.fd)
        except (EOFError, OSError):
            raise ProgramDied("the program's process ended before it answered") from None

    def request(self, message: dict) -> object:
        try:
            wire.send(self.fd, message)
        except OSError:
            raise ProgramDied("the program's process ended before it answered") from None
        reply = self.receive()
        if type(reply) is not dict or len(reply) != 1:
            raise wire.WireError("malformed reply")
        ((kind, body),) = reply.items()
        if kind == "v":
            return wire.decode(body, lambda number: Remote(self, {"r": number}, "an object"))
        if kind == "u":
            raise wire.Unserializable(f"the program returned a value that cannot cross as plain data: {body}"[:500])
        if kind == "e" and type(body) is list and len(body) == 2 and all(type(part) is str for part in body):
            raise _program_exception(*body)
        raise wire.WireError("malformed reply")


def _program_exception(name: str, message: str) -> BaseException:
    message = f"{message[:_MESSAGE_CHARS]} (raised by the program)"
    if name == "MemoryError":
        return ProgramMemoryError(message)
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and cls not in (StopIteration, StopAsyncIteration):
        try:
            return cls(message)
        except Exception:
            pass
    return ProgramError(message)


def serve(control_fd: int) -> None:
    """Run jobs sent on the SOCK_SEQPACKET socket `control_fd` (a memory file with the job, and the socket to the
    program's process), one after another; each job's verdict frames go back on `control_fd`."""
    control = socket.socket(fileno=control_fd)
    while True:
        message, fds, _, _ = socket.recv_fds(control, 16, 2)
        if not message or len(fds) != 2:
            return
        job_fd, conn_fd = fds
        try:
            size = os.fstat(job_fd).st_size
            job = wire.loads(os.pread(job_fd, size, 0))
        finally:
            os.close(job_fd)
        try:
            main(conn_fd, control_fd, job)
        finally:
            os.close(conn_fd)


def main(conn_fd: int, verdict_fd: int, job: dict) -> None:
    """Run `job`'s tests against the program on `conn_fd` and write the verdict to `verdict_fd`."""
    conn = Connection(conn_fd)
    tests, mode = job["tests"], job["mode"]

    def report(**frame: object) -> None:
        wire.send(verdict_fd, frame)

    try:
        hello = conn.receive()
    except (ProgramDied, wire.WireError) as exc:
        hello = {"died": str(exc)}
    load_failure = _load_failure(hello)
    if load_failure is not None:
        for index in range(len(tests)):
            report(test=index, verdict=load_failure[0], message=load_failure[1])
        report(done=True)
        return

    namespace: dict = {"__builtins__": builtins, "__name__": "__test__"}
    if mode != "stdio":
        names = hello["ready"]
        for name, module in names.items():
            if name in vars(builtins):
                continue
            namespace[name] = _stdlib_module(module) or Remote(conn, name, name)
        try:
            exec(compile(job.get("setup") or "", "<setup>", "exec"), namespace)
        except BaseException as exc:
            report(error=f"the trusted setup code raised {type(exc).__name__}: {exc}"[:_MESSAGE_CHARS])
            return
        if job.get("entry_point"):
            namespace[job["entry_point"]] = Remote(conn, job["entry_point"], job["entry_point"])

    dead = None
    for index, test in enumerate(tests):
        if dead is not None:
            report(test=index, verdict="crash", message=dead)
            continue
        verdict, message = _run_one(index, test, mode, namespace, conn, job.get("entry_point"))
        if verdict == "crash":
            dead = message
        report(test=index, verdict=verdict, message=message)
    report(done=True)


def _load_failure(hello: object) -> tuple[str, str] | None:
    """(verdict, message) for every test when the program did not load; None when it did."""
    if type(hello) is dict and set(hello) == {"ready"} and type(hello["ready"]) is dict:
        names = hello["ready"]
        if all(type(n) is str and n.isidentifier() and not keyword.iskeyword(n) and (m is None or type(m) is str)
               for n, m in names.items()):
            return None
    if type(hello) is dict and "died" in hello:
        return "crash", "the program's process ended while it was loading"
    load = hello.get("load") if type(hello) is dict else None
    if type(load) is list and len(load) == 2 and all(type(part) is str for part in load):
        verdict = "memory" if load[0] == "MemoryError" else "fail"
        return verdict, f"the program raised {load[1][:_MESSAGE_CHARS]} when it was loaded"
    return "fail", "the program's process sent a malformed greeting"


def _stdlib_module(name: str | None) -> object:
    """The standard library module `name`, imported here (not the program's copy), or None."""
    if not name or name.split(".")[0] not in sys.stdlib_module_names:
        return None
    try:
        __import__(name)
        return sys.modules[name]
    except BaseException:
        return None


def _run_one(index: int, test: object, mode: str, namespace: dict, conn: Connection,
             entry_point: str | None) -> tuple[str, str]:
    filename = f"<test {index}>"
    try:
        if mode == "stdio":
            return _run_stdio(test, conn)
        scope = dict(namespace)  # a fresh namespace per test
        exec(compile(test, filename, "exec"), scope)
        if mode == "check":
            scope["check"](namespace[entry_point])
        return "pass", ""
    except ProgramDied as exc:
        return "crash", str(exc)
    except (ProgramMemoryError, MemoryError) as exc:
        return "memory", _message(exc, test, filename)
    except (wire.Unserializable, wire.WireError) as exc:
        return "unserializable", _message(exc, test, filename)
    except BaseException as exc:
        return "fail", _message(exc, test, filename)


def _message(exc: BaseException, test: object, filename: str) -> str:
    """The first line of feedback about a failed test: the test's line that failed, and the exception."""
    try:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    except BaseException:
        text = type(exc).__name__
    line = ""
    if isinstance(test, str):
        import traceback  # only when a test failed

        frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == filename]
        if frames and frames[-1].lineno:
            source = test.splitlines()
            if 0 < frames[-1].lineno <= len(source):
                line = source[frames[-1].lineno - 1].strip()
    return (f"{line}  ->  {text}" if line else text)[:_MESSAGE_CHARS]


def _run_stdio(case: object, conn: Connection) -> tuple[str, str]:
    result = conn.request({"stdio": case["input"]})
    if type(result) is not dict or type(result.get("stdout")) is not str or type(result.get("exit")) is not int:
        raise wire.WireError("malformed stdio reply")
    if result["exit"] != 0:
        return "fail", f"the program exited with status {result['exit']}"
    if normalize_output(result["stdout"]) == normalize_output(case["output"]):
        return "pass", ""
    got = result["stdout"][:200]
    return "fail", f"for input {case['input'][:200]!r} the program printed {got!r}, expected {case['output'][:200]!r}"


def normalize_output(text: str) -> list[str]:
    """What stdin/stdout tasks compare: lines without trailing whitespace, without trailing empty lines.

    >>> normalize_output("1 2 \\n3\\n\\n") == normalize_output("1 2\\n3")
    True
    """
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines
