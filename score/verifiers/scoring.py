"""How a verifier reads a solution (shared by training and inference) and `Verifier`, a trained one in this process.

A row is the verifier's own chat rendering of the problem's first turn (its tokenizer, its template) followed by the
solution's text encoded with the same tokenizer, so a verifier can judge any generator's solutions. The mask marks
the solution's tokens (ORM, SimPO) or, for a PRM, the last token of every step (`score.verifiers.steps`).

Scores: ORM p(correct) = sigmoid(logit after the last token); PRM the min or product of the steps' sigmoids;
SimPO the solution's mean token log-probability (a log-probability, not a probability: compare it with others).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from score.rollout import ChatRenderer
from score.verifiers.losses import aggregate, final_scores, prm_mask, simpo_score
from score.verifiers.steps import StepConfig, merge_steps, offsets_step_ends, step_ends

SPEC_FILE = "verifier.json"


@dataclass
class Row:
    input_ids: list[int]
    loss_mask: list[int]
    step_count: int = 0


def encode_row(renderer: ChatRenderer, messages: list[dict[str, str]], solution: str, *, kind: str,
               ends: Sequence[int] | None = None, labels: Sequence[float] | None = None, max_length: int = 0) -> Row:
    """One verifier row. kind=prm marks the steps (labels, when given, go into the mask as 1 + label; at inference
    every step is marked 2). Rows longer than max_length (> 0) lose tokens from the left."""
    prompt = renderer.first_turn(messages)
    encoded = renderer.tokenizer(solution, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    if kind == "prm":
        ends = list(ends) if ends is not None else []
        positions = offsets_step_ends(encoded["offset_mapping"], ends) if ids else []
        positions, step_labels = merge_steps(positions, list(labels) if labels is not None else [1.0] * len(positions))
        mask = prm_mask(len(prompt) + len(ids), len(prompt), positions, step_labels)
    else:
        mask = [0] * len(prompt) + [1] * len(ids)
    full = prompt + ids
    if max_length and len(full) > max_length:
        full, mask = full[-max_length:], mask[-max_length:]
    return Row(full, mask, sum(1 for m in mask if m))


def read_spec(path: str | Path) -> dict[str, Any]:
    spec = Path(path) / SPEC_FILE
    if not spec.is_file():
        raise FileNotFoundError(f"{path} is not a verifier (no {SPEC_FILE}); train one with `score verifier train`")
    return json.loads(spec.read_text())


class Verifier:
    """A trained verifier (OUTPUT_DIR/final of `score verifier train`) scoring solutions in this process."""

    def __init__(self, path: str | Path, *, batch_size: int = 32, aggregate_how: str | None = None,
                 num_threads: int | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from score.verifiers.learner import load_head_model

        if num_threads:
            torch.set_num_threads(num_threads)
        self.path = str(path)
        self.spec = read_spec(path)
        self.kind = self.spec["kind"]
        self.aggregate_how = aggregate_how or self.spec.get("prm_aggregate", "min")
        self.steps = StepConfig(**self.spec.get("steps", {}))
        self.max_length = int(self.spec.get("max_length", 0))
        self.renderer = ChatRenderer(AutoTokenizer.from_pretrained(path))
        self.pad_id = self.renderer.tokenizer.pad_token_id or 0
        self.model = (AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32) if self.kind == "simpo"
                      else load_head_model(str(path))).eval()
        self.batch_size = batch_size

    def rows(self, messages: Sequence[list[dict[str, str]]], solutions: Sequence[str]) -> list[Row]:
        return [encode_row(self.renderer, m, s, kind=self.kind, max_length=self.max_length,
                           ends=step_ends(s, self.steps) if self.kind == "prm" else None)
                for m, s in zip(messages, solutions, strict=True)]

    @torch.no_grad()
    def _values(self, rows: list[Row]) -> tuple[torch.Tensor, torch.Tensor]:
        """The learner's per-token values (head logits or log-probs) and masks, [B, L-1], for a padded batch."""
        from score.learner import token_logprobs

        width = max(len(r.input_ids) for r in rows)
        ids = torch.tensor([r.input_ids + [self.pad_id] * (width - len(r.input_ids)) for r in rows])
        attention = torch.tensor([[1] * len(r.input_ids) + [0] * (width - len(r.input_ids)) for r in rows])
        mask = torch.tensor([r.loss_mask + [0] * (width - len(r.loss_mask)) for r in rows])[:, 1:].float()
        if self.kind == "simpo":
            return token_logprobs(self.model, ids, attention, positions=mask > 0), mask
        return self.model(input_ids=ids, attention_mask=attention).logits[:, 1:, 0].float(), mask

    def score(self, messages: Sequence[list[dict[str, str]]], solutions: Sequence[str]) -> list[float]:
        """One score per solution (higher: more likely right)."""
        return [detail["score"] for detail in self.step_scores(messages, solutions)]

    def step_scores(self, messages: Sequence[list[dict[str, str]]], solutions: Sequence[str]) -> list[dict[str, Any]]:
        """Per solution: {"score": ..., "steps": [p per step]} (steps only for a PRM)."""
        rows = self.rows(messages, solutions)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i].input_ids))  # similar lengths pad little
        results: dict[int, dict[str, Any]] = {}
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            values, mask = self._values([rows[i] for i in chunk])
            if self.kind == "simpo":
                scores = simpo_score(values, mask).tolist()
                for i, s in zip(chunk, scores):
                    results[i] = {"score": float(s) if rows[i].step_count else float("-inf")}
            elif self.kind == "orm":
                probs = torch.sigmoid(final_scores(values, mask)).tolist()
                for i, p in zip(chunk, probs):
                    results[i] = {"score": float(p) if rows[i].step_count else 0.0}  # an empty solution is wrong
            else:
                probs = torch.sigmoid(values)
                for b, i in enumerate(chunk):
                    steps = probs[b][mask[b] > 0].tolist()
                    results[i] = {"score": aggregate(steps, self.aggregate_how), "steps": steps}
        return [results[i] for i in range(len(rows))]
