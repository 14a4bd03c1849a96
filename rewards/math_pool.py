"""A pool of worker processes whose tasks run under a hard time limit.

Why not `concurrent.futures.ProcessPoolExecutor`: it cannot kill the one worker whose task hangs (a future's
`cancel()` does nothing once the task runs), and a killed worker breaks the whole executor. Here each worker has its
own socket and holds one task at a time; when a task passes its deadline the parent sends SIGKILL to that worker,
records a timeout and asks for a fresh worker. The limit holds whatever thread or process calls `run` (no signals in
the caller), and a hung worker really stops.

Workers are forked from a zygote that runs as its own program (`python -m rewards.math_worker`, see there) and has
imported the modules named in `preload` (sympy and the parser) once, so a replacement starts in milliseconds, never
inherits the caller's threads or locks (vLLM, Ray), and never imports the caller's `__main__` (unlike
`multiprocessing`'s spawn and forkserver, which re-run an unguarded script and fail on one read from stdin). Each
worker caps its own address space (`memory_limit_mb`), so an answer that tries to build a giant number fails with
MemoryError instead of exhausting the machine; workers and zygote die with the pool's process.
"""

from __future__ import annotations

import multiprocessing.connection
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TIMEOUT = "timeout"
CRASH = "crash"
# The directory that holds the `rewards` package: the zygote must import this copy, whatever the caller's sys.path.
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass
class PoolStats:
    """What happened to one batch: `timeouts` tasks killed at their deadline, `crashes` workers that died."""

    n: int = 0
    timeouts: int = 0
    crashes: int = 0
    seconds: float = 0.0
    slowest: float = 0.0  # the longest single task, in seconds (a killed one counts up to its kill)


class Zygote:
    """The `python -m rewards.math_worker` process that forks workers on request (thread-safe; several pools may
    share one)."""

    def __init__(self, preload: Sequence[str], memory_limit_mb: int | None) -> None:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "rewards.math_worker", str(theirs.fileno()), str(memory_limit_mb or 0), *preload]
        self.process = subprocess.Popen(command, pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
                                        cwd=_PACKAGE_ROOT)
        theirs.close()
        self.socket = ours
        self.reader = ours.makefile("rb")
        self.lock = threading.Lock()
        if self.reader.readline() != b"ready\n":
            self.close()
            raise RuntimeError(f"the math checker's worker zygote failed to start ({' '.join(command[:3])}); "
                               "its error is printed above")

    def fork(self) -> tuple[multiprocessing.connection.Connection, int]:
        """A new worker: (its connection, its pid)."""
        ours, theirs = socket.socketpair()
        with self.lock:
            socket.send_fds(self.socket, [b"fork"], [theirs.fileno()])
            theirs.close()
            line = self.reader.readline()
        if not line:
            ours.close()
            raise RuntimeError("the math checker's worker zygote died")
        return multiprocessing.connection.Connection(ours.detach()), int(line)

    def close(self) -> None:
        self.reader.close()
        self.socket.close()  # the zygote reads EOF and exits, killing any worker left
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class _Worker:
    def __init__(self, zygote: Zygote) -> None:
        self.conn, self.pid = zygote.fork()
        self.task_index: int | None = None
        self.started = self.deadline = 0.0

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.conn.close()


class CheckPool:
    """`workers` processes running module-level functions; see the module docstring.

    A task that raises answers `("error", the exception's type name)`. Its function must live in a module the
    workers can import: they never import the caller's `__main__`, so a function defined there answers
    `("error", "AttributeError")`.

    >>> from operator import add
    >>> pool = CheckPool(workers=1)
    >>> pool.run([(add, (1, 2)), (add, ("a", "b"))], timeout=10.0)[0]
    [3, 'ab']
    >>> pool.close()
    """

    def __init__(self, workers: int, *, memory_limit_mb: int | None = 3072, preload: Sequence[str] = (),
                 zygote: Zygote | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.pid = os.getpid()
        self.lock = threading.Lock()
        # Pools may share one zygote (its preload and memory limit then apply); a pool closes only one it started.
        self.owns_zygote = zygote is None
        self.zygote = Zygote(preload, memory_limit_mb) if zygote is None else zygote
        self.workers: list[_Worker | None] = [_Worker(self.zygote) for _ in range(workers)]

    def run(self, tasks: Sequence[tuple[Callable, tuple]], timeout: float) -> tuple[list[Any], PoolStats]:
        """Run every (function, args) task; a result is the function's return value, `TIMEOUT` or `CRASH`."""
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        with self.lock:
            try:
                return self._run(tasks, timeout)
            except BaseException:
                # Interrupted (Ctrl-C, a task that cannot be pickled): busy workers would answer stale tasks later.
                for worker in self.workers:
                    if worker is not None and worker.task_index is not None:
                        self._replace(worker)
                raise

    def _run(self, tasks, timeout):
        start = time.monotonic()
        stats = PoolStats(n=len(tasks))
        results: list[Any] = [None] * len(tasks)
        pending = deque(range(len(tasks)))
        busy: dict[int, _Worker] = {}  # id(conn) -> worker
        while pending or busy:
            for slot, worker in enumerate(self.workers):
                if not pending:
                    break
                if worker is None:
                    worker = self.workers[slot] = _Worker(self.zygote)
                if worker.task_index is None:
                    index = pending.popleft()
                    worker.task_index, worker.started = index, time.monotonic()
                    worker.deadline = worker.started + timeout
                    try:
                        worker.conn.send(tasks[index])
                    except (BrokenPipeError, OSError):
                        pass  # a dead worker: its recv below fails and it is replaced
                    busy[id(worker.conn)] = worker
            wait_for = max(0.0, min(w.deadline for w in busy.values()) - time.monotonic())
            ready = multiprocessing.connection.wait([w.conn for w in busy.values()], timeout=wait_for)
            for conn in ready:
                worker = busy.pop(id(conn))
                stats.slowest = max(stats.slowest, time.monotonic() - worker.started)
                try:
                    results[worker.task_index] = conn.recv()
                except (EOFError, OSError):
                    results[worker.task_index] = CRASH
                    stats.crashes += 1
                    self._replace(worker)
                    continue
                worker.task_index = None
            now = time.monotonic()
            for key, worker in list(busy.items()):
                if worker.deadline <= now:
                    del busy[key]
                    stats.slowest = max(stats.slowest, now - worker.started)
                    results[worker.task_index] = TIMEOUT
                    stats.timeouts += 1
                    self._replace(worker)
        stats.seconds = time.monotonic() - start
        return results, stats

    def _replace(self, worker: _Worker) -> None:
        """Kill the worker; a fresh one starts when there is a task for it (so a timeout returns at once)."""
        worker.kill()
        self.workers[self.workers.index(worker)] = None

    def close(self) -> None:
        for worker in self.workers:
            if worker is not None:
                worker.kill()
        self.workers = []
        if self.owns_zygote:
            self.zygote.close()
