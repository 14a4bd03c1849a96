"""Tied embeddings (one tensor under two names) through every path that moves weights: blob sync, checkpoints,
the GPU sender's parameter source. safetensors refuses aliased tensors ("Some tensors share memory")."""

import pytest
import safetensors.torch
import torch
from transformers import AutoModelForCausalLM

from score.engines.hf import HFEngine
from score.learner import Learner
from score.tiny import build_tiny_model, default_corpus
from score.weights import load_shareable_state, shareable_state, tied_aliases


@pytest.fixture(scope="module")
def tied_model_path(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tied") / "tiny", default_corpus(), seed=1,
                            tie_word_embeddings=True)


def _perturb(model: torch.nn.Module, seed: int = 0) -> None:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))


def test_tied_model_saves_once_and_loads_back(tied_model_path):
    model = AutoModelForCausalLM.from_pretrained(tied_model_path)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # really tied
    assert tied_aliases(model) == {"lm_head.weight": "model.embed_tokens.weight"}
    with pytest.raises(RuntimeError, match="share memory"):  # what the old blob sync did
        safetensors.torch.save({k: v.detach().contiguous() for k, v in model.state_dict().items()})
    _perturb(model)
    blob = safetensors.torch.save(shareable_state(model))
    fresh = AutoModelForCausalLM.from_pretrained(tied_model_path)
    load_shareable_state(fresh, safetensors.torch.load(blob))
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[name], tensor, rtol=0, atol=0)
    assert fresh.lm_head.weight.data_ptr() == fresh.model.embed_tokens.weight.data_ptr()  # still tied after the load


def test_untied_model_keeps_every_name_and_bad_state_is_refused(tiny_model_path, tied_model_path):
    untied = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    assert tied_aliases(untied) == {} and set(shareable_state(untied)) == set(untied.state_dict())
    state = shareable_state(untied)
    del state["lm_head.weight"]  # not an alias in an untied model: a real omission
    with pytest.raises(ValueError, match="missing.*lm_head.weight"):
        load_shareable_state(untied, state)
    tied = AutoModelForCausalLM.from_pretrained(tied_model_path)
    with pytest.raises(ValueError, match="unexpected.*extra"):
        load_shareable_state(tied, {**shareable_state(tied), "extra.weight": torch.zeros(1)})


def test_learner_blob_reaches_the_hf_engine(tied_model_path):
    learner = Learner(str(tied_model_path), lr=1e-2)
    _perturb(learner.policy)
    engine = HFEngine(str(tied_model_path))
    engine.update_weights(learner.state_blob())
    sequence = list(range(3, 40))
    assert engine.sequence_logprobs([sequence])[0] == pytest.approx(learner.sequence_logprobs([sequence])[0], abs=1e-5)


def test_tied_checkpoint_roundtrip(tied_model_path, tmp_path):
    learner = Learner(str(tied_model_path), lr=1e-2)
    _perturb(learner.policy)
    learner.save(str(tmp_path / "ckpt"), with_optimizer=True)
    restored = Learner(str(tied_model_path), lr=1e-2)
    restored.load(str(tmp_path / "ckpt"))
    for name, tensor in learner.policy.state_dict().items():
        torch.testing.assert_close(restored.policy.state_dict()[name], tensor, rtol=0, atol=0)
    assert restored.policy.lm_head.weight.data_ptr() == restored.policy.model.embed_tokens.weight.data_ptr()


def test_gpu_sender_source_sends_the_tied_tensor_once(tied_model_path):
    # The NCCL/IPC sender iterates vLLM's ModuleSource (named_parameters: an alias is skipped, the first name kept).
    # It must send exactly the names the blob sync sends, which vLLM's loaders accept for a tied model.
    from vllm.distributed.weight_transfer import ModuleSource

    model = AutoModelForCausalLM.from_pretrained(tied_model_path)
    names = [meta.name for meta in ModuleSource(model).metadata()]
    assert "lm_head.weight" not in names and "model.embed_tokens.weight" in names
    assert set(names) <= set(shareable_state(model))


def test_flat_bucket_stream_reaches_the_hf_engine(tied_model_path):
    # the trainer's sync: several buckets of whole layers, the tied tensor once, loaded in place
    learner = Learner(str(tied_model_path), lr=1e-2, sync_bucket_bytes=40_000)
    _perturb(learner.policy)
    engine = HFEngine(str(tied_model_path))
    count = learner.weight_bucket_count()
    assert count > 1
    for index in range(count):
        engine.update_weights(learner.weight_bucket(index), partial=True)
    sequence = list(range(3, 40))
    assert engine.sequence_logprobs([sequence])[0] == pytest.approx(learner.sequence_logprobs([sequence])[0], abs=1e-5)
    assert engine.model.lm_head.weight.data_ptr() == engine.model.model.embed_tokens.weight.data_ptr()


def test_bf16_buckets_give_a_bf16_engine_the_weights_fp32_buckets_give_it(tied_model_path):
    # half the bytes, nothing lost: the engine rounds fp32 to bf16 on load exactly as the learner's cast does
    learner = Learner(str(tied_model_path), lr=1e-2, sync_bucket_bytes=40_000)
    _perturb(learner.policy)
    engines = {}
    for dtype in ("float32", "bfloat16"):
        engine = HFEngine(str(tied_model_path), dtype="bfloat16")
        buckets = [learner.weight_bucket(i, dtype) for i in range(learner.weight_bucket_count())]
        for bucket in buckets:
            engine.update_weights(bucket, partial=True)
        engines[dtype] = (engine, sum(b.nbytes for b in buckets))
    (fp32_engine, fp32_bytes), (bf16_engine, bf16_bytes) = engines["float32"], engines["bfloat16"]
    assert bf16_bytes < 0.51 * fp32_bytes
    for name, tensor in fp32_engine.model.state_dict().items():
        assert torch.equal(bf16_engine.model.state_dict()[name], tensor), name
