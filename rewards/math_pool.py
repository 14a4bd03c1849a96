"""A pool of worker processes whose tasks run under a hard time limit.

Why not `concurrent.futures.ProcessPoolExecutor`: it cannot kill the one worker whose task hangs (a future's
`cancel()` does nothing once the task runs), and a killed worker breaks the whole executor. Here each worker has its
own pipe and holds one task at a time; when a task passes its deadline the parent sends SIGKILL to that worker,
records a timeout and starts a fresh worker. The limit holds whatever thread or process calls `run` (no signals in
the caller), and a hung worker really stops.

Workers are forked from a `forkserver` that has imported the modules named in `preload` (sympy and the parser), so a
replacement starts in milliseconds and never inherits the caller's threads or locks (vLLM, Ray). Each worker caps
its own address space (`memory_limit_mb`), so an answer that tries to build a giant number fails with MemoryError
instead of exhausting the machine, and it dies with its parent (PR_SET_PDEATHSIG) on Linux.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

TIMEOUT = "timeout"
CRASH = "crash"


@dataclass
class PoolStats:
    """What happened to one batch: `timeouts` tasks killed at their deadline, `crashes` workers that died."""

    n: int = 0
    timeouts: int = 0
    crashes: int = 0
    seconds: float = 0.0
    slowest: float = 0.0  # the longest single task, in seconds (a killed one counts up to its kill)


def _serve(conn: multiprocessing.connection.Connection, memory_limit_mb: int | None) -> None:
    """Worker loop: receive (function, args), send back its result (or the exception's type name)."""
    if memory_limit_mb:
        try:
            import resource

            limit = memory_limit_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):
            pass  # no RLIMIT_AS on this platform: the time limit still holds
    try:  # Linux: die with the parent even if the parent is SIGKILLed while this worker is busy.
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        function, args = task
        try:
            result = function(*args)
        except BaseException as error:  # noqa: BLE001 - a worker must answer every task, whatever the input did
            result = ("error", type(error).__name__)
        try:
            conn.send(result)
        except (BrokenPipeError, OSError):
            return


class _Worker:
    def __init__(self, context, memory_limit_mb: int | None) -> None:
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(target=_serve, args=(child_conn, memory_limit_mb), daemon=True)
        self.process.start()
        child_conn.close()
        self.task_index: int | None = None
        self.started = self.deadline = 0.0

    def kill(self) -> None:
        self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class CheckPool:
    """`workers` processes running module-level functions; see the module docstring.

    >>> from operator import add
    >>> pool = CheckPool(workers=1)
    >>> pool.run([(add, (1, 2)), (add, ("a", "b"))], timeout=10.0)[0]
    [3, 'ab']
    >>> pool.close()
    """

    def __init__(self, workers: int, *, memory_limit_mb: int | None = 3072, preload: Sequence[str] = ()) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if multiprocessing.current_process().daemon:
            raise RuntimeError(
                "the math checker needs worker processes, and this process is a daemonic multiprocessing worker "
                "(e.g. a multiprocessing.Pool worker), which may not start children: call it from the main process, "
                "a thread, a Ray actor or a concurrent.futures.ProcessPoolExecutor worker instead"
            )
        self.context = multiprocessing.get_context("forkserver")
        # Ignored if this process's forkserver already runs; then workers import on first use (slower, same result).
        self.context.set_forkserver_preload(list(preload))
        self.memory_limit_mb = memory_limit_mb
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.workers: list[_Worker | None] = [_Worker(self.context, memory_limit_mb) for _ in range(workers)]

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
                    worker = self.workers[slot] = _Worker(self.context, self.memory_limit_mb)
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
        live = [worker for worker in self.workers if worker is not None]
        for worker in live:
            try:
                worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for worker in live:
            worker.process.join(timeout=1)
            if worker.process.is_alive():
                worker.kill()
        self.workers = []
