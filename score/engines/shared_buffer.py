"""A shared-memory file that hands a weight bucket to vLLM's worker processes without serialising it.

vLLM runs the model in its own child processes; `LLM.collective_rpc` pickles and msgpacks its arguments through a
socket, so a bucket passed as an argument would be copied and re-parsed several times. Instead the rollout worker
copies the bucket once into a file under /dev/shm (memory, not disk) that it reuses for every sync, and sends the
file's path and the bucket's layout (a few KiB); each vLLM worker maps the file (copy-on-write) and hands zero-copy
views of it to vLLM's weight loader (`score.flat_weights.views`).

The file is removed when the engine shuts down. A worker killed outright cannot remove it, so every new buffer first
removes the files of processes that no longer exist (the owner's pid is in the name).
"""

from __future__ import annotations

import mmap
import os
import tempfile
import uuid
from pathlib import Path

import numpy as np

PREFIX = "score-weights-"


def shm_dir() -> Path:
    """/dev/shm where it exists (Linux), else the temporary directory (then the file may touch the disk)."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(directory: Path) -> None:
    """Delete buffers left by processes that are gone (killed before they could clean up)."""
    for path in directory.glob(f"{PREFIX}*"):
        try:
            pid = int(path.name[len(PREFIX):].split("-")[0])
        except ValueError:
            continue
        if not _alive(pid):
            path.unlink(missing_ok=True)


class SharedBuffer:
    """A file in shared memory, grown on demand, that `write` fills with one bucket at a time."""

    def __init__(self, directory: Path | None = None) -> None:
        directory = directory or shm_dir()
        remove_orphans(directory)
        self.path = directory / f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self._size = 0
        self._map: mmap.mmap | None = None

    def write(self, data: np.ndarray) -> str:
        """Copy `data` (uint8, 1-D) to the start of the file; returns the file's path for the readers."""
        if data.nbytes > self._size:
            if self._map is not None:
                self._map.close()
            os.ftruncate(self._fd, data.nbytes)
            self._size = data.nbytes
            self._map = mmap.mmap(self._fd, self._size)
        if data.nbytes:
            np.frombuffer(self._map, dtype=np.uint8, count=data.nbytes)[:] = data
        return str(self.path)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.path.unlink(missing_ok=True)


def map_for_reading(path: str, nbytes: int) -> mmap.mmap:
    """The first `nbytes` of a `SharedBuffer` file, as the reader maps it: copy-on-write, so that a weight loader
    that modified a tensor in place would change its own private copy of that page, never the shared bytes."""
    with open(path, "rb") as file:
        return mmap.mmap(file.fileno(), nbytes, access=mmap.ACCESS_COPY)
