"""The worker side of `rewards.math_pool`: run as its own program, `python -m rewards.math_worker FD [MODULE ...]`.

This process is a zygote. It imports the named modules once (sympy and the LaTeX parser, warmed up), then waits on
the socket `FD` for requests from the pool. Each request carries one end of a fresh socket pair; the zygote forks a
child that serves (function, args) tasks on it, and answers with the child's pid, so the pool can SIGKILL that
child when a task passes its deadline. A fork of a warm, single-threaded zygote starts in milliseconds.

Started as a module, never through `multiprocessing`, it never imports or re-runs the caller's `__main__`: scripts
read from stdin (`python - <<EOF`), scripts without an `if __name__ == "__main__":` guard, notebooks, threads and
Ray actors all get the same workers.

The zygote exits when the pool's end of `FD` closes (the pool closed or its process died); its children are killed
with it (PR_SET_DEATHSIG) and reaped automatically (SIGCHLD ignored).
"""

from __future__ import annotations

import ctypes
import importlib
import multiprocessing.connection
import os
import pickle
import signal
import socket
import sys


def _die_with_parent() -> None:
    try:  # Linux only; elsewhere an orphan worker still stops at its next read (EOF).
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def serve(conn: multiprocessing.connection.Connection, memory_limit_mb: int) -> None:
    """Worker loop: receive (function, args), send back its result (or the exception's type name)."""
    if memory_limit_mb > 0:
        try:
            import resource

            limit = memory_limit_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):
            pass  # no RLIMIT_AS here: the time limit still holds
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            task = pickle.loads(message)
            if task is None:
                return
            function, args = task
            result = function(*args)
        except BaseException as error:  # noqa: BLE001 - a worker must answer every task, whatever the input did
            # (including a task it cannot unpickle: a function defined in the caller's __main__ is not here)
            result = ("error", type(error).__name__)
        try:
            conn.send(result)
        except (BrokenPipeError, OSError):
            return


def main(argv: list[str]) -> None:
    control = socket.socket(fileno=int(argv[0]))
    memory_limit_mb = int(argv[1])
    _die_with_parent()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel: no zombies
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the terminal is the caller's to handle
    for module in argv[2:]:
        importlib.import_module(module)
    control.sendall(b"ready\n")
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 16, 1)
        except OSError:
            return
        if not message or not fds:
            return  # the pool is gone
        pid = os.fork()
        if pid == 0:
            control.close()
            _die_with_parent()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                serve(multiprocessing.connection.Connection(fds[0]), memory_limit_mb)
            finally:
                os._exit(0)
        os.close(fds[0])
        control.sendall(f"{pid}\n".encode())


if __name__ == "__main__":
    main(sys.argv[1:])
