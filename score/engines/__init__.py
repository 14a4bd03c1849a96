"""Rollout engines behind one interface (`score.engines.base.Engine`)."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from score.engines.base import Completion, Engine, SamplingParams
from score.engines.startup import EngineRefused, start_vllm

__all__ = ["Completion", "Engine", "EngineRefused", "SamplingParams", "engine_kind", "make_engine",
           "resolve_engine_kind", "start_engine"]


def resolve_engine_kind(kind: str) -> str:
    """'auto' means vLLM wherever it is installed, else the transformers engine (`make_engine` also falls back to
    it when vLLM cannot run the model)."""
    if kind == "auto":
        return "vllm" if importlib.util.find_spec("vllm") is not None else "hf"
    if kind == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ValueError("rollout.engine=vllm but vLLM is not installed: pip install -e '.[cpu]' (or '.[gpu]')")
    if kind not in ("vllm", "hf"):
        raise ValueError(f"rollout.engine: unknown engine {kind!r} (choose vllm, hf or auto)")
    return kind


def make_engine(kind: str, model_path: str, **kwargs: Any) -> Engine:
    """Start an engine. vLLM starts quietly (`score.engines.startup`); if it cannot run the model, `engine: vllm`
    raises `EngineRefused` (one line) and `engine: auto` says why in one line and uses the transformers engine."""
    engine, refusal = start_engine(kind, model_path, **kwargs)
    if refusal:
        print(fallback_notice(refusal), file=sys.stderr)
    return engine


def start_engine(kind: str, model_path: str, **kwargs: Any) -> tuple[Engine, str | None]:
    """`make_engine` without printing: the engine, and vLLM's one-line refusal when `auto` fell back to the
    transformers engine (None otherwise). Rollout workers use it, so that the driver says it once."""
    resolved, refusal = resolve_engine_kind(kind), None
    if resolved == "vllm":
        try:
            return start_vllm(model_path, **kwargs), None
        except EngineRefused as refused:
            if kind != "auto":
                raise
            refusal = str(refused)
    from score.engines.hf import HFEngine

    return HFEngine(model_path, **kwargs), refusal


def fallback_notice(refusal: str) -> str:
    """The one line a user sees when `engine: auto` could not use vLLM."""
    return f"{refusal}; using the transformers engine"


def engine_kind(engine: Engine) -> str:
    """'vllm' or 'hf': which engine `make_engine` ended up starting (for records such as eval.json)."""
    return {"VLLMEngine": "vllm", "HFEngine": "hf"}.get(type(engine).__name__, type(engine).__name__)
