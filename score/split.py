"""Contiguous, near-equal splits of a batch over workers: rows to learner ranks, prompts to engines, attempts to
reward workers. Torch-free, so that a reward worker's process can import it."""

from __future__ import annotations


def split_rows(count: int, parts: int) -> list[slice]:
    """`parts` contiguous near-equal slices of range(count), the longer ones first (some may be empty).

    >>> split_rows(5, 3)
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    size, extra = divmod(count, parts)
    slices, start = [], 0
    for i in range(parts):
        stop = start + size + (1 if i < extra else 0)
        slices.append(slice(start, stop))
        start = stop
    return slices


def split_evenly(items: list, parts: int) -> list[slice]:
    """`split_rows` of the items, empty slices dropped (a worker is not called with nothing to do)."""
    return [s for s in split_rows(len(items), parts) if s.stop > s.start]
