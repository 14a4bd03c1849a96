"""Torch intra-op threads for the phase that runs now.

In the synchronous loop the engines and the learner take turns: while one works the other waits. Each phase can
therefore use every core of its node, but Ray starts each actor with OMP_NUM_THREADS (and so torch's thread count)
set to the actor's `num_cpus`, 1 by default: a learner on a 2-core machine ran its update on one core. The learner
ranks and the transformers engine call `use_cores` around their work, so each phase runs with the cores it has.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch


def node_cores() -> int:
    """The cores this process may run on (its CPU affinity; os.cpu_count() where affinity is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def phase_threads(requested: int, sharing: int = 1) -> int:
    """Threads for one of `sharing` processes that work at the same time on this node.

    requested > 0 is taken as it is; 0 means auto: the node's cores divided among the processes that share them.

    >>> phase_threads(3, sharing=2)
    3
    >>> phase_threads(0, sharing=max(1, node_cores()))
    1
    """
    if requested < 0:
        raise ValueError(f"threads: must be >= 0 (0 = auto: the node's cores / processes sharing them), "
                         f"got {requested}")
    if sharing < 1:
        raise ValueError(f"threads: sharing must be >= 1, got {sharing}")
    return requested if requested > 0 else max(1, node_cores() // sharing)


@contextlib.contextmanager
def use_cores(threads: int) -> Iterator[int]:
    """Run the block with `threads` torch intra-op threads, then restore the previous count."""
    if threads < 1:
        raise ValueError(f"use_cores: threads must be >= 1, got {threads}")
    previous = torch.get_num_threads()
    if previous != threads:
        torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
