"""vLLM takes the learner's weights for a model with tied embeddings (the output layer is the embedding).

safetensors refuses aliased tensors, so a blob carries the shared tensor once, under the embedding's name; vLLM's
loader then fills the tied output layer from it. Checked by log-probs: after the sync vLLM must score a sequence
exactly as the learner does, which needs the new output layer as well as the new embedding. Both tests share one
engine (eager: this file tests the weight path, not the compiled graph), in the order the file lists them.
"""

import pytest
import torch

from score.learner import Learner
from score.tiny import build_tiny_model, default_corpus

pytestmark = pytest.mark.slow
SEQUENCE = list(range(3, 60))


@pytest.fixture(scope="module")
def tied_path(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tied"), default_corpus(), seed=2, tie_word_embeddings=True)


@pytest.fixture(scope="module")
def engine(tied_path):
    from score.engines.vllm_engine import VLLMEngine

    engine = VLLMEngine(str(tied_path), dtype="float32", seed=0, kv_cache_memory_bytes=1 << 26, enforce_eager=True)
    yield engine
    engine.shutdown()


def _perturb(parameters, scale: float = 0.05) -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in parameters:
            p.add_(scale * torch.randn_like(p))


def test_tied_blob_sync_reaches_vllm(tied_path, engine):
    learner = Learner(str(tied_path), lr=1e-2)
    before = engine.sequence_logprobs([SEQUENCE])[0]
    _perturb([learner.policy.model.embed_tokens.weight])  # the output layer moves with it, or not at all
    engine.update_weights(learner.state_blob())
    after = engine.sequence_logprobs([SEQUENCE])[0]
    assert after == pytest.approx(learner.sequence_logprobs([SEQUENCE])[0], abs=1e-4)
    assert max(abs(a - b) for a, b in zip(after, before)) > 0.05  # the change arrived


def test_flat_bucket_stream_reaches_vllm_through_shared_memory(tied_path, engine):
    # the trainer's sync: several flat buckets (whole layers; the tied tensor once) mapped by vLLM's worker from a
    # shared-memory file; the file goes away with the engine
    learner = Learner(str(tied_path), lr=1e-2, sync_bucket_bytes=40_000)
    before = engine.sequence_logprobs([SEQUENCE])[0]
    _perturb(learner.policy.parameters())
    assert learner.weight_bucket_count() > 1
    for index in range(learner.weight_bucket_count()):
        engine.update_weights(learner.weight_bucket(index), partial=True)
    shared = engine._shared.path
    assert shared.exists()
    after = engine.sequence_logprobs([SEQUENCE])[0]
    assert after == pytest.approx(learner.sequence_logprobs([SEQUENCE])[0], abs=1e-4)
    assert max(abs(a - b) for a, b in zip(after, before)) > 0.05  # the change arrived
    engine.shutdown()
    assert not shared.exists()
