"""The learner: the policy being trained, the frozen reference (the base model) and the optimizer.

It runs inside a Ray actor (see `score.actors`), but is a plain class so that tests can drive it directly.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from score.objectives import score_loss, token_advantages
from score.weights import load_shareable_state, shareable_state


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


def token_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """log p(token_j | tokens_<j) for j = 1..L-1, shape [B, L-1], without materialising a [B, L, V] log-softmax."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    targets = input_ids[:, 1:]
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


class Learner:
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
    ) -> None:
        if num_threads:
            torch.set_num_threads(num_threads)
        torch.manual_seed(seed)
        # On a GPU actor (ray.learner_num_gpus > 0) Ray sets CUDA_VISIBLE_DEVICES, so "cuda" is that GPU.
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        # Parameters stay in fp32 (AdamW needs them); bfloat16 runs the forward under autocast.
        self.policy = AutoModelForCausalLM.from_pretrained(init_from or model_path, dtype=torch.float32)
        # eval(): dropout off. Log-probs must be those of the policy that sampled (the engines run without dropout),
        # and the KL to the reference must be 0 at step 0; gradients flow in eval mode all the same.
        self.policy.to(self.device).eval()
        self.reference = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).to(self.device).eval()
        self.reference.requires_grad_(False)
        self.tokenizer = AutoTokenizer.from_pretrained(init_from or model_path)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.autocast = dtype == "bfloat16"
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=lr, weight_decay=weight_decay)

    def _amp(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()

    def _pad(self, rows: list[list], value) -> torch.Tensor:
        width = max(len(r) for r in rows)
        return torch.tensor([list(r) + [value] * (width - len(r)) for r in rows], device=self.device)

    def train_step(
        self,
        batch: Batch,
        *,
        kl_mode: str,
        loss_agg: str = "token_mean",
        micro_batch_size: int = 8,
        max_grad_norm: float = 1.0,
        tis_cap: float = 0.0,
    ) -> dict[str, float]:
        """One policy-gradient update on the whole batch, accumulating gradients over micro-batches."""
        size = len(batch.input_ids)
        trained_tokens = sum(sum(1 for t in turns[1:] if t > 0) for turns in batch.turn_ids)
        denominator = max(trained_tokens, 1) if loss_agg == "token_mean" else size
        kl_weights = torch.tensor(batch.turn_kl_weights, dtype=torch.float32, device=self.device)
        sums = {"loss": 0.0, "kl_t1": 0.0, "kl_t2": 0.0, "n_t1": 0.0, "n_t2": 0.0, "mismatch": 0.0, "is_clip": 0.0}
        self.optimizer.zero_grad(set_to_none=True)
        for start in range(0, size, micro_batch_size):
            rows = slice(start, start + micro_batch_size)
            input_ids = self._pad(batch.input_ids[rows], self.pad_id)
            attention_mask = self._pad([[1] * len(r) for r in batch.input_ids[rows]], 0)
            turn_ids = self._pad(batch.turn_ids[rows], 0)[:, 1:]
            rollout_logp = self._pad(batch.rollout_logprobs[rows], 0.0)[:, 1:].float()
            turn_adv = torch.tensor(batch.turn_advantages[rows], dtype=torch.float32, device=self.device)
            per_turn_w = kl_weights.expand(len(turn_adv), 2)

            with self._amp():
                logp = token_logprobs(self.policy, input_ids, attention_mask)
                with torch.no_grad():
                    ref_logp = token_logprobs(self.reference, input_ids, attention_mask)
            kl = (logp.detach() - ref_logp) * (turn_ids > 0)
            advantages = token_advantages(turn_ids, turn_adv, kl, per_turn_w, kl_mode)
            is_weights = None
            trained = turn_ids > 0
            if tis_cap > 0:
                raw = torch.exp(logp.detach() - rollout_logp)
                is_weights = raw.clamp(max=tis_cap)
                sums["is_clip"] += float(((raw > tis_cap) & trained).sum())
            token_loss = score_loss(
                logp, ref_logp, turn_ids, advantages, per_turn_w, kl_mode=kl_mode, is_weights=is_weights
            )
            loss = token_loss.sum() / denominator
            loss.backward()

            sums["loss"] += float(loss.detach())
            for turn in (1, 2):
                mask = turn_ids == turn
                sums[f"kl_t{turn}"] += float(kl[mask].sum())
                sums[f"n_t{turn}"] += float(mask.sum())
            sums["mismatch"] += float(((logp.detach() - rollout_logp).abs() * trained).sum())

        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), max_grad_norm)
        self.optimizer.step()
        n_tokens = max(sums["n_t1"] + sums["n_t2"], 1.0)
        return {
            "loss": sums["loss"],
            "kl_t1": sums["kl_t1"] / max(sums["n_t1"], 1.0),
            "kl_t2": sums["kl_t2"] / max(sums["n_t2"], 1.0),
            "grad_norm": float(grad_norm),  # before clipping (clip_grad_norm_ returns the unclipped norm)
            "grad_clipped": float(float(grad_norm) > max_grad_norm),
            "logprob_mismatch": sums["mismatch"] / n_tokens,
            "is_clip_frac": sums["is_clip"] / n_tokens,
            "trained_tokens": float(trained_tokens),
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
        micro-batches of whole groups; the returned stats are the objective's sums divided the same way.
        """
        groups = len(batch)
        if groups == 0:
            raise ValueError("train_sequences: the batch is empty")
        per_micro = max(1, micro_batch_size // batch.group_size) * batch.group_size
        sums: dict[str, float] = {"loss": 0.0}
        self.optimizer.zero_grad(set_to_none=True)
        for start in range(0, len(batch.input_ids), per_micro):
            rows = slice(start, start + per_micro)
            input_ids = self._pad(batch.input_ids[rows], self.pad_id)
            attention_mask = self._pad([[1] * len(r) for r in batch.input_ids[rows]], 0)
            mask = self._pad(batch.loss_mask[rows], 0)[:, 1:].float()
            values = {k: torch.tensor(v[rows], dtype=torch.float32, device=self.device) for k, v in batch.values.items()}
            with self._amp():
                logp = token_logprobs(self.policy, input_ids, attention_mask)
                ref_logp = None
                if use_reference:
                    with torch.no_grad():
                        ref_logp = token_logprobs(self.reference, input_ids, attention_mask)
            loss, stats = objective(logp, ref_logp, mask, values)
            (loss / groups).backward()
            sums["loss"] += float(loss.detach())
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + float(value)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), max_grad_norm)
        self.optimizer.step()
        trained_tokens = sum(sum(m[1:]) for m in batch.loss_mask)
        return {**{k: v / groups for k, v in sums.items()}, "grad_norm": float(grad_norm),
                "trained_tokens": float(trained_tokens)}

    def state_blob(self) -> bytes:
        """The policy weights as safetensors bytes, ready for `Engine.update_weights`."""
        return safetensors.torch.save(shareable_state(self.policy))  # tied weights once: safetensors refuses aliases

    def connect_weight_sync(self, rollout_workers: list, backend: str, world_size: int) -> None:
        """GPU only: join vLLM's weight-transfer group with the rollout workers (see score.engines.vllm_gpu_sync)."""
        import socket

        import ray

        from score.engines.vllm_gpu_sync import RaySyncClient, connect_learner

        with socket.socket() as probe:  # a free port on this node for the NCCL rendezvous
            probe.bind(("", 0))
            port = probe.getsockname()[1]
        self._sender = connect_learner(self.policy, RaySyncClient(rollout_workers), backend=backend,
                                       master_address=ray.util.get_node_ip_address(), master_port=port,
                                       world_size=world_size)

    def send_weights(self) -> None:
        """GPU only: push the current policy to every engine over NCCL/IPC."""
        self._sender.send_weights()

    @torch.no_grad()
    def sequence_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        out = []
        for seq in sequences:
            ids = torch.tensor([seq], device=self.device)
            out.append(token_logprobs(self.policy, ids, torch.ones_like(ids))[0].tolist())
        return out

    def parameter_checksums(self) -> dict[str, float]:
        """Sum of |w| over each model's parameters: cheap evidence of what changed."""
        def total(model: torch.nn.Module) -> float:
            return float(sum(p.detach().abs().sum() for p in model.parameters()))

        return {"policy": total(self.policy), "reference": total(self.reference)}

    def save(self, directory: str, *, with_optimizer: bool) -> None:
        """Hugging Face folder (model + tokenizer); with_optimizer adds what a resumed run needs."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.policy.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        if with_optimizer:
            torch.save(
                {
                    "optimizer": self.optimizer.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "numpy_rng": np.random.get_state(),
                    "python_rng": random.getstate(),
                },
                path / "learner_state.pt",
            )

    def load(self, directory: str) -> None:
        """Restore policy weights, optimizer and RNG from a checkpoint written by `save(with_optimizer=True)`."""
        path = Path(directory)
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(path.glob("model*.safetensors")):  # one file, or shards of a large model
            state.update(safetensors.torch.load_file(str(shard)))
        load_shareable_state(self.policy, state)  # save_pretrained stores tied weights once
        extra = torch.load(path / "learner_state.pt", weights_only=False, map_location=self.device)
        self.optimizer.load_state_dict(extra["optimizer"])
        torch.set_rng_state(extra["torch_rng"].cpu())
        np.random.set_state(extra["numpy_rng"])
        random.setstate(extra["python_rng"])
