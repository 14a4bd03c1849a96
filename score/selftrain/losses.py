"""The self-training losses as pure functions, and their adapters to `Learner.train_sequences`.

SCPO (Prasad et al., 2024, "Self-Consistency Preference Optimization", arXiv 2411.04109), for one preference pair
(x, y+, y-) whose answers got V(y+) and V(y-) of the k votes:

    w(x) = (V(y+) - V(y-)) / k
    l(x) = -w(x) * log sigmoid(beta * [log M(y+|x) - log M_t(y+|x)] - beta * [log M(y-|x) - log M_t(y-|x)])
           - alpha * w(x) * log M(y+|x) / |y+|

M is the policy, M_t the frozen model of the round that sampled the pair (the reference), log M(y|x) the sum of the
response tokens' log-probs and |y+| the number of tokens of y+. The loss of a batch is the mean of l over its pairs.

Weighted SFT (IWSI, LMSI and the filter baselines): each kept sample's mean token negative log-likelihood, times
its weight (1 for a kept sample), averaged over the samples of the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sequence_logprob(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log M(y|x) of each row: the sum of the masked token log-probs, shape [B].

    >>> sequence_logprob(torch.tensor([[-9.0, -1.0, -2.0]]), torch.tensor([[0.0, 1.0, 1.0]])).tolist()
    [-3.0]
    """
    return (logp * mask).sum(dim=-1)


def scpo_pair_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    weight: torch.Tensor,
    chosen_length: torch.Tensor,
    *,
    beta: float,
    alpha: float,
) -> torch.Tensor:
    """SCPO's loss l(x) of each pair (see the module docstring), shape [P], from sequence log-probs [P].

    >>> l = scpo_pair_loss(torch.tensor([-2.0]), torch.tensor([-3.0]), torch.tensor([-2.5]), torch.tensor([-2.5]),
    ...                    torch.tensor([0.5]), torch.tensor([4.0]), beta=0.5, alpha=1.0)
    >>> round(l.item(), 5)  # 0.5 * log(1 + e^-0.5) + 1.0 * 0.5 * 2 / 4
    0.48704
    """
    margin = beta * ((chosen - ref_chosen) - (rejected - ref_rejected))
    return -weight * F.logsigmoid(margin) - alpha * weight * chosen / chosen_length


def weighted_nll(logp: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Each row's mean token negative log-likelihood over its masked tokens, times its weight, shape [B].

    >>> weighted_nll(torch.tensor([[-1.0, -3.0], [-2.0, -4.0]]), torch.ones(2, 2), torch.tensor([1.0, 0.5])).tolist()
    [2.0, 1.5]
    """
    return weight * -sequence_logprob(logp, mask) / mask.sum(dim=-1).clamp(min=1.0)


# ----- adapters: objective(logp, ref_logp, mask, values) -> (loss summed over groups, stats summed) ----------------


def scpo_objective(logp: torch.Tensor, ref_logp: torch.Tensor | None, mask: torch.Tensor,
                   values: dict[str, torch.Tensor], *, beta: float, alpha: float) -> tuple[torch.Tensor, dict]:
    """SCPO on rows (chosen, rejected, chosen, rejected, ...); the pair's weight is read from the chosen row."""
    if ref_logp is None:
        raise ValueError("scpo_objective needs the reference log-probs (train_sequences(use_reference=True))")
    policy = sequence_logprob(logp, mask)
    reference = sequence_logprob(ref_logp, mask)
    chosen, rejected = policy[0::2], policy[1::2]
    ref_chosen, ref_rejected = reference[0::2], reference[1::2]
    weight = values["weight"][0::2]
    losses = scpo_pair_loss(chosen, rejected, ref_chosen, ref_rejected, weight, mask[0::2].sum(dim=-1).clamp(min=1.0),
                            beta=beta, alpha=alpha)
    with torch.no_grad():
        margin = (chosen - ref_chosen) - (rejected - ref_rejected)
        stats = {
            "pref_accuracy": float((margin > 0).sum()),  # pairs whose implicit reward ranks chosen first
            "logratio_margin": float(margin.sum()),
            "logp_chosen": float(chosen.sum()),
            "logp_rejected": float(rejected.sum()),
            "pair_weight": float(weight.sum()),
        }
    return losses.sum(), stats


def sft_objective(logp: torch.Tensor, ref_logp: torch.Tensor | None, mask: torch.Tensor,
                  values: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """Weighted SFT: one row per sample, weight in values["weight"]."""
    losses = weighted_nll(logp, mask, values["weight"])
    unweighted = weighted_nll(logp.detach(), mask, torch.ones_like(values["weight"]))
    return losses.sum(), {"nll": float(unweighted.sum())}
