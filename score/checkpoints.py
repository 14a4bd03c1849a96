"""Learner checkpoints: a consolidated Hugging Face folder, plus the sharded state that `resume=true` reads.

OUTPUT_DIR/checkpoints/step_N/ holds
- the policy as a plain Hugging Face folder (model*.safetensors, config, tokenizer), written by rank 0 from tensors
  that every rank gathers together, one at a time: what `score eval`, vLLM and transformers load;
- dcp/: the policy and its AdamW state in torch.distributed.checkpoint's sharded format, each rank writing its own
  shards. DCP reshards on load, so a run saved with N ranks resumes with M;
- rng_rank{R}.pt: each rank's torch RNG state (and rank 0's numpy and python ones). A rank without a file of its own
  (more ranks than when saved) takes rank 0's.
final/ and the self-training round models are the Hugging Face folder alone.
"""

from __future__ import annotations

import contextlib
import json
import random
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import safetensors.torch
import torch

from score import sharding
from score.weights import load_shareable_state

if TYPE_CHECKING:
    from score.learner import Learner

SHARD_BYTES = 5 << 30
"""Largest model*.safetensors file in a consolidated folder, as Hugging Face writes them."""


def save(learner: Learner, path: Path, *, with_optimizer: bool) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if sharding.distributed():
        _save_consolidated(learner, path)
    elif learner.rank == 0:
        learner.policy.save_pretrained(path)
    if learner.rank == 0:
        learner.tokenizer.save_pretrained(path)
    if not with_optimizer:
        return
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    state = {"model": get_model_state_dict(learner.policy),
             "optimizer": get_optimizer_state_dict(learner.policy, learner.optimizer)}
    with _single_process_quiet():
        dcp.save(state, checkpoint_id=str(path / "dcp"), no_dist=not sharding.distributed())
    rng = {"torch_rng": torch.get_rng_state()}
    if learner.device.type == "cuda":
        rng["cuda_rng"] = torch.cuda.get_rng_state()
    if learner.rank == 0:
        rng.update(numpy_rng=np.random.get_state(), python_rng=random.getstate())
    torch.save(rng, path / f"rng_rank{learner.rank}.pt")


def _save_consolidated(learner: Learner, path: Path) -> None:
    """Every rank gathers each full tensor in turn; rank 0 keeps them on the CPU and writes the safetensors files."""
    state = learner.policy.state_dict()
    names = [name for bucket in sharding.weight_buckets(learner.policy, SHARD_BYTES) for name in bucket]
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name in names:  # tied weights appear once, under the first name, as save_pretrained writes them
        tensor = sharding.full_tensor(state[name].detach())
        if learner.rank != 0:
            continue
        if shards[-1] and size + tensor.numel() * tensor.element_size() > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][name] = tensor.to("cpu").contiguous()
        size += tensor.numel() * tensor.element_size()
    if learner.rank != 0:
        return
    learner.policy.config.save_pretrained(path)  # the loaded config: its architectures name the HF class, not FSDP's
    if getattr(learner.policy, "generation_config", None) is not None:
        learner.policy.generation_config.save_pretrained(path)
    if len(shards) == 1:
        safetensors.torch.save_file(shards[0], str(path / "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        safetensors.torch.save_file(shard, str(path / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file))
    total = sum(t.numel() * t.element_size() for shard in shards for t in shard.values())
    (path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def load(learner: Learner, path: Path) -> None:
    if not (path / "dcp").is_dir():
        return _load_single_file_state(learner, path)
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    # The state dicts of this run's shards (the optimizer's created if it has not stepped yet); DCP fills them in
    # from the saved shards, whatever rank count wrote them.
    state = {"model": get_model_state_dict(learner.policy),
             "optimizer": get_optimizer_state_dict(learner.policy, learner.optimizer)}
    with _single_process_quiet():
        dcp.load(state, checkpoint_id=str(path / "dcp"), no_dist=not sharding.distributed())
    set_model_state_dict(learner.policy, state["model"])
    set_optimizer_state_dict(learner.policy, learner.optimizer, state["optimizer"])
    own = path / f"rng_rank{learner.rank}.pt"
    rng = torch.load(own if own.is_file() else path / "rng_rank0.pt", weights_only=False)
    torch.set_rng_state(rng["torch_rng"].cpu())
    if "cuda_rng" in rng and learner.device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda_rng"].cpu())
    if "numpy_rng" in rng:  # rank 0's file (only the driver-facing rank 0 uses numpy and python RNG)
        np.random.set_state(rng["numpy_rng"])
        random.setstate(rng["python_rng"])


@contextlib.contextmanager
def _single_process_quiet() -> Iterator[None]:
    """DCP warns on every call without a process group that it assumes one process: that is the one-rank learner."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _load_single_file_state(learner: Learner, path: Path) -> None:
    """Checkpoints written before the sharded learner (one process): safetensors + learner_state.pt."""
    if sharding.distributed():
        raise ValueError(f"{path}: a single-learner checkpoint (no dcp/ folder); resume it with learner.num_ranks=1")
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(path.glob("model*.safetensors")):  # one file, or shards of a large model
        state.update(safetensors.torch.load_file(str(shard)))
    load_shareable_state(learner.policy, state)  # save_pretrained stores tied weights once
    extra = torch.load(path / "learner_state.pt", weights_only=False, map_location=learner.device)
    learner.optimizer.load_state_dict(extra["optimizer"])
    torch.set_rng_state(extra["torch_rng"].cpu())
    np.random.set_state(extra["numpy_rng"])
    random.setstate(extra["python_rng"])
