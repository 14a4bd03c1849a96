"""The interface every rollout engine implements (plain transformers, vLLM on CPU or GPU).

Engines see token ids only: the trainer renders chat templates and keeps the ids exactly as generated, so there is
never a decode/re-encode round trip between what was sampled and what is trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from score.flat_weights import FlatBucket


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one completion per prompt (the trainer repeats a prompt to get n samples)."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0


@dataclass
class Completion:
    """One generated continuation."""

    token_ids: list[int]
    """Generated ids, including the stop token when generation stopped on one."""
    logprobs: list[float]
    """Log-probability of each generated id under the engine's (unprocessed) model distribution."""
    finished: bool
    """True when generation ended on a stop token, False when it hit max_new_tokens."""


class Engine(Protocol):
    """A generation engine holding one copy of the policy weights."""

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        """Sample one completion per prompt, in order. Deterministic for a given seed and weights."""
        ...

    def update_weights(self, weights: bytes | FlatBucket, partial: bool = False) -> None:
        """Replace the weights in place (HF parameter names): a `score.flat_weights.FlatBucket` (what the trainer
        sends: one flat buffer, read in place) or a `safetensors.torch.save(state_dict)` blob.

        partial: the weights are one bucket of a stream (whole decoder layers); the other weights stay as they are."""
        ...

    def sequence_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        """log p(token_i | tokens_<i) for i >= 1 of each sequence: used to check a weight sync took effect."""
        ...

    def shutdown(self) -> None:
        """Release the engine's resources (processes, memory)."""
        ...
