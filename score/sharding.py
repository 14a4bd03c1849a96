"""FSDP2 for the learner: the process group, sharding a Hugging Face model, global sums, and weight buckets.

Every function here is a no-op or the plain single-process computation when torch.distributed is not initialised, so
a one-rank learner runs exactly the code it always ran. With N ranks, each rank holds 1/N of every parameter, gradient
and AdamW moment (`fully_shard` on each decoder layer and on the root); a forward all-gathers one layer at a time.
"""

from __future__ import annotations

import re
import socket
from datetime import timedelta

import torch
import torch.distributed as dist

BACKEND = "cpu:gloo,cuda:nccl"
"""gloo for CPU tensors (the CPU learner, small control messages), NCCL for CUDA tensors."""


def free_address() -> tuple[str, int]:
    """This node's IP and a free TCP port: rank 0 offers them as the rendezvous point."""
    import ray

    with socket.socket() as probe:
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    return ray.util.get_node_ip_address(), port


def init_process_group(address: str, port: int, rank: int, world_size: int, timeout_s: float) -> None:
    # A CPU-only torch build has no NCCL at all, and refuses a backend string that names it.
    backend = BACKEND if dist.is_nccl_available() else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://{address}:{port}", rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=timeout_s))


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if distributed() else 0


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks of a Hugging Face causal LM (model.model.layers for Llama, Qwen, Mistral, ...)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None) or getattr(decoder, "h", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__}: cannot find its decoder layers to shard (expected .layers or .h)")
    return list(layers)


def shard_model(model: torch.nn.Module, device: torch.device, *, bf16_params: bool) -> None:
    """fully_shard each decoder layer, then the root (embeddings, final norm, output layer; tied weights stay tied).

    bf16_params (GPUs): compute in bf16, reduce gradients in fp32, keep fp32 master shards for AdamW. Gradients are
    summed over ranks, not averaged: the loss is already divided by the global token count.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16_params else \
        MixedPrecisionPolicy()
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    # reshard_after_forward on the root too: after a no-grad forward (reference, sync checks) every parameter is a
    # shard again, which the optimizer, the checkpoints and the weight gather rely on.
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=True)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)  # a plain SUM: gloo has no PREMUL_SUM


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """The sum over ranks of each value (float64); the values themselves with one rank."""
    if not distributed():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_max(value: int, device: torch.device) -> int:
    if not distributed():
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor; for an FSDP shard, an all-gather that every rank must call, in the same order."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard (the tensor itself when not sharded)."""
    return t.to_local() if hasattr(t, "to_local") else t


_LAYER = re.compile(r"^(.*?\.(?:layers|h)\.\d+)\.")


def weight_buckets(model: torch.nn.Module, bucket_bytes: int) -> list[list[str]]:
    """The model's state-dict names in buckets of about `bucket_bytes` (full size), a decoder layer never split.

    Whole layers per bucket because vLLM reloads fused parameters (qkv, gate_up) layer by layer: a layer must arrive
    in one piece. A tensor shared by two names (tied embeddings) is listed once, under its first name.
    """
    seen: set[int] = set()
    units: dict[str, list[tuple[str, int]]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        match = _LAYER.match(name)
        units.setdefault(match.group(1) if match else name, []).append((name, tensor.numel() * tensor.element_size()))
    buckets: list[list[str]] = [[]]
    size = 0
    for unit in units.values():
        unit_bytes = sum(b for _, b in unit)
        if buckets[-1] and size + unit_bytes > bucket_bytes:
            buckets.append([])
            size = 0
        buckets[-1].extend(name for name, _ in unit)
        size += unit_bytes
    return buckets
