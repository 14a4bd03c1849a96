"""The program's side of a code job: run the untrusted program, then answer the test process's calls with plain data.

Runs inside the sandbox, in a child the zygote of `_code_runner.py` forked for this one job, after it became the job's
unprivileged uid under the syscall filter. Nothing here is trusted: the test process receives only what
`_code_wire.decode` accepts, so whatever the program does to this process (patched builtins, fake modules, tracing,
frame or gc tricks, objects that equal anything, exits, forks) it can only change which plain values come back.

Requests (one JSON frame each) and replies:
- {"call": target, "a": args, "k": kwargs} -> {"v": result} | {"e": [exception type, message]} | {"u": why}
- {"attr": target, "n": name}                -> the same, for `getattr(target, name)`
- {"iter": target}                           -> the same, for `list(target)`
- {"stdio": input}                           -> {"v": {"stdout": str, "exit": int}}: the program run as a script in a
                                                 fresh fork with `input` on stdin (stdin/stdout tasks)
`target` is a top-level name of the program or a reference {"r": n} to an object an earlier reply named.
The first frame this process sends is {"ready": {name: module or None}} once the program ran, or
{"load": [exception type, message]} if it raised.
"""

from __future__ import annotations

import builtins
import os
import sys
import types

from rewards import _code_wire as wire

# Exceptions the test process may see by their own class (a test can expect a ValueError); others arrive as a
# generic program error. The program's own subclasses are named by their nearest builtin base.
_PASSED_EXCEPTIONS = frozenset(
    name for name, cls in vars(builtins).items() if isinstance(cls, type) and issubclass(cls, BaseException)
)


def main(conn: int, program_fd: int, mode: str) -> None:
    """Serve one job on the socket `conn`; never returns."""
    with os.fdopen(program_fd, "rb") as f:
        program = f.read().decode("utf-8", "replace")
    objects: dict[int, object] = {}

    def ref(value: object) -> int:
        objects[len(objects) + 1] = value
        return len(objects)

    def resolve_ref(number: int) -> object:
        return objects[number]

    def resolve(target: object) -> object:
        if type(target) is str:
            return namespace[target]
        if type(target) is dict and type(target.get("r")) is int:
            return objects[target["r"]]
        raise KeyError(f"unknown target {target!r}")

    # A real module, so that pickle finds the program's functions by name (multiprocessing sends them to workers).
    module = types.ModuleType("__candidate__")
    sys.modules["__candidate__"] = module
    namespace: dict = module.__dict__
    namespace["__builtins__"] = builtins
    try:
        code = compile(program, "<program>", "exec")
        if mode != "stdio":  # a stdin/stdout program runs once per test case, in `_run_script`
            exec(code, namespace)
        hello: dict = {"ready": _exported_names(namespace)}
    except BaseException as exc:  # SystemExit too: exiting at load is a failed load, not a way out of the tests
        hello = {"load": _describe(exc)}
    _reply(conn, hello)
    if "load" in hello:
        os._exit(0)

    while True:
        try:
            request = wire.recv(conn)
        except EOFError:
            os._exit(0)
        try:
            if "stdio" in request:
                result: object = _run_script(code, request["stdio"])
            else:
                target = resolve(request.get("call", request.get("attr", request.get("iter"))))
                if "call" in request:
                    args = wire.decode(request.get("a", []), resolve_ref)
                    kwargs = wire.decode(request.get("k", {"d": []}), resolve_ref)
                    result = target(*args, **kwargs)
                elif "attr" in request:
                    result = getattr(target, request["n"])
                else:
                    result = list(target)
        except BaseException as exc:
            _reply(conn, {"e": _describe(exc)})
            continue
        try:
            data = wire.encode(result, ref)
        except BaseException as exc:  # a list that contains itself, a subclass whose conversion raises...
            _reply(conn, {"u": f"{type(exc).__name__}: {_text(exc)}"})
            continue
        _reply(conn, {"v": data})


def _reply(conn: int, message: dict) -> None:
    try:
        wire.send(conn, message)
    except wire.Unserializable as exc:
        wire.send(conn, {"u": str(exc)})
    except (RecursionError, ValueError) as exc:
        wire.send(conn, {"u": f"{type(exc).__name__}: {_text(exc)}"})


def _text(exc: BaseException) -> str:
    try:
        return str(exc)[:500]
    except BaseException:
        return "(no message)"


def _exported_names(namespace: dict) -> dict[str, str | None]:
    """The program's top-level names; for modules, the module's name (the test side imports stdlib ones itself)."""
    names: dict[str, str | None] = {}
    for name, value in list(namespace.items()):
        if isinstance(name, str) and name.isidentifier() and not name.startswith("__"):
            module = getattr(value, "__name__", None) if isinstance(value, types.ModuleType) else None
            names[name] = module if isinstance(module, str) else None
    return names


def _describe(exc: BaseException) -> list[str]:
    """[the nearest builtin exception class's name, the message], as plain strings."""
    name = "Exception"
    for cls in type(exc).__mro__:
        if cls.__module__ == "builtins" and cls.__name__ in _PASSED_EXCEPTIONS:
            name = cls.__name__
            break
    return [name, f"{type(exc).__name__}: {_text(exc)}"]


def _run_script(code: object, stdin: object) -> dict:
    """Run the program as a script (`__name__ == "__main__"`) in a fork of this process, `stdin` as its input."""
    if not isinstance(stdin, str):
        raise TypeError("stdin must be a str")
    given, out = _scratch_file(), _scratch_file()
    try:
        os.write(given, stdin.encode("utf-8", "surrogatepass"))
        os.lseek(given, 0, os.SEEK_SET)
        pid = os.fork()
        if pid == 0:
            exit_code = 1
            try:
                os.dup2(given, 0)
                os.dup2(out, 1)
                sys.stdin = open(0, encoding="utf-8", errors="replace", closefd=False)
                sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
                exec(code, {"__name__": "__main__", "__builtins__": builtins})
                exit_code = 0
            except SystemExit as exc:
                exit_code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                except BaseException:
                    exit_code = exit_code or 1
                os._exit(exit_code & 0xFF)
        _, status = os.waitpid(pid, 0)
        output = os.pread(out, wire.MAX_FRAME // 2, 0)
    finally:
        os.close(given)
        os.close(out)
    return {"stdout": output.decode("utf-8", "replace"), "exit": os.waitstatus_to_exitcode(status)}


def _scratch_file() -> int:
    """An unnamed file in the working directory (the sandbox's /tmp, or the job's own directory without bwrap)."""
    return os.open(".", os.O_TMPFILE | os.O_RDWR, 0o600)
