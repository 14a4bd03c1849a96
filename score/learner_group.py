"""The learner as N Ray actors, one per rank, that the driver uses as one learner.

`learner.num_ranks` actors are placed by one placement group (a bundle of `ray.learner_num_cpus` CPUs and
`ray.learner_num_gpus` GPUs per rank). Rank 0 picks the rendezvous address and port on its node; every rank joins the
process group (gloo for CPU tensors, NCCL for CUDA ones), and the `Learner` in each shards the policy and the
reference with FSDP2. Each rank runs its calls with `ray.learner_threads` torch threads (0: the node's cores divided
by the ranks on that node; in the synchronous loop the engines wait while the learner works). The driver calls
`LearnerGroup` methods as it called the single learner's: an update's batch is dealt to the ranks round-robin in
length order (`deal_rows`: every rank gets every length band and near-equal work; whole contiguous groups for
`train_sequences`), every other call goes to all ranks with the same arguments, and rank 0's answer (global numbers)
comes back. With one rank, this is the one learner actor of before, running the same code.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from score import sharding, threads
from score.learner import Batch, Learner, SequenceBatch, length_order
from score.packing import grouped_order, prompt_groups, prompt_lengths
from score.split import split_rows


class LearnerRank:
    """One rank: its Learner, in its own Ray actor."""

    def __init__(self, rank: int, world_size: int, num_threads: int) -> None:
        import torch

        torch.set_num_threads(num_threads)
        self.rank, self.world_size = rank, world_size
        self.threads = num_threads
        self.learner: Learner | None = None

    def share_cores(self, requested: int, ranks_on_node: int) -> int:
        """Torch threads for this rank's calls: `requested`, or (0) the node's cores / the ranks on this node."""
        self.threads = threads.phase_threads(requested, ranks_on_node)
        return self.threads

    def address(self) -> tuple[str, int]:
        return sharding.free_address()

    def start(self, address: str, port: int, timeout_s: float, learner_kwargs: dict[str, Any]) -> None:
        if self.world_size > 1:
            sharding.init_process_group(address, port, self.rank, self.world_size, timeout_s)
        self.learner = Learner(**learner_kwargs)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        # Ray started this process with OMP_NUM_THREADS = its num_cpus (1 by default); the update may use the
        # node's cores, which the engines leave idle meanwhile.
        with threads.use_cores(self.threads):
            return getattr(self.learner, method)(*args, **kwargs)

    def where(self) -> dict[str, Any]:
        """Process id, Ray node id and rank (for operators and tests)."""
        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(), "rank": self.rank}

    def state_bytes(self) -> dict[str, int]:
        """Bytes this rank holds of policy parameters, gradients and optimizer state (its shards only), and the
        process's peak resident memory."""
        import resource

        local = sharding.local
        policy, optimizer = self.learner.policy, self.learner.optimizer
        params = sum(local(p).numel() * p.element_size() for p in policy.parameters())
        grads = sum(local(p.grad).numel() * p.grad.element_size() for p in policy.parameters() if p.grad is not None)
        state = sum(local(t).numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                    if hasattr(t, "numel") and t.dim() > 0)
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
        return {"params": params, "grads": grads, "optimizer": state, "peak_rss": peak_rss}


def deal_rows(lengths: list[int], parts: int) -> list[list[int]]:
    """Row indices for each of `parts` ranks: the rows sorted by length (longest first), dealt round-robin.

    Every rank then holds sequences of every length band, so its micro-batches (cut from its own length order) pad
    little, and the ranks get near-equal work. The update does not depend on the split: the loss is a sum over
    sequences divided by a global denominator.

    >>> deal_rows([5, 9, 2, 7, 4], 2)
    [[1, 0, 2], [3, 4]]
    """
    order = length_order(lengths)
    return [order[rank::parts] for rank in range(parts)]


def deal_groups(lengths: list[int], groups: list[int], parts: int) -> list[list[int]]:
    """Row indices for each of `parts` ranks, whole prompt groups to a rank (so that its samples can share their
    prompt, `train.share_prompt`): groups longest first, each to the rank with the fewest tokens so far.

    >>> deal_groups([5, 9, 2, 7, 4, 3], [0, 1, 0, 1, 2, 2], 2)
    [[1, 3], [0, 2, 4, 5]]
    """
    load = [0] * parts
    dealt: list[list[int]] = [[] for _ in range(parts)]
    ranks: dict[int, int] = {}
    for row in grouped_order(lengths, groups):
        if groups[row] not in ranks:
            ranks[groups[row]] = min(range(parts), key=lambda p: (load[p], p))
        rank = ranks[groups[row]]
        dealt[rank].append(row)
        load[rank] += lengths[row]
    return dealt


def split_batch(batch: Batch, parts: int, share_prompt: bool = False) -> list[Batch]:
    """One part per rank: dealt by length (`deal_rows`), or whole prompt groups (`deal_groups`) under share_prompt."""
    lengths = [len(ids) for ids in batch.input_ids]
    if share_prompt:
        dealt = deal_groups(lengths, prompt_groups(batch.input_ids, prompt_lengths(batch.turn_ids)), parts)
    else:
        dealt = deal_rows(lengths, parts)
    return [Batch([batch.input_ids[r] for r in rows], [batch.turn_ids[r] for r in rows],
                  [batch.rollout_logprobs[r] for r in rows], [batch.turn_advantages[r] for r in rows],
                  batch.turn_kl_weights) for rows in dealt]


def split_sequences(batch: SequenceBatch, parts: int) -> list[SequenceBatch]:
    return [batch.take(list(range(s.start, s.stop))) for s in split_rows(len(batch), parts)]


@dataclass(frozen=True)
class TrainHandle:
    """A submitted update (`LearnerGroup.submit_train_step`): one object ref per rank."""

    refs: list


class LearnerGroup:
    """N learner ranks behind the single learner's methods (blocking calls; errors of any rank raise at once)."""

    def __init__(self, *, num_ranks: int = 1, num_cpus: float = 1.0, num_gpus: float = 0.0,
                 placement: str = "PACK", timeout_s: float = 1800.0, threads: int = 0, concurrent_phases: int = 1,
                 **learner_kwargs: Any) -> None:
        """threads: each rank's torch threads (0: the node's cores divided by the ranks on the node times
        `concurrent_phases`, the phases that compute at once: 2 under train.async, where the rollout overlaps the
        update)."""
        self.timeout_s = timeout_s
        bundle = {"CPU": num_cpus, **({"GPU": num_gpus} if num_gpus else {})}
        self.group = placement_group([dict(bundle) for _ in range(num_ranks)], strategy=placement)
        self._wait([self.group.ready()], "placement (free CPUs/GPUs for every learner rank)")
        actor = ray.remote(LearnerRank)
        self.ranks = [
            actor.options(num_cpus=num_cpus, num_gpus=num_gpus, scheduling_strategy=PlacementGroupSchedulingStrategy(
                self.group, placement_group_bundle_index=i)).remote(i, num_ranks, max(1, int(num_cpus)))
            for i in range(num_ranks)
        ]
        try:
            address, port = self._wait([self.ranks[0].address.remote()], "rendezvous")[0]
            self._wait([r.start.remote(address, port, timeout_s, learner_kwargs) for r in self.ranks], "start")
            nodes = [p["node_id"] for p in self.placement()]
            self.threads = self._wait([r.share_cores.remote(threads, nodes.count(node) * concurrent_phases)
                                       for r, node in zip(self.ranks, nodes)], "thread count")
        except BaseException:
            self.shutdown()  # a rank that failed to start leaves the others waiting in the rendezvous
            raise

    def _wait(self, refs: list, what: str) -> list:
        """All results, in order; the first rank that fails raises here at once (the others may be stuck in a
        collective waiting for it, until shutdown kills them)."""
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=self.timeout_s)
            if not ready:
                raise RuntimeError(f"learner ranks did not finish {what} within learner.timeout_s={self.timeout_s}s")
            ray.get(ready)
        return ray.get(refs)

    def _all(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """The same call on every rank; rank 0's answer."""
        return self._wait([r.call.remote(method, *args, **kwargs) for r in self.ranks], method)[0]

    @property
    def num_ranks(self) -> int:
        return len(self.ranks)

    def train_step(self, batch: Batch, **kwargs: Any) -> dict[str, float]:
        return self.wait(self.submit_train_step(batch, **kwargs))

    def submit_train_step(self, batch: Batch, **kwargs: Any) -> TrainHandle:
        """Start `train_step` on every rank and return at once (`train.async`: the driver generates the next step's
        rollouts meanwhile). `wait(handle)` returns its statistics; call nothing else on the learner before that."""
        parts = split_batch(batch, self.num_ranks, kwargs.get("share_prompt", False))
        return TrainHandle([r.call.remote("train_step", p, **kwargs) for r, p in zip(self.ranks, parts)])

    def wait(self, handle: TrainHandle) -> dict[str, float]:
        """Block until a submitted update is done on every rank; rank 0's statistics (errors of any rank raise)."""
        return self._wait(handle.refs, "train_step")[0]

    def train_sequences(self, batch: SequenceBatch, objective, **kwargs: Any) -> dict[str, float]:
        parts = split_sequences(batch, self.num_ranks)
        return self._wait([r.call.remote("train_sequences", p, objective, **kwargs)
                           for r, p in zip(self.ranks, parts)], "train_sequences")[0]

    def sequence_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        return self._all("sequence_logprobs", sequences)

    def parameter_checksums(self) -> dict[str, float]:
        return self._all("parameter_checksums")

    def save(self, directory: str, *, with_optimizer: bool) -> None:
        self._all("save", directory, with_optimizer=with_optimizer)

    def load(self, directory: str) -> None:
        self._all("load", directory)

    def weight_buckets(self, dtype: str | None = None) -> Iterator[ray.ObjectRef]:
        """The policy as a stream of flat buckets (`score.flat_weights`; object refs, made one at a time on demand,
        floating-point tensors cast to `dtype`): every rank gathers each bucket's full tensors together; rank 0's
        buffer goes to the engines through the object store."""
        for index in range(self._all("weight_bucket_count")):
            refs = [r.call.remote("weight_bucket", index, dtype) for r in self.ranks]
            self._wait(refs[1:], "weight gather")
            yield refs[0]

    def connect_weight_sync(self, rollout_workers: list, backend: str, world_size: int) -> None:
        """GPU only: rank 0 joins vLLM's weight-transfer group; the other ranks gather with it on every send."""
        address = self._wait([self.ranks[0].address.remote()], "rendezvous")[0]
        self._all("connect_weight_sync", rollout_workers, backend, world_size, address)

    def send_weights(self) -> None:
        self._all("send_weights")

    def placement(self) -> list[dict[str, Any]]:
        return self._wait([r.where.remote() for r in self.ranks], "placement")

    def state_bytes(self) -> list[dict[str, int]]:
        return self._wait([r.state_bytes.remote() for r in self.ranks], "memory")

    def shutdown(self) -> None:
        for r in self.ranks:
            ray.kill(r)
        remove_placement_group(self.group)
