"""Weights as name -> tensor maps, with tied parameters (one tensor under two names) sent and loaded once.

Many small models tie the output layer to the input embedding (`tie_word_embeddings`): `state_dict()` then lists
`lm_head.weight` and `model.embed_tokens.weight` as two names of the same tensor, and safetensors refuses to
serialise that ("Some tensors share memory"). Every path that moves weights goes through this module:

- `shareable_state(model)`: the state dict with each shared tensor under its first name only (`embed_tokens`, the
  name vLLM and `save_pretrained` keep; vLLM's loaders skip `lm_head.weight` for tied models anyway).
- `load_shareable_state(model, state)`: loads such a dict, accepting exactly the tied aliases as missing (they are
  filled by loading the tensor they share), and refusing any other missing or unexpected name.
"""

from __future__ import annotations

import torch


def tied_aliases(model: torch.nn.Module) -> dict[str, str]:
    """alias -> kept name for every state-dict entry that is a second name of an earlier entry's tensor."""
    first: dict[tuple[int, tuple[int, ...], tuple[int, ...]], str] = {}
    aliases: dict[str, str] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if tensor.numel() == 0:  # empty tensors may all report the same address
            continue
        key = (tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()))
        if key in first:
            aliases[name] = first[key]
        else:
            first[key] = name
    return aliases


def shareable_state(model: torch.nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The model's weights on the CPU, contiguous, each tensor once: ready for `safetensors.torch.save`.

    `dtype` casts floating-point tensors (e.g. to the engine's bf16, halving the bytes to move)."""
    aliases = tied_aliases(model)
    state = {}
    for name, tensor in model.state_dict().items():
        if name in aliases:
            continue
        tensor = tensor.detach()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state[name] = tensor.cpu().contiguous()
    return state


def load_shareable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load weights saved by `shareable_state` (or a full state dict) strictly, except for tied aliases."""
    aliases = tied_aliases(model)
    result = model.load_state_dict(state, strict=False)
    missing = [name for name in result.missing_keys if name not in aliases or aliases[name] not in state]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"weights do not fit the model: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]} "
            f"(of {len(missing)} / {len(result.unexpected_keys)}). Were they saved from a different architecture?"
        )
