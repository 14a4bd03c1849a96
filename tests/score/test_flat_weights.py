"""Flat weight buckets: exact round trips, bf16 that equals the engine's own rounding, aligned zero-copy views, and
Ray's object store handing the buffer out in place."""

import pytest
import ray
import torch

from score.flat_weights import ALIGN, pack, tensors, torch_dtype


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "layers.0.w": torch.randn(3, 5, generator=g),   # 60 bytes: the next offset must still be aligned
        "layers.0.b": torch.randn(7, generator=g),
        "steps": torch.tensor([3, 4], dtype=torch.int64),  # not floating point: never cast
        "empty": torch.zeros(0, 4),
    }


def test_fp32_round_trip_is_exact_and_aligned():
    state = _state()
    bucket = pack(state)
    assert bucket.offsets == (0, 64, 128, 192)  # 60, 28 and 16 bytes, each padded to 64
    assert all(offset % ALIGN == 0 for offset in bucket.offsets)
    out = dict(tensors(bucket))
    assert list(out) == list(state)
    for name, tensor in state.items():
        assert out[name].dtype == tensor.dtype and torch.equal(out[name], tensor), name


def test_bf16_bucket_halves_the_bytes_and_matches_the_engines_own_cast():
    state = {"w": torch.randn(64, 32), "steps": torch.tensor([1, 2])}
    fp32, bf16 = pack(state), pack(state, torch.bfloat16)
    assert bf16.nbytes < fp32.nbytes and bf16.dtypes == ("bfloat16", "int64")
    out = dict(tensors(bf16))
    # A bf16 engine loading fp32 would round with the same cast (copy_ into a bf16 parameter): bit-identical.
    engine_param = torch.empty(64, 32, dtype=torch.bfloat16).copy_(state["w"])
    assert torch.equal(out["w"], engine_param)
    assert torch.equal(out["steps"], state["steps"])


def test_views_share_the_buffer():
    bucket = pack({"w": torch.ones(4)})
    view = dict(tensors(bucket))["w"]
    bucket.data[:4] = 0  # the first float's bytes: the view sees them, it is no copy
    assert view[0] == 0 and view[1] == 1


def test_object_store_bucket_is_read_in_place(ray_cluster):
    state = _state()
    ref = ray.put(pack(state, torch.bfloat16))
    fetched = ray.get(ref)
    assert not fetched.data.flags.writeable  # a view of the object store's shared memory, not a private copy
    out = dict(tensors(fetched))
    assert torch.equal(out["layers.0.w"], state["layers.0.w"].to(torch.bfloat16))


def test_unknown_dtype_is_refused_with_the_choices():
    assert torch_dtype(None) is None and torch_dtype("bfloat16") == torch.bfloat16
    with pytest.raises(ValueError, match="float32, bfloat16, float16"):
        torch_dtype("int8")
