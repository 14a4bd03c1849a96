"""Ray actors and the driver-side handles that fan work out to them.

Processes: the driver runs the loop; rollout workers each hold one engine; reward workers score attempts
(score.reward_pool); one learner holds the policy, the reference and the optimizer, sharded over `learner.num_ranks`
actors (score.learner_group).
After each update weights flow learner -> Ray's object store, one bucket at a time -> every rollout worker.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, RayTaskError

from score.engines import Completion, EngineRefused, SamplingParams, engine_kind, start_engine
from score.flat_weights import FlatBucket
from score.learner_group import LearnerGroup
from score.split import split_evenly
from score.threads import phase_threads, use_cores

log = logging.getLogger(__name__)


class StaleWeightsError(RuntimeError):
    """The worker holds other weights than the driver expects (it was restarted and came back with the base model)."""


class RolloutWorker:
    """Holds one engine. Restarted by Ray if its process dies; the driver then re-sends the current weights.

    Every weight update carries a version number; a generate call names the version it expects, so a worker that
    came back from a restart with its initial weights refuses to generate instead of silently sampling from them.
    """

    def __init__(self, kind: str, model_path: str, engine_kwargs: dict[str, Any], threads: int = 0,
                 sharing: int = 1) -> None:
        self.engine, self.refusal = start_engine(kind, model_path, **engine_kwargs)
        self.version = 0
        # The transformers engine computes in this process, which Ray started with OMP_NUM_THREADS = num_cpus (1 by
        # default); it generates with its share of the node's cores instead. vLLM places its own threads.
        self.threads = phase_threads(threads, sharing) if engine_kind(self.engine) == "hf" else None

    def _cores(self) -> contextlib.AbstractContextManager:
        return use_cores(self.threads) if self.threads else contextlib.nullcontext()

    def engine_info(self) -> tuple[str, str | None]:
        """Which engine runs here ('vllm' or 'hf') and, when `auto` fell back, vLLM's one-line refusal."""
        return engine_kind(self.engine), self.refusal

    def generate(self, prompts: list[list[int]], params: SamplingParams, version: int = 0) -> list[Completion]:
        if version != self.version:
            raise StaleWeightsError(f"worker has weights version {self.version}, driver expects {version}")
        with self._cores():
            return self.engine.generate(prompts, params)

    def update_weights(self, weights: bytes | FlatBucket, version: int = 0, partial: bool = False) -> None:
        """Ray resolves the object ref before the call; a `FlatBucket`'s buffer is then a view of the object store's
        shared memory on this node (fetched from another node first, where the learner runs elsewhere)."""
        self.engine.update_weights(weights, partial)
        self.version = version

    def weight_sync(self, phase: str, *args: Any) -> None:
        """GPU weight transfer (rollout.weight_sync=nccl|ipc): one phase of vLLM's protocol, driven by the learner."""
        from score.engines.vllm_gpu_sync import LLMSyncClient

        getattr(LLMSyncClient(self.engine.llm), phase)(*args)

    def set_version(self, version: int) -> None:
        self.version = version

    def sequence_logprobs(self, sequences: list[list[int]], version: int = 0) -> list[list[float]]:
        if version != self.version:
            raise StaleWeightsError(f"worker has weights version {self.version}, driver expects {version}")
        with self._cores():
            return self.engine.sequence_logprobs(sequences)

    def where(self) -> dict[str, Any]:
        """Process id, Ray node id and generation threads (None: the engine places its own) of this worker."""
        import os

        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(), "threads": self.threads}

    def shutdown(self) -> None:
        self.engine.shutdown()


class RolloutGroup:
    """Shards prompts across rollout workers; recovers once from a worker that died (restart + weight re-sync)."""

    def __init__(self, kind: str, model_path: str, engine_kwargs: dict[str, Any], *, num_engines: int,
                 num_cpus: float, num_gpus: float, timeout_s: float, threads: int = 0,
                 concurrent_phases: int = 1) -> None:
        actor = ray.remote(RolloutWorker)
        run = uuid.uuid4().hex[:8]
        # engines that share a node's cores (SPREAD places them evenly over the nodes that have CPUs)
        nodes = sum(1 for node in ray.nodes() if node.get("Alive") and node.get("Resources", {}).get("CPU"))
        # ... and, under train.async (concurrent_phases=2), with the learner that updates meanwhile
        sharing = math.ceil(num_engines / max(1, min(num_engines, nodes))) * concurrent_phases
        # Named, so that operators (and the fault-injection test) can find a run's workers with ray.get_actor.
        self.workers = [
            actor.options(name=f"score-rollout-{run}-{i}", num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=1,
                          scheduling_strategy="SPREAD")
            .remote(kind, model_path, engine_kwargs, threads, sharing)
            for i in range(num_engines)
        ]
        self.timeout_s = timeout_s
        self._weights: ray.ObjectRef | Callable[[], Iterable[ray.ObjectRef]] | None = None
        self.version = 0
        self.restarts = 0

    def _get(self, refs: list, what: str) -> list:
        try:
            return ray.get(refs, timeout=self.timeout_s)
        except GetTimeoutError:
            raise RuntimeError(f"rollout workers did not finish {what} within rollout.timeout_s={self.timeout_s}s") from None

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        """Shard prompts over the workers (each shard seeded differently) and concatenate the results in order."""

        def call() -> list[Completion]:
            refs = [
                w.generate.remote(prompts[s], SamplingParams(params.temperature, params.top_p,
                                                             params.max_new_tokens, params.seed + 7919 * i),
                                  self.version)
                for i, (w, s) in enumerate(zip(self.workers, split_evenly(prompts, len(self.workers))))
            ]
            return [c for part in self._get(refs, "generation") for c in part]

        return self._recovering(call, "generation")

    def sequence_logprobs(self, sequences: list[list[int]]) -> list[list[list[float]]]:
        """Every worker's log-probs of the same sequences (one list per worker)."""
        return self._recovering(
            lambda: self._get([w.sequence_logprobs.remote(sequences, self.version) for w in self.workers], "log-probs"),
            "log-probs",
        )

    def update_weights(self, weights: ray.ObjectRef | Callable[[], Iterable[ray.ObjectRef]]) -> None:
        """New weights for every worker: one safetensors blob, or a function that streams them as flat buckets
        (`LearnerGroup.weight_buckets`). Buckets are made one at a time and each is freed once every worker has
        loaded it, so the object store never holds the whole model; a restarted worker gets a fresh stream."""
        self._weights = weights
        self.version += 1
        self._recovering(self._sync_all, "weight sync")

    def pushed_weights(self, send: Callable[[], None]) -> None:
        """GPU path: run the learner's NCCL/IPC push to the engines, then record the new version. A restarted
        worker is not in the NCCL group any more, so it fails the run (resume from the last checkpoint)."""
        send()
        self.version += 1
        self._get([w.set_version.remote(self.version) for w in self.workers], "weight version")

    def _sync_all(self) -> None:
        if self._weights is None:  # before the first update every worker holds the initial weights
            return
        if isinstance(self._weights, ray.ObjectRef):
            self._get([w.update_weights.remote(self._weights, self.version) for w in self.workers], "weight sync")
            return
        for bucket in self._weights():
            self._get([w.update_weights.remote(bucket, self.version, True) for w in self.workers], "weight sync")

    def _recovering(self, call, what: str):
        """Run `call`. If a worker died (Ray restarts it with the initial weights) or reports stale weights, wait
        for it, re-send the current weights and try again, until rollout.timeout_s; then stop with an error."""
        deadline = time.monotonic() + self.timeout_s
        recovering = False
        while True:
            try:
                if recovering:
                    self._sync_all()
                return call()
            except (RayActorError, ActorUnavailableError, RayTaskError) as err:
                if isinstance(err, RayTaskError) and not isinstance(err.cause, StaleWeightsError):
                    raise
                if not recovering:
                    self.restarts += 1
                    log.warning("a rollout worker was restarted during %s (%s); re-sending the weights", what, err)
                recovering = True
                if time.monotonic() > deadline:
                    raise RuntimeError(f"rollout workers did not recover within rollout.timeout_s={self.timeout_s}s "
                                       f"during {what}; resume from the last checkpoint with resume=true") from None
                time.sleep(0.5)  # the restarting actor is not reachable yet

    def engine_info(self) -> tuple[str, str | None]:
        """Which engine the workers run ('vllm' or 'hf'; waits for them to start) and, when `engine: auto` fell back
        to the transformers engine, vLLM's one-line reason."""
        try:
            infos = self._get([w.engine_info.remote() for w in self.workers], "engine start")
        except RayActorError as err:  # the worker's constructor raised: say why in one line if vLLM refused
            refused = re.search(r"EngineRefused: (.+)", str(err))
            if refused:
                raise EngineRefused(refused.group(1).strip()) from None
            raise
        kinds = sorted({kind for kind, _ in infos})
        refusal = next((reason for _, reason in infos if reason), None)
        return "+".join(kinds), refusal

    def placement(self) -> list[dict[str, Any]]:
        """Where each worker runs: pid and Ray node id."""
        return self._get([w.where.remote() for w in self.workers], "placement")

    def shutdown(self) -> None:
        for w in self.workers:
            try:
                ray.get(w.shutdown.remote(), timeout=60)
            except (RayActorError, ActorUnavailableError, GetTimeoutError) as err:
                log.info("rollout worker did not shut down cleanly (%s); killing it", err)
            ray.kill(w)


def connect_gpu_weight_sync(learner: LearnerGroup, engines: RolloutGroup, backend: str,
                            tensor_parallel_size: int) -> None:
    """Rendezvous the learner with every vLLM worker for NCCL/IPC weight transfer (GPU only)."""
    world_size = 1 + len(engines.workers) * tensor_parallel_size
    learner.connect_weight_sync(engines.workers, backend, world_size)


def concurrent_phases(cfg: Any) -> int:
    """Phases that compute at the same time: 2 under train.async (the next rollout overlaps the update), else 1 (the
    engines and the learner take turns, and each may use all the cores)."""
    return 2 if getattr(cfg.train, "async_rollouts", False) else 1


def start_learner(cfg: Any, **kwargs: Any) -> LearnerGroup:
    """The learner ranks (`learner.num_ranks` Ray actors, `ray.learner_num_cpus/gpus` each) for a run's config;
    kwargs are the `Learner`'s model arguments (model_path, init_from, seed)."""
    return LearnerGroup(num_ranks=cfg.learner.num_ranks, num_cpus=cfg.ray.learner_num_cpus,
                        num_gpus=cfg.ray.learner_num_gpus, placement=cfg.learner.placement,
                        timeout_s=cfg.learner.timeout_s, threads=cfg.ray.learner_threads,
                        concurrent_phases=concurrent_phases(cfg), dtype=cfg.model.dtype,
                        lr=cfg.train.lr,
                        weight_decay=cfg.train.weight_decay, gradient_checkpointing=cfg.train.gradient_checkpointing,
                        logprob_chunk_tokens=cfg.train.logprob_chunk_tokens,
                        sync_bucket_bytes=int(cfg.learner.sync_bucket_mb * (1 << 20)), **kwargs)
