"""The shared-memory file that hands buckets to vLLM's workers: reused across syncs, grown when needed, read
copy-on-write, removed on close, and orphans of dead processes cleaned up."""

import subprocess
import sys

import numpy as np
import torch

from score.engines.shared_buffer import PREFIX, SharedBuffer, map_for_reading
from score.flat_weights import pack, views


def test_write_map_and_view(tmp_path):
    buffer = SharedBuffer(tmp_path)
    try:
        small = pack({"a": torch.arange(6, dtype=torch.float32)})
        path = buffer.write(small.data)
        big = pack({"a": torch.arange(100, dtype=torch.float32), "b": torch.ones(3, dtype=torch.bfloat16)})
        assert buffer.write(big.data) == path  # one file for every sync, grown in place
        mapped = map_for_reading(path, big.nbytes)
        out = dict(views(mapped, big.layout))
        assert torch.equal(out["a"], torch.arange(100, dtype=torch.float32))
        assert out["b"].dtype == torch.bfloat16 and torch.equal(out["b"], torch.ones(3, dtype=torch.bfloat16))
        out["a"][0] = -1.0  # a loader writing in place changes only its private page
        assert np.frombuffer(open(path, "rb").read(4), dtype=np.float32)[0] == 0.0
    finally:
        buffer.close()
    assert not buffer.path.exists()


def test_orphans_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f"{PREFIX}{int(dead.stdout)}-deadbeef"
    orphan.write_bytes(b"x")
    buffer = SharedBuffer(tmp_path)
    try:
        assert not orphan.exists() and buffer.path.exists()
        live = SharedBuffer(tmp_path)  # another live buffer of this process is left alone
        assert buffer.path.exists()
        live.close()
    finally:
        buffer.close()
