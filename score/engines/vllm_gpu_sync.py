"""GPU-only weight sync from the learner to vLLM rollout engines: NCCL broadcast or CUDA IPC, no serialisation.

`VLLMEngine.update_weights(blob)` works everywhere (CPU and GPU) but ships a safetensors blob through vLLM's RPC
channel. On GPUs, vLLM's weight-transfer API moves the tensors GPU-to-GPU instead (docs:
https://docs.vllm.ai/en/latest/training/weight_transfer/; this module follows the vLLM 0.29+ form of that API,
read from vLLM's `vllm/distributed/weight_transfer/` sources):

- "nccl": the learner and the engines sit on different GPUs; the learner is rank 0 of an NCCL group that every
  vLLM worker joins, and broadcasts each parameter.
- "ipc": the learner and the engine share a GPU; the learner hands CUDA IPC handles of its parameters to the
  engine, which copies from them.

Every sync is the same four-phase protocol on the inference side (`init_weight_transfer_engine` once, then
`start_weight_update`, `update_weights`, `finish_weight_update` per sync). vLLM's trainer-side engines drive it
through a "client" object with those four methods; this module supplies the clients for our two set-ups and the
glue on both ends:

    # rollout side: the engine is created with the backend enabled
    engine = VLLMEngine(path, dtype="bfloat16", kv_cache_memory_bytes=None, weight_transfer_backend="nccl")
    # learner side, once (`client` reaches the engine: LLMSyncClient(engine.llm) in-process, RaySyncClient(actors))
    sender = connect_learner(policy, client, backend="nccl", master_address=ip, master_port=port, world_size=1 + n)
    # learner side, after every optimizer step
    sender.send_weights()

None of this can run without CUDA, so it is not exercised by the CPU test suite; keep it thin and keep the logic in
vLLM. After each sync `LLMSyncClient` resets the prefix cache, for the same reason as `VLLMEngine.update_weights`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

BACKENDS = ("nccl", "ipc")


def weight_transfer_config(backend: str):
    """The `weight_transfer_config` to create `vllm.LLM` with, enabling the given backend in its workers."""
    from vllm.config import WeightTransferConfig

    if backend not in BACKENDS:
        raise ValueError(f"weight_transfer_backend={backend!r} is not supported; use one of {BACKENDS}.")
    return WeightTransferConfig(backend=backend)


class LLMSyncClient:
    """The inference-side control plane for an in-process `vllm.LLM` (vLLM's `VLLMWeightSyncClient` protocol).

    Each phase runs the worker method of the same name on every vLLM worker via `collective_rpc`.
    """

    def __init__(self, llm: Any) -> None:
        self.llm = llm

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        self.llm.collective_rpc("init_weight_transfer_engine", kwargs={"init_info": init_info})

    def start_weight_update(self) -> None:
        self.llm.collective_rpc("start_weight_update")

    def update_weights(self, update_info: dict[str, Any] | list[dict[str, Any]]) -> None:
        self.llm.collective_rpc("update_weights", kwargs={"update_info": update_info})

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        self.llm.collective_rpc("finish_weight_update")
        self.llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights


class RaySyncClient:
    """The control plane for rollout engines living in Ray actors, as seen from the learner.

    Each actor must expose `method(phase: str, *args)` that calls `getattr(LLMSyncClient(engine.llm), phase)(*args)`.
    Every call fans out to all actors and waits for all of them (NCCL needs every worker in the broadcast).
    """

    def __init__(self, actors: list[Any], method: str = "weight_sync") -> None:
        self.actors, self.method = actors, method

    def _call(self, phase: str, *args: Any) -> None:
        import ray

        ray.get([getattr(actor, self.method).remote(phase, *args) for actor in self.actors])

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        self._call("init_weight_transfer_engine", init_info)

    def start_weight_update(self) -> None:
        self._call("start_weight_update")

    def update_weights(self, update_info: dict[str, Any] | list[dict[str, Any]]) -> None:
        self._call("update_weights", update_info)

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        self._call("finish_weight_update")


def connect_learner(
    model: torch.nn.Module,
    client: Any,
    *,
    backend: str,
    master_address: str | None = None,
    master_port: int | None = None,
    world_size: int | None = None,
    rank: int = 0,
):
    """Build vLLM's trainer-side transfer engine for `model` (HF parameter names) and rendezvous with the engines.

    Call on every learner rank (rank 0 sends; other FSDP ranks take part in gathering full tensors). For "nccl",
    `world_size` is 1 (the learner) + the number of vLLM workers over all engines (tensor_parallel_size each), and
    `master_address` / `master_port` a free TCP endpoint on the learner's node. Returns an object whose
    `send_weights()` pushes the current parameters to every engine and returns when they are loaded.
    """
    from vllm.distributed.weight_transfer import ModuleSource, WeightTransferTrainerFactory

    if backend == "nccl":
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

        if master_address is None or master_port is None or world_size is None:
            raise ValueError("backend='nccl' needs master_address, master_port and world_size (1 + vLLM workers).")
        init_info = NCCLTrainerInitInfo(
            master_address=master_address, master_port=master_port, world_size=world_size, rank=rank
        )
    elif backend == "ipc":
        from vllm.distributed.weight_transfer.ipc_engine import IPCTrainerInitInfo

        init_info = IPCTrainerInitInfo(rank=rank)
    else:
        raise ValueError(f"backend={backend!r} is not supported; use one of {BACKENDS}.")
    return WeightTransferTrainerFactory.trainer_init(init_info, client=client, source=ModuleSource(model))
