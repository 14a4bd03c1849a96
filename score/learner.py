"""The learner: the policy being trained, the frozen reference (the base model) and the optimizer.

It runs inside a Ray actor (see `score.actors`), but is a plain class so that tests can drive it directly.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch
import torch.utils.checkpoint
from transformers import AutoModelForCausalLM, AutoTokenizer

from score import checkpoints, flat_weights, sharding
from score.flat_weights import FlatBucket
from score.objectives import score_loss, token_advantages
from score.packing import (
    PACKABLE_ATTENTION,
    PackedRows,
    grouped_order,
    pack_shared_prompts,
    prompt_groups,
    prompt_lengths,
)


@dataclass
class Batch:
    """What the driver sends for one update. Lists are per sample; token-level lists align with input_ids."""

    input_ids: list[list[int]]
    turn_ids: list[list[int]]
    rollout_logprobs: list[list[float]]
    turn_advantages: list[tuple[float, float]]
    """Task reward minus baseline, per turn."""
    turn_kl_weights: tuple[float, float]
    """KL coefficient of turn 1 and turn 2 (Stage I: beta2, beta1; Stage II: beta1, beta1)."""


@dataclass
class SequenceBatch:
    """Whole sequences for `Learner.train_sequences`: what an objective other than SCoRe's trains on.

    Sequences come in groups of `group_size` consecutive rows that one loss term couples (a DPO pair: chosen, then
    rejected); micro-batches never split a group. `values` carries per-sequence numbers for the objective.
    """

    input_ids: list[list[int]]
    loss_mask: list[list[int]]
    """1 on the tokens whose log-probs the objective reads (the response), 0 elsewhere; aligned with input_ids."""
    values: dict[str, list[float]]
    """Per-sequence numbers (weights, lengths, ...), each list as long as input_ids."""
    group_size: int = 1

    def __len__(self) -> int:
        return len(self.input_ids) // self.group_size

    def take(self, groups: list[int]) -> SequenceBatch:
        """The batch made of these groups, in this order."""
        rows = [g * self.group_size + i for g in groups for i in range(self.group_size)]
        return SequenceBatch([self.input_ids[r] for r in rows], [self.loss_mask[r] for r in rows],
                             {k: [v[r] for r in rows] for k, v in self.values.items()}, self.group_size)


SequenceObjective = Callable[..., tuple[torch.Tensor, dict[str, float]]]
"""objective(logp, ref_logp, mask, values) -> (loss summed over the micro-batch's groups, stats summed likewise).

logp: policy log-probs [B, L-1] of tokens 1..L-1 (with gradient); ref_logp: the frozen reference's (no gradient),
or None when not asked for; mask: `loss_mask` shifted the same way, float [B, L-1]; values: name -> tensor [B].
Pure and picklable (a module-level function or a functools.partial of one): it travels to the learner actor."""


LOGPROB_CHUNK_TOKENS = 1024
"""Tokens per chunk of the output layer in `token_logprobs`: the largest logits tensor is [chunk, V] in fp32."""


def _chunk_logprobs(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                    temperature: float) -> torch.Tensor:
    logits = torch.nn.functional.linear(hidden, weight, bias).float()
    if temperature != 1.0:
        logits = logits / temperature
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def _chunkable(model: torch.nn.Module) -> bool:
    """The output layer is a plain Linear whose output the model returns unchanged (no soft-capping, no scale)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    config = getattr(model, "config", None)
    changes_logits = any(getattr(config, key, None) not in (None, 1.0)
                         for key in ("final_logit_softcapping", "logit_scale", "output_multiplier_scale"))
    return isinstance(head, torch.nn.Linear) and not changes_logits


def token_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
                   chunk_tokens: int = LOGPROB_CHUNK_TOKENS, temperature: float = 1.0,
                   positions: torch.Tensor | None = None, packing: PackedRows | None = None) -> torch.Tensor:
    """log p(token_j | tokens_<j) for j = 1..L-1, shape [B, L-1], never materialising [B, L, V] logits.

    `positions` (bool [B, L-1], optional) names the log-probs the caller reads; the output layer then runs on those
    positions only and the others are 0. The output layer is a fifth of a small model's forward per position, and
    a SCoRe sequence trains on its two attempts only, not on the prompt and the instruction between them.

    `packing` (`score.packing.pack_shared_prompts` of these sequences) runs the model on the packed rows instead, each
    prompt once for its samples; the log-probs are the same. Positions past a sequence's end are then not computed:
    pass `positions`.

    The model runs as usual (so FSDP's hooks, gradient checkpointing and autocast all apply), but its output layer is
    replaced for the call by one that maps the hidden states to log-probs `chunk_tokens` positions at a time. With
    gradients on, each chunk is recomputed in the backward pass (activation checkpointing), so autograd keeps only the
    [B, L, H] hidden states, never a chunk's logits. Models whose output layer is not a plain Linear, or whose logits
    are post-processed (soft-capping), take the unchunked path.
    """
    batch, length = input_ids.shape
    if packing is None:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        source = (torch.arange(batch, device=input_ids.device)[:, None] * length
                  + torch.arange(length - 1, device=input_ids.device)).reshape(-1)
    else:
        inputs = {"input_ids": packing.input_ids, "attention_mask": packing.attention_mask,
                  "position_ids": packing.position_ids}
        source = packing.source.reshape(-1)
    targets = input_ids[:, 1:].reshape(-1)
    # an empty selection (a padding micro-batch that only keeps FSDP ranks in step) still runs the output layer on
    # every position, so that every rank's graph reaches the same parameters; the result is masked to 0 below
    keep = None if positions is None else positions.reshape(-1).nonzero().squeeze(1)
    if keep is not None and keep.numel() == 0:
        keep = None
    rows_at, row_targets = (source, targets) if keep is None else (source[keep], targets[keep])

    def scatter(logp: torch.Tensor) -> torch.Tensor:
        if keep is not None:
            logp = logp.new_zeros(batch * (length - 1)).index_copy(0, keep, logp)
        # not a view: FSDP's backward hook on the model's output would be lost by in-place ops on a view ([B, L] only)
        return logp.view(batch, length - 1).clone()

    if not _chunkable(model):
        logits = model(**inputs).logits
        rows = logits.reshape(-1, logits.shape[-1]).index_select(0, rows_at).float() / temperature
        logp = scatter(rows.gather(-1, row_targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(rows, dim=-1))
        return logp if positions is None or keep is not None else torch.where(positions, logp, torch.zeros_like(logp))
    head = model.get_output_embeddings()

    def logprob_head(hidden: torch.Tensor) -> torch.Tensor:
        rows = hidden.reshape(-1, hidden.shape[-1]).index_select(0, rows_at)
        pieces = []
        for start in range(0, rows.shape[0], chunk_tokens):
            args = (rows[start:start + chunk_tokens], head.weight, head.bias, row_targets[start:start + chunk_tokens],
                    temperature)  # head.weight read here: under FSDP it is the gathered tensor during the forward
            if torch.is_grad_enabled():
                pieces.append(torch.utils.checkpoint.checkpoint(_chunk_logprobs, *args, use_reentrant=False))
            else:
                pieces.append(_chunk_logprobs(*args))
        return scatter(torch.cat(pieces))

    head.forward = logprob_head  # an instance attribute: same module, same parameter names, for this call only
    try:
        logp = model(**inputs, use_cache=False).logits
    finally:
        del head.forward
    return logp if positions is None or keep is not None else torch.where(positions, logp, torch.zeros_like(logp))


def checkpoint_layers(model: torch.nn.Module) -> None:
    """Gradient checkpointing: each decoder layer keeps only its input and recomputes its activations in the
    backward pass. Done here rather than with transformers' `gradient_checkpointing_enable`, which only acts in
    train mode, so that it holds whatever mode the policy is in; under FSDP2 the layer's parameters are gathered
    again for the recomputation by FSDP's pre-backward hook."""
    for layer in sharding.decoder_layers(model):
        def checkpointed(*args, _forward=layer.forward, **kwargs):
            if not torch.is_grad_enabled():
                return _forward(*args, **kwargs)
            return torch.utils.checkpoint.checkpoint(_forward, *args, use_reentrant=False, **kwargs)

        layer.forward = checkpointed  # an instance attribute: parameter names and state dicts are unchanged


def length_order(lengths: list[int]) -> list[int]:
    """Row indices, longest sequence first (ties keep their order).

    Micro-batches cut from this order hold sequences of similar length, so each is padded only to its own longest
    row and little padding is computed; the longest come first so that a step that runs out of memory does so at once.

    >>> length_order([3, 9, 5, 9])
    [1, 3, 2, 0]
    """
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


PHASES = ("time_ref_forward", "time_policy_forward", "time_backward", "time_optimizer")
"""Per-phase seconds of an update that `train_step` reports, each summed over the micro-batches (this rank's)."""


class PhaseClock:
    """Wall seconds per named phase, summed over the micro-batches (CUDA work is waited for before each reading)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds = dict.fromkeys(PHASES, 0.0)

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.seconds[phase] += time.perf_counter() - start


class Learner:
    """Policy, frozen reference and AdamW on one process, or one rank of N (see `score.learner_group`).

    With N ranks (torch.distributed initialised by the caller) both models are FSDP2-sharded and every method must be
    called on every rank with its part of the batch: the token-mean denominator, the gradient norm and the returned
    statistics are global, so N ranks make the same update as one rank on the whole batch.
    """

    def __init__(
        self,
        model_path: str,
        *,
        init_from: str | None = None,
        dtype: str = "float32",
        lr: float = 1e-5,
        weight_decay: float = 0.0,
        seed: int = 0,
        num_threads: int | None = None,
        gradient_checkpointing: bool = False,
        logprob_chunk_tokens: int = LOGPROB_CHUNK_TOKENS,
        sync_bucket_bytes: int = 256 << 20,
    ) -> None:
        if logprob_chunk_tokens < 1:
            raise ValueError(f"train.logprob_chunk_tokens: must be >= 1, got {logprob_chunk_tokens}")
        if num_threads:
            torch.set_num_threads(num_threads)
        torch.manual_seed(seed)
        # On a GPU actor (ray.learner_num_gpus > 0) Ray sets CUDA_VISIBLE_DEVICES, so "cuda" is that GPU.
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.rank = sharding.rank()
        # Parameters stay in fp32 (AdamW needs them). bfloat16 runs the forward in bf16: FSDP's mixed precision on
        # sharded GPUs, autocast otherwise.
        fsdp_bf16 = sharding.distributed() and self.device.type == "cuda" and dtype == "bfloat16"
        self.autocast = dtype == "bfloat16" and not fsdp_bf16
        self.policy = AutoModelForCausalLM.from_pretrained(init_from or model_path, dtype=torch.float32)
        # eval(): dropout off. Log-probs must be those of the policy that sampled (the engines run without dropout),
        # and the KL to the reference must be 0 at step 0; gradients flow in eval mode all the same.
        self.policy.to(self.device).eval()
        if gradient_checkpointing:
            checkpoint_layers(self.policy)
        self.chunk = logprob_chunk_tokens
        self.reference = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).to(self.device).eval()
        self.reference.requires_grad_(False)
        if sharding.distributed():
            sharding.shard_model(self.policy, self.device, bf16_params=fsdp_bf16)
            sharding.shard_model(self.reference, self.device, bf16_params=fsdp_bf16)
        self.tokenizer = AutoTokenizer.from_pretrained(init_from or model_path)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=lr, weight_decay=weight_decay)
        self.sync_bucket_bytes = sync_bucket_bytes
        self._buckets: list[list[str]] | None = None

    def _amp(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()

    def _pad(self, rows: list[list], value) -> torch.Tensor:
        width = max(len(r) for r in rows)
        return torch.tensor([list(r) + [value] * (width - len(r)) for r in rows], device=self.device)

    def _clip_and_step(self, max_grad_norm: float) -> float:
        """Clip by the global gradient norm (over every rank's shards), then one AdamW step."""
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), max_grad_norm)
        self.optimizer.step()
        return float(sharding.full_tensor(grad_norm))

    def train_step(
        self,
        batch: Batch,
        *,
        kl_mode: str,
        loss_agg: str = "token_mean",
        micro_batch_size: int = 8,
        max_grad_norm: float = 1.0,
        tis_cap: float = 0.0,
        share_prompt: bool = False,
        share_prompt_max_tokens: int = 2048,
    ) -> dict[str, float]:
        """One policy-gradient update on the whole batch, accumulating gradients over micro-batches.

        Micro-batches are cut from the batch sorted by length (`length_order`), each padded to its own longest row:
        the loss is a sum over sequences divided by one batch-wide denominator (trained tokens for token_mean,
        samples for seq_mean), so the order in which sequences are grouped does not change the gradient. The frozen
        reference runs once per micro-batch, i.e. once per sequence and step. With N ranks, `batch` is this rank's
        part; the denominator and the returned statistics are global, the phase times (time_*) are this rank's.

        `share_prompt`: the samples of one prompt stay together (`grouped_order`) and each micro-batch runs packed
        (`score.packing`), its prompts computed once; same log-probs, same gradient.
        """
        step_start = time.perf_counter()
        clock = PhaseClock(self.device)
        size = len(batch.input_ids)
        local_tokens = sum(sum(1 for t in turns[1:] if t > 0) for turns in batch.turn_ids)
        trained_tokens, global_size = sharding.all_sum([float(local_tokens), float(size)], self.device)
        denominator = max(trained_tokens, 1) if loss_agg == "token_mean" else global_size
        kl_weights = torch.tensor(batch.turn_kl_weights, dtype=torch.float32, device=self.device)
        sums = {"loss": 0.0, "kl_t1": 0.0, "kl_t2": 0.0, "n_t1": 0.0, "n_t2": 0.0, "mismatch": 0.0, "is_clip": 0.0,
                "tokens": 0.0, "positions": 0.0}
        self.optimizer.zero_grad(set_to_none=True)
        lengths = [len(ids) for ids in batch.input_ids]
        attention = self.policy.config._attn_implementation
        share_prompt = share_prompt and attention in PACKABLE_ATTENTION
        if share_prompt:
            prefix = prompt_lengths(batch.turn_ids)
            order = grouped_order(lengths, prompt_groups(batch.input_ids, prefix))
        else:
            order = length_order(lengths)
        micro_batches = [order[i:i + micro_batch_size] for i in range(0, size, micro_batch_size)]
        # FSDP ranks must run the same number of forward/backward passes: a rank with fewer micro-batches runs
        # empty ones (a padding token, nothing trained), which contribute zero gradient.
        for index in range(sharding.all_max(len(micro_batches), self.device)):
            if index < len(micro_batches):
                rows = micro_batches[index]
                ids = [batch.input_ids[r] for r in rows]
                turns = [batch.turn_ids[r] for r in rows]
                rollout = [batch.rollout_logprobs[r] for r in rows]
                turn_adv = torch.tensor([batch.turn_advantages[r] for r in rows], dtype=torch.float32,
                                        device=self.device)
                packing = pack_shared_prompts(ids, [prefix[r] for r in rows], pad_id=self.pad_id,
                                              max_tokens=share_prompt_max_tokens, attention=attention,
                                              device=self.device) if share_prompt else None
                if packing is None:
                    sums["tokens"] += sum(len(r) for r in ids)
                    sums["positions"] += len(ids) * max(len(r) for r in ids)
                else:
                    sums["tokens"] += packing.tokens
                    sums["positions"] += packing.input_ids.numel()
            else:
                ids, turns, rollout, packing = [[self.pad_id] * 2], [[0, 0]], [[0.0, 0.0]], None
                turn_adv = torch.zeros(1, 2, device=self.device)
            input_ids = self._pad(ids, self.pad_id)
            attention_mask = self._pad([[1] * len(r) for r in ids], 0)
            turn_ids = self._pad(turns, 0)[:, 1:]
            rollout_logp = self._pad(rollout, 0.0)[:, 1:].float()
            per_turn_w = kl_weights.expand(len(turn_adv), 2)

            with self._amp():
                trained = turn_ids > 0  # the attempts' tokens: the only log-probs the loss and the KL read
                with clock("time_policy_forward"):
                    logp = token_logprobs(self.policy, input_ids, attention_mask, chunk_tokens=self.chunk,
                                          positions=trained, packing=packing)
                with clock("time_ref_forward"), torch.no_grad():
                    ref_logp = token_logprobs(self.reference, input_ids, attention_mask, chunk_tokens=self.chunk,
                                              positions=trained, packing=packing)
            kl = (logp.detach() - ref_logp) * trained
            advantages = token_advantages(turn_ids, turn_adv, kl, per_turn_w, kl_mode)
            is_weights = None
            if tis_cap > 0:
                raw = torch.exp(logp.detach() - rollout_logp)
                is_weights = raw.clamp(max=tis_cap)
                sums["is_clip"] += float(((raw > tis_cap) & trained).sum())
            token_loss = score_loss(
                logp, ref_logp, turn_ids, advantages, per_turn_w, kl_mode=kl_mode, is_weights=is_weights
            )
            loss = token_loss.sum() / denominator
            with clock("time_backward"):
                loss.backward()

            sums["loss"] += float(loss.detach())
            for turn in (1, 2):
                mask = turn_ids == turn
                sums[f"kl_t{turn}"] += float(kl[mask].sum())
                sums[f"n_t{turn}"] += float(mask.sum())
            sums["mismatch"] += float(((logp.detach() - rollout_logp).abs() * trained).sum())

        with clock("time_optimizer"):
            grad_norm = self._clip_and_step(max_grad_norm)
        sums = dict(zip(sums, sharding.all_sum(list(sums.values()), self.device)))
        n_tokens = max(sums["n_t1"] + sums["n_t2"], 1.0)
        return {
            "loss": sums["loss"],
            "kl_t1": sums["kl_t1"] / max(sums["n_t1"], 1.0),
            "kl_t2": sums["kl_t2"] / max(sums["n_t2"], 1.0),
            "grad_norm": grad_norm,  # before clipping (clip_grad_norm_ returns the unclipped norm)
            "grad_clipped": float(grad_norm > max_grad_norm),
            "logprob_mismatch": sums["mismatch"] / n_tokens,
            "is_clip_frac": sums["is_clip"] / n_tokens,
            "trained_tokens": float(trained_tokens),
            "tokens": sums["tokens"],  # real (non-padding) positions the forward passes computed, prompts included
            "pad_frac": 1.0 - sums["tokens"] / max(sums["positions"], 1.0),
            **clock.seconds,
            "time_learner": time.perf_counter() - step_start,  # the whole call on this rank, phases included
            "learner_threads": float(torch.get_num_threads()),  # torch intra-op threads the step ran with
        }

    def train_sequences(
        self,
        batch: SequenceBatch,
        objective: SequenceObjective,
        *,
        use_reference: bool = False,
        micro_batch_size: int = 8,
        max_grad_norm: float = 1.0,
    ) -> dict[str, float]:
        """One optimizer step on `batch` with any sequence objective (DPO, weighted SFT, ...).

        The loss is the objective's sum over all groups divided by the number of groups, accumulated over
        micro-batches of whole groups; the returned stats are the objective's sums divided the same way. With N
        ranks, `batch` is this rank's whole groups and the number of groups is the global one.
        """
        local_tokens = sum(sum(m[1:]) for m in batch.loss_mask)
        groups, trained_tokens = sharding.all_sum([float(len(batch)), float(local_tokens)], self.device)
        if groups == 0:
            raise ValueError("train_sequences: the batch is empty")
        per_micro = max(1, micro_batch_size // batch.group_size) * batch.group_size
        sums: dict[str, float] = {"loss": 0.0}
        self.optimizer.zero_grad(set_to_none=True)
        starts = list(range(0, len(batch.input_ids), per_micro))
        for index in range(sharding.all_max(len(starts), self.device)):
            real = index < len(starts)  # else an empty pass that keeps FSDP ranks in step (see train_step)
            rows = slice(starts[index], starts[index] + per_micro) if real else slice(0, 0)
            ids = batch.input_ids[rows] if real else [[self.pad_id] * 2] * batch.group_size
            masks = batch.loss_mask[rows] if real else [[0, 0]] * batch.group_size
            input_ids = self._pad(ids, self.pad_id)
            attention_mask = self._pad([[1] * len(r) for r in ids], 0)
            mask = self._pad(masks, 0)[:, 1:].float()
            values = {k: torch.tensor(v[rows] if real else [0.0] * batch.group_size, dtype=torch.float32,
                                      device=self.device) for k, v in batch.values.items()}
            read = mask > 0  # every sequence objective reads masked sums only
            with self._amp():
                logp = self.token_values(self.policy, input_ids, attention_mask, read)
                ref_logp = None
                if use_reference:
                    with torch.no_grad():
                        ref_logp = self.token_values(self.reference, input_ids, attention_mask, read)
            loss, stats = objective(logp, ref_logp, mask, values)
            if not real:
                loss, stats = loss * 0.0, {k: 0.0 for k in stats}
            (loss / groups).backward()
            sums["loss"] += float(loss.detach())
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + float(value)
        grad_norm = self._clip_and_step(max_grad_norm)
        if sharding.distributed():  # every rank knows the same stat names only after the sums are shared
            names = sorted(sums)
            sums = dict(zip(names, sharding.all_sum([sums[k] for k in names], self.device)))
        return {**{k: v / groups for k, v in sums.items()}, "grad_norm": grad_norm,
                "trained_tokens": float(trained_tokens)}

    def token_values(self, model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     positions: torch.Tensor | None = None) -> torch.Tensor:
        """What a sequence objective reads per token, [B, L-1], aligned with tokens 1..L-1: here their log-probs
        (computed at `positions` only, 0 elsewhere, when given). A learner whose model has a scoring head instead
        (score.verifiers.learner) returns the head's outputs."""
        return token_logprobs(model, input_ids, attention_mask, chunk_tokens=self.chunk, positions=positions)

    # ---- weights out: to the engines (in buckets) and to checkpoints -------------------------------------------

    def weight_bucket_count(self) -> int:
        """How many buckets `weight_bucket` streams the policy in."""
        if self._buckets is None:
            self._buckets = sharding.weight_buckets(self.policy, self.sync_bucket_bytes)
        return len(self._buckets)

    def _gather_bucket(self, index: int) -> dict[str, torch.Tensor]:
        """Bucket `index`'s full tensors (rank 0; an empty dict on the other ranks, which take part in gathering)."""
        self.weight_bucket_count()
        state = self.policy.state_dict()
        full = {}
        for name in self._buckets[index]:
            tensor = sharding.full_tensor(state[name].detach())
            if self.rank == 0:
                full[name] = tensor
        return full

    def weight_bucket(self, index: int, dtype: str | None = None) -> FlatBucket | None:
        """Bucket `index` of the policy as one flat buffer (rank 0; None on the other ranks), floating-point tensors
        cast to `dtype` ("bfloat16" for a bf16 engine: half the bytes; None: as held, fp32).

        Every rank takes part in gathering each full tensor, so no rank ever holds more than one bucket of full
        tensors beside its shards; the engines load bucket by bucket (`Engine.update_weights(bucket, partial=True)`).
        """
        full = self._gather_bucket(index)
        return flat_weights.pack(full, flat_weights.torch_dtype(dtype)) if self.rank == 0 else None

    def state_blob(self) -> bytes:
        """The policy weights as safetensors bytes, ready for `Engine.update_weights` (one bucket of everything)."""
        buckets = sharding.weight_buckets(self.policy, self.sync_bucket_bytes)
        self._buckets, saved = [[name for bucket in buckets for name in bucket]], self._buckets
        try:
            full = self._gather_bucket(0)
        finally:
            self._buckets = saved
        if self.rank != 0:
            return None
        return safetensors.torch.save({k: v.to("cpu").contiguous() for k, v in full.items()})

    def connect_weight_sync(self, rollout_workers: list, backend: str, world_size: int, address: tuple | None = None
                            ) -> None:
        """GPU only: join vLLM's weight-transfer group with the rollout workers (see score.engines.vllm_gpu_sync).

        Every learner rank calls this: rank 0 sends, the others take part in gathering each full tensor."""
        from score.engines.vllm_gpu_sync import RaySyncClient, connect_learner

        master_address, master_port = address or sharding.free_address()
        self._sender = connect_learner(self.policy, RaySyncClient(rollout_workers), backend=backend,
                                       master_address=master_address, master_port=master_port,
                                       world_size=world_size, rank=self.rank)

    def send_weights(self) -> None:
        """GPU only: push the current policy to every engine over NCCL/IPC (all ranks gather, rank 0 sends)."""
        self._sender.send_weights()

    @torch.no_grad()
    def sequence_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        out = []
        for seq in sequences:
            ids = torch.tensor([seq], device=self.device)
            out.append(token_logprobs(self.policy, ids, torch.ones_like(ids), chunk_tokens=self.chunk)[0].tolist())
        return out

    def parameter_checksums(self) -> dict[str, float]:
        """Sum of |w| over each model's parameters: cheap evidence of what changed."""
        def total(model: torch.nn.Module) -> float:
            return float(sum(sharding.local(p.detach()).abs().sum() for p in model.parameters()))

        policy, reference = sharding.all_sum([total(self.policy), total(self.reference)], self.device)
        return {"policy": policy, "reference": reference}

    def save(self, directory: str, *, with_optimizer: bool) -> None:
        """A Hugging Face folder (model + tokenizer), written by rank 0 from the gathered weights; with_optimizer adds
        what a resumed run needs: the optimizer, sharded (torch.distributed.checkpoint, any rank count can read it),
        and every rank's RNG state."""
        checkpoints.save(self, Path(directory), with_optimizer=with_optimizer)

    def load(self, directory: str) -> None:
        """Restore policy weights, optimizer and RNG from a checkpoint written by `save(with_optimizer=True)` with any
        number of ranks."""
        checkpoints.load(self, Path(directory))
