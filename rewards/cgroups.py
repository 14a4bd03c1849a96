"""A control group per sandbox, where the host allows one: the job's memory counted in total, processes capped.

rlimits count per process: a program with several processes could hold their sum, and memory that belongs to no
process (files in tmpfs, shared pages) escapes them. A cgroup's memory controller counts all of it, tmpfs and shared
pages included, for the whole sandbox. Used when this process is root and can create a child of its own cgroup with
the memory and pids controllers: cgroup v2 (the unified hierarchy) or v1 (separate memory and pids hierarchies).
Elsewhere (`Cgroup.create` returns None) the sandbox keeps the rlimits alone.

The sandbox is put into its cgroup before it starts anything: the host runs `sh -c 'echo $$ > cgroup.procs; exec
bwrap ...'` (see `Cgroup.wrap`), so every process of the sandbox is born inside.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import os
import threading
import time

_V2_ROOT = "/sys/fs/cgroup"
_V1_ROOT = "/sys/fs/cgroup"
_names = itertools.count()


class Cgroup:
    """One cgroup (v2), or a pair of cgroups in the memory and pids hierarchies (v1), made for one sandbox."""

    def __init__(self, paths: dict[str, str], version: int) -> None:
        self.paths, self.version = paths, version  # controller ("memory", "pids") -> directory

    @classmethod
    def create(cls, memory_bytes: int, max_tasks: int) -> Cgroup | None:
        """A new cgroup with these limits under this process's own, or None where the host does not allow it."""
        parents = _parents()
        if parents is None:
            return None
        version, bases = parents
        name = f"score-sandbox-{os.getpid()}-{next(_names)}"
        _remove_pending()
        paths = {controller: os.path.join(base, name) for controller, base in bases.items()}
        made = cls(paths, version)
        try:
            for path in set(paths.values()):
                os.mkdir(path)
            if version == 2:
                _write(paths["memory"], "memory.max", memory_bytes)
                _write(paths["memory"], "memory.swap.max", 0, optional=True)
                _write(paths["pids"], "pids.max", max_tasks)
            else:
                _write(paths["memory"], "memory.limit_in_bytes", memory_bytes)
                _write(paths["memory"], "memory.memsw.limit_in_bytes", memory_bytes, optional=True)
                _write(paths["pids"], "pids.max", max_tasks)
        except OSError:
            made.remove()
            return None
        return made

    def wrap(self, command: list[str] | tuple[str, ...]) -> list[str]:
        """`command`, started inside this cgroup."""
        procs = [os.path.join(path, "cgroup.procs") for path in sorted(set(self.paths.values()))]
        script = "".join(f'echo $$ > "${i + 1}" && ' for i in range(len(procs))) + f"shift {len(procs)} && exec \"$@\""
        return ["/bin/sh", "-c", script, "sh", *procs, *command]

    def oom_kills(self) -> int:
        """How many processes the kernel killed for this cgroup's memory limit so far."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            with open(os.path.join(self.paths["memory"], name)) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def remove(self) -> None:
        """Delete the cgroup, now or, while the kernel still lets its last processes go, at a later call."""
        with _pending_lock:
            _pending.extend(set(self.paths.values()))
        _remove_pending()


_pending: list[str] = []  # cgroups whose processes were still exiting when they were removed
_pending_lock = threading.Lock()


def _remove_pending() -> None:
    with _pending_lock:
        _remove_pending_locked()


def _remove_pending_locked() -> None:
    for path in list(_pending):
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError:
            continue  # still busy: try again next time
        _pending.remove(path)


@atexit.register
def _remove_all_pending() -> None:
    for _ in range(100):
        _remove_pending()
        if not _pending:
            return
        time.sleep(0.01)


def available() -> bool:
    """Whether sandboxes on this host get a cgroup (root, and a cgroup with memory and pids controllers to extend)."""
    return _parents() is not None


def _write(directory: str, name: str, value: int, optional: bool = False) -> None:
    try:
        with open(os.path.join(directory, name), "w") as f:
            f.write(str(value))
    except OSError:
        if not optional:
            raise


@functools.cache
def _parents() -> tuple[int, dict[str, str]] | None:
    """(version, {controller: directory under which to create}) for this process's own cgroups, or None."""
    if os.geteuid() != 0:
        return None
    try:
        with open("/proc/self/cgroup") as f:
            entries = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return None
    v1 = {controller: path for _, controllers, path in entries for controller in controllers.split(",") if controller}
    if "memory" in v1 and "pids" in v1:
        bases = {c: os.path.join(_V1_ROOT, c, v1[c].lstrip("/")) for c in ("memory", "pids")}
        if all(_can_create_under(base) for base in bases.values()):
            return 1, bases
    unified = next((path for hierarchy, controllers, path in entries if hierarchy == "0" and not controllers), None)
    if unified is not None:
        base = os.path.join(_V2_ROOT, unified.lstrip("/"))
        try:
            with open(os.path.join(base, "cgroup.subtree_control")) as f:
                enabled = f.read().split()
        except OSError:
            return None
        if {"memory", "pids"} <= set(enabled) and _can_create_under(base):
            return 2, {"memory": base, "pids": base}
    return None


def _can_create_under(base: str) -> bool:
    probe = os.path.join(base, f"score-probe-{os.getpid()}")
    try:
        os.mkdir(probe)
    except OSError:
        return False
    with contextlib.suppress(OSError):
        os.rmdir(probe)
    return True
