"""vLLM takes the learner's weight blob for a model with tied embeddings (the output layer is the embedding).

safetensors refuses aliased tensors, so the blob carries the shared tensor once, under the embedding's name; vLLM's
loader then fills the tied output layer from it. Checked by log-probs: after the sync vLLM must score a sequence
exactly as the learner does, which needs the new output layer as well as the new embedding.
"""

import pytest
import torch

from score.learner import Learner
from score.tiny import build_tiny_model, default_corpus

pytestmark = pytest.mark.slow


def test_tied_blob_sync_reaches_vllm(tmp_path):
    from score.engines.vllm_engine import VLLMEngine

    path = build_tiny_model(tmp_path / "tied", default_corpus(), seed=2, tie_word_embeddings=True)
    learner = Learner(str(path), lr=1e-2)
    engine = VLLMEngine(str(path), dtype="float32", seed=0, kv_cache_memory_bytes=1 << 26)
    try:
        sequence = list(range(3, 60))
        before = engine.sequence_logprobs([sequence])[0]
        torch.manual_seed(0)
        with torch.no_grad():
            learner.policy.model.embed_tokens.weight.add_(0.05 * torch.randn_like(learner.policy.lm_head.weight))
        engine.update_weights(learner.state_blob())
        after = engine.sequence_logprobs([sequence])[0]
        assert after == pytest.approx(learner.sequence_logprobs([sequence])[0], abs=1e-4)
        assert max(abs(a - b) for a, b in zip(after, before)) > 0.05  # the change arrived
    finally:
        engine.shutdown()


def test_flat_bucket_stream_reaches_vllm_through_shared_memory(tmp_path):
    # the trainer's sync: several flat buckets (whole layers; the tied tensor once) mapped by vLLM's worker from a
    # shared-memory file; the file goes away with the engine
    from score.engines.vllm_engine import VLLMEngine

    path = build_tiny_model(tmp_path / "tied", default_corpus(), seed=2, tie_word_embeddings=True)
    learner = Learner(str(path), lr=1e-2, sync_bucket_bytes=40_000)
    engine = VLLMEngine(str(path), dtype="float32", seed=0, kv_cache_memory_bytes=1 << 26)
    try:
        sequence = list(range(3, 60))
        before = engine.sequence_logprobs([sequence])[0]
        torch.manual_seed(0)
        with torch.no_grad():
            for p in learner.policy.parameters():
                p.add_(0.05 * torch.randn_like(p))
        assert learner.weight_bucket_count() > 1
        for index in range(learner.weight_bucket_count()):
            engine.update_weights(learner.weight_bucket(index), partial=True)
        shared = engine._shared.path
        assert shared.exists()
        after = engine.sequence_logprobs([sequence])[0]
        assert after == pytest.approx(learner.sequence_logprobs([sequence])[0], abs=1e-4)
        assert max(abs(a - b) for a, b in zip(after, before)) > 0.05  # the change arrived
    finally:
        engine.shutdown()
    assert not shared.exists()
