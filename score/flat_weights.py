"""Weights as one flat byte buffer per bucket: the weight-sync format between the learner and the engines.

A `FlatBucket` is a table (name, dtype, shape, byte offset) and one contiguous uint8 numpy array holding every
tensor's bytes. Why this form rather than a safetensors blob:

- Ray stores numpy arrays out of band, so on one node the bucket goes into the object store (shared memory) once and
  a rollout worker reads it in place: `tensors(bucket)` are `torch.frombuffer` views of that memory, no copy and no
  parsing. A safetensors blob is serialised on the learner, copied out of the object store as `bytes`, parsed again.
- Packing casts as it copies: a bucket for a bfloat16 engine holds bfloat16 bytes (half of fp32), made by the same
  single copy that gathers the tensors. The engine would round fp32 to bf16 on load anyway (round to nearest even,
  like `Tensor.to`), so the engine's weights are bit-identical either way.

Offsets are aligned to `ALIGN` bytes so every view is as aligned as a freshly allocated tensor.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

ALIGN = 64
"""Byte alignment of each tensor in the buffer (a cache line; enough for every SIMD load)."""


@dataclass(frozen=True)
class FlatBucket:
    """Tensors packed in one flat buffer (see the module docstring). Picklable; Ray keeps `data` zero-copy."""

    names: tuple[str, ...]
    dtypes: tuple[str, ...]
    """torch dtype names without the `torch.` prefix ("float32", "bfloat16")."""
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]
    """Byte offset of each tensor in `data`."""
    data: np.ndarray
    """uint8, 1-D: every tensor's bytes (numpy has no bfloat16, so the buffer is untyped)."""

    @property
    def layout(self) -> tuple:
        """Everything but the bytes: what a process that maps the same bytes elsewhere needs to view them."""
        return self.names, self.dtypes, self.shapes, self.offsets

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


def _aligned(size: int) -> int:
    return (size + ALIGN - 1) // ALIGN * ALIGN


def pack(tensors: dict[str, torch.Tensor], dtype: torch.dtype | None = None) -> FlatBucket:
    """One buffer holding `tensors` (any device), floating-point ones cast to `dtype` when given, in one copy each."""
    names, dtypes, shapes, offsets = [], [], [], []
    total = 0
    for name, tensor in tensors.items():
        target = dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype
        names.append(name)
        dtypes.append(str(target).removeprefix("torch."))
        shapes.append(tuple(tensor.shape))
        offsets.append(total)
        total += _aligned(tensor.numel() * torch.empty((), dtype=target).element_size())
    data = np.empty(total, dtype=np.uint8)
    bucket = FlatBucket(tuple(names), tuple(dtypes), tuple(shapes), tuple(offsets), data)
    with torch.no_grad():
        for (_, view), tensor in zip(views(memoryview(data), bucket.layout), tensors.values()):
            view.copy_(tensor.detach())  # casts (and moves off the GPU) in the same copy
    return bucket


def views(buffer, layout: tuple) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for each entry of `layout`, viewing `buffer` (any writable or read-only buffer) in place."""
    names, dtypes, shapes, offsets = layout
    with warnings.catch_warnings():
        # The object store hands out read-only memory; the views are only ever read (copied into the model).
        warnings.filterwarnings("ignore", message="The given buffer is not writable")
        for name, dtype, shape, offset in zip(names, dtypes, shapes, offsets):
            torch_dtype = getattr(torch, dtype)
            count = int(np.prod(shape, dtype=np.int64))
            if count == 0:
                yield name, torch.empty(shape, dtype=torch_dtype)
                continue
            yield name, torch.frombuffer(buffer, dtype=torch_dtype, count=count, offset=offset).view(shape)


def tensors(bucket: FlatBucket) -> Iterator[tuple[str, torch.Tensor]]:
    """The bucket's tensors as zero-copy views of its buffer (valid while the bucket is referenced)."""
    return views(memoryview(bucket.data), bucket.layout)


def torch_dtype(name: str | None) -> torch.dtype | None:
    """"float32" / "bfloat16" / "float16" -> the torch dtype; None stays None (send as the learner holds it)."""
    if name is None:
        return None
    allowed = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in allowed:
        raise ValueError(f"weight sync dtype {name!r}: use one of {', '.join(allowed)}")
    return allowed[name]
