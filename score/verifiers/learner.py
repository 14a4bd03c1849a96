"""The learner of the scalar-head verifiers (ORM, PRM): SCoRe's `Learner` with a per-token scoring head.

The model is the base transformer with a linear head of one output on every token's last hidden state
(`AutoModelForTokenClassification`, num_labels=1; the head starts random, the body from the base model).
`token_values` returns the head's logit after each token, aligned as `Learner.token_logprobs` aligns log-probs, so
`Learner.train_sequences`, its micro-batching, gradient clipping, optimizer, checkpoints and the Ray actor wrapper
are SCoRe's own. A saved checkpoint is a Hugging Face folder that `AutoModelForTokenClassification` loads as is.
SimPO verifiers need no head: they train the language model itself with the plain `Learner`.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from score.learner import Learner


def load_head_model(path: str, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A model with a one-output head on every token: a verifier checkpoint, or a base model (new random head)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a base model has no head yet: its "newly initialized" report is expected
    try:
        model = AutoModelForTokenClassification.from_pretrained(path, num_labels=1, dtype=dtype)
    finally:
        hf_logging.set_verbosity(verbosity)
    if isinstance(getattr(model, "dropout", None), torch.nn.Dropout):
        model.dropout = torch.nn.Identity()  # transformers puts dropout 0.1 before the head; training and scoring
    return model                             # read the same function without it


class HeadLearner(Learner):
    """`Learner` whose policy is a head model; no reference model (no verifier objective uses one)."""

    def __init__(self, model_path: str, *, init_from: str | None = None, dtype: str = "float32", lr: float = 1e-5,
                 weight_decay: float = 0.0, seed: int = 0, num_threads: int | None = None, **_: Any) -> None:
        if num_threads:
            torch.set_num_threads(num_threads)
        torch.manual_seed(seed)  # the head's initialisation
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.rank = 0  # one process: a verifier head is not sharded (learner.num_ranks=1)
        self.policy = load_head_model(init_from or model_path).to(self.device).eval()  # no dropout anywhere
        self.reference = None
        self.chunk = 0
        self.tokenizer = AutoTokenizer.from_pretrained(init_from or model_path)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.autocast = dtype == "bfloat16"
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=lr, weight_decay=weight_decay)
        self.sync_bucket_bytes = 256 << 20
        self._buckets = None

    def token_values(self, model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     positions: torch.Tensor | None = None) -> torch.Tensor:
        """The head's logit after tokens 1..L-1, [B, L-1] (column j-1: after reading token j), at every position:
        a one-output head costs nothing next to the model, so `positions` is not needed."""
        if model is None:
            raise ValueError("a head verifier has no reference model: train_sequences(use_reference=False)")
        return model(input_ids=input_ids, attention_mask=attention_mask).logits[:, 1:, 0].float()

    def parameter_checksums(self) -> dict[str, float]:
        return {"policy": float(sum(p.detach().abs().sum() for p in self.policy.parameters()))}
