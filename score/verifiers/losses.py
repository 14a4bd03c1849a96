"""The verifiers' losses and score aggregations as pure functions, and their adapters to `Learner.train_sequences`.

Shapes follow `Learner.train_sequences`: a row is [prompt x][solution y]; `mask` [B, L-1] is 1 on the solution's
tokens (shifted like the log-probs, so column j-1 is token j); a head's output `scores` [B, L-1] is the logit
read after token j (`score.verifiers.learner.HeadLearner`), and `logp` [B, L-1] the log-prob of token j.

- ORM (Cobbe et al., 2021): a scalar logit s per solution, p(correct) = sigmoid(s), binary cross-entropy with the
  label c in [0, 1]. head="final": s read after the solution's last token; head="every": every solution token
  predicts c and the row's loss is the mean of their BCEs (inference still reads the final token).
- SimPO verifier (Meng et al., 2024): the score of y is its length-normalised log-probability
  r(y) = log pi(y|x) / |y|, with no reference model; on a pair (y+ correct, y- incorrect)
  l = -log sigmoid(beta * r(y+) - beta * r(y-) - gamma).
- PRM (Lightman et al., 2023; Math-Shepherd labels): a logit after the last token of every step, BCE against the
  step's label, averaged over the row's steps. The PRM mask carries the labels: 0 = no step ends at this token,
  1 = a step labelled bad ends here, 2 = a step labelled good ends here (see `prm_mask`). A solution's score is
  the min or the product of its step probabilities (`aggregate`).
- Auxiliary confidence loss (Burns et al., 2023, weak-to-strong): with weak labels y_w and the student's own
  hardened predictions t = 1[p > tau] (tau: the batch quantile that makes as many positives as the weak labels
  have), l = (1 - alpha) * BCE(p, y_w) + alpha * BCE(p, t).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

# ----- positions ----------------------------------------------------------------------------------------------------


def last_positions(mask: torch.Tensor) -> torch.Tensor:
    """Column of each row's last nonzero mask entry, [B] (0 for an empty row).

    >>> last_positions(torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])).tolist()
    [2, 0]
    """
    columns = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask > 0, columns, torch.zeros_like(columns)).max(dim=1).values


def final_scores(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The head's logit after each row's last solution token, [B]."""
    return scores.gather(1, last_positions(mask).unsqueeze(1)).squeeze(1)


# ----- ORM ----------------------------------------------------------------------------------------------------------


def orm_loss(scores: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, *, head: str = "final") -> torch.Tensor:
    """Binary cross-entropy of each row, [B]; labels in [0, 1] (soft labels allowed: a weak supervisor's p).

    >>> s = torch.tensor([[9.0, 0.0, 2.0]]); m = torch.tensor([[0.0, 1.0, 1.0]])
    >>> round(orm_loss(s, m, torch.tensor([1.0])).item(), 5)  # -log sigmoid(2)
    0.12693
    >>> round(orm_loss(s, m, torch.tensor([1.0]), head="every").item(), 5)  # (log 2 + 0.12693) / 2
    0.41004
    """
    if head == "final":
        return F.binary_cross_entropy_with_logits(final_scores(scores, mask), labels, reduction="none")
    if head == "every":
        per_token = F.binary_cross_entropy_with_logits(scores, labels.unsqueeze(1).expand_as(scores), reduction="none")
        return (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    raise ValueError(f"verifier.orm_head: {head!r} is not one of final, every")


def hardened_targets(logits: torch.Tensor, weak_labels: torch.Tensor) -> torch.Tensor:
    """The student's own predictions as hard targets: 1[p >= tau], tau the (1 - mean weak label) quantile of the
    batch's probabilities, so the targets have the weak labels' share of positives. No gradient.

    >>> hardened_targets(torch.tensor([2.0, -1.0, 0.5, -3.0]), torch.tensor([1.0, 0.0, 0.0, 0.0])).tolist()
    [1.0, 0.0, 0.0, 0.0]
    """
    probs = torch.sigmoid(logits.detach().float())
    positives = float(weak_labels.float().mean())
    if positives <= 0:
        return torch.zeros_like(probs)
    tau = torch.quantile(probs, min(max(1.0 - positives, 0.0), 1.0))
    return (probs >= tau).float()


def confidence_loss(logits: torch.Tensor, weak_labels: torch.Tensor, *, alpha: float) -> torch.Tensor:
    """Burns et al.'s auxiliary confidence loss per row, [B], from final logits and (soft) weak labels:
    (1 - alpha) * BCE(p, y_w) + alpha * BCE(p, hardened_targets).

    >>> l = confidence_loss(torch.tensor([2.0, -1.0]), torch.tensor([0.0, 1.0]), alpha=0.5)
    >>> [round(v, 5) for v in l.tolist()]  # targets t = (1, 0): 0.5 * BCE(., y_w) + 0.5 * BCE(., t)
    [1.12693, 0.81326]
    """
    weak = F.binary_cross_entropy_with_logits(logits, weak_labels, reduction="none")
    own = F.binary_cross_entropy_with_logits(logits, hardened_targets(logits, weak_labels), reduction="none")
    return (1.0 - alpha) * weak + alpha * own


# ----- SimPO --------------------------------------------------------------------------------------------------------


def simpo_score(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Length-normalised log-probability of each row's solution, [B]: the SimPO verifier's score.

    >>> simpo_score(torch.tensor([[-9.0, -1.0, -2.0]]), torch.tensor([[0.0, 1.0, 1.0]])).tolist()
    [-1.5]
    """
    return (logp * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def simpo_pair_loss(chosen: torch.Tensor, rejected: torch.Tensor, *, beta: float, gamma: float) -> torch.Tensor:
    """-log sigmoid(beta * chosen - beta * rejected - gamma) per pair, from SimPO scores [P].

    >>> round(simpo_pair_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), beta=2.0, gamma=1.0).item(), 5)
    0.31326
    """
    return -F.logsigmoid(beta * (chosen - rejected) - gamma)


# ----- PRM ----------------------------------------------------------------------------------------------------------


def prm_mask(length: int, prompt_length: int, step_end_tokens: Sequence[int], labels: Sequence[float]) -> list[int]:
    """The PRM's loss mask for one row of `length` tokens: 1 + label at the token (counted from the solution's
    first token) where each step ends, 0 elsewhere.

    >>> prm_mask(6, 2, [1, 3], [1.0, 0.0])
    [0, 0, 0, 2, 0, 1]
    """
    if len(step_end_tokens) != len(labels):
        raise ValueError(f"{len(step_end_tokens)} step ends but {len(labels)} step labels")
    mask = [0] * length
    for end, label in zip(step_end_tokens, labels):
        mask[prompt_length + end] = 1 + int(label > 0.5)
    return mask


def prm_loss(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean step BCE of each row, [B], with the labels read from the PRM mask (1: bad step, 2: good step).

    >>> s = torch.tensor([[0.0, 0.0, 3.0]]); m = torch.tensor([[0.0, 2.0, 1.0]])
    >>> round(prm_loss(s, m).item(), 5)  # (log 2 + -log sigmoid(-3)) / 2
    1.87087
    """
    steps = (mask > 0).float()
    labels = (mask > 1.5).float()
    per_token = F.binary_cross_entropy_with_logits(scores, labels, reduction="none")
    return (per_token * steps).sum(dim=1) / steps.sum(dim=1).clamp(min=1.0)


def aggregate(step_probs: Sequence[float], how: str) -> float:
    """A solution's score from its steps' probabilities of being right: min (the weakest step) or prod (all steps
    right, as independent events). No step scores 0.

    >>> aggregate([0.9, 0.5, 0.8], "min"), round(aggregate([0.9, 0.5, 0.8], "prod"), 5)
    (0.5, 0.36)
    """
    if not step_probs:
        return 0.0
    if how == "min":
        return float(min(step_probs))
    if how == "prod":
        return float(math.prod(step_probs))
    raise ValueError(f"verifier.prm_aggregate: {how!r} is not one of min, prod")


# ----- adapters: objective(values_per_token, ref, mask, values) -> (loss summed over groups, stats summed) ----------


def orm_objective(scores: torch.Tensor, ref: torch.Tensor | None, mask: torch.Tensor, values: dict[str, torch.Tensor],
                  *, head: str = "final", confidence_alpha: float = 0.0) -> tuple[torch.Tensor, dict]:
    """ORM rows with values["label"]; confidence_alpha > 0 adds the auxiliary confidence loss (final logits)."""
    labels = values["label"]
    losses = orm_loss(scores, mask, labels, head=head)
    final = final_scores(scores, mask)
    if confidence_alpha > 0:  # (1 - alpha) * the ORM loss + alpha * BCE against the student's hardened predictions
        own = F.binary_cross_entropy_with_logits(final, hardened_targets(final, labels), reduction="none")
        losses = (1.0 - confidence_alpha) * losses + confidence_alpha * own
    with torch.no_grad():
        stats = {"accuracy": float(((final > 0).float() == (labels > 0.5).float()).sum()),
                 "p_correct": float(torch.sigmoid(final).sum())}
    return losses.sum(), stats


def simpo_objective(logp: torch.Tensor, ref: torch.Tensor | None, mask: torch.Tensor, values: dict[str, torch.Tensor],
                    *, beta: float, gamma: float) -> tuple[torch.Tensor, dict]:
    """SimPO on rows (correct, incorrect, correct, incorrect, ...); no reference model."""
    scores = simpo_score(logp, mask)
    chosen, rejected = scores[0::2], scores[1::2]
    losses = simpo_pair_loss(chosen, rejected, beta=beta, gamma=gamma)
    with torch.no_grad():
        stats = {"pair_accuracy": float((chosen > rejected).sum()), "margin": float((chosen - rejected).sum())}
    return losses.sum(), stats


def prm_objective(scores: torch.Tensor, ref: torch.Tensor | None, mask: torch.Tensor, values: dict[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, dict]:
    """PRM rows whose mask carries the step labels (`prm_mask`)."""
    losses = prm_loss(scores, mask)
    with torch.no_grad():
        steps = mask > 0
        right = ((scores > 0) == (mask > 1.5)) & steps
        # per row, summed over rows: train_sequences divides every stat by the number of rows
        stats = {"step_accuracy": float((right.sum(1) / steps.sum(1).clamp(min=1)).sum()),
                 "steps": float(steps.sum())}
    return losses.sum(), stats
