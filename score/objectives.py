"""SCoRe's objective as per-token quantities: rewards, KL weights, baselines, advantages and the loss.

A sequence is [prompt x][attempt y1][instruction p][attempt y2]. `turn_ids` marks each token: 0 for prompt and
instruction tokens (never trained), 1 for y1 and 2 for y2. The discount between turns is 0: each turn's tokens see
only their own turn's reward and their own turn's KL terms.

Stage I:  turn 1 gets no task reward and KL weight beta2; turn 2 gets r2 and KL weight beta1.
Stage II: turn 1 gets r1; turn 2 gets r2 + alpha * (r2 - r1); KL weight beta1 on both.
"""

from __future__ import annotations

import torch

from rewards.shaping import turn_rewards


def kl_weights(stage: int, beta1: float, beta2: float) -> tuple[float, float]:
    """KL coefficient of (turn 1, turn 2).

    >>> kl_weights(1, beta1=0.01, beta2=0.1)
    (0.1, 0.01)
    >>> kl_weights(2, beta1=0.01, beta2=0.1)
    (0.01, 0.01)
    """
    if stage == 1:
        return beta2, beta1
    if stage == 2:
        return beta1, beta1
    raise ValueError(f"stage must be 1 or 2, got {stage!r}")


def per_turn_rewards(r1: torch.Tensor, r2: torch.Tensor, *, stage: int, alpha: float) -> torch.Tensor:
    """Scalar reward of each turn for every sample: shape [B, 2] from binary rewards r1, r2 of shape [B]."""
    pairs = [turn_rewards(float(a), float(b), stage=stage, alpha=alpha) for a, b in zip(r1.tolist(), r2.tolist())]
    return torch.tensor(pairs, dtype=torch.float32).reshape(-1, 2)


def subtract_baseline(rewards: torch.Tensor, group: torch.Tensor, kind: str) -> torch.Tensor:
    """Advantage = reward - baseline, per column (turn), for rewards [B, T] and prompt ids `group` [B].

    rloo: the mean reward of the other samples of the same prompt (leave-one-out).
    mean: the batch mean of the column. none: no baseline (plain REINFORCE).

    >>> r = torch.tensor([[1.0], [0.0], [0.0], [5.0]]); g = torch.tensor([0, 0, 0, 1])
    >>> subtract_baseline(r[:3], g[:3], "rloo").squeeze(1).tolist()
    [1.0, -0.5, -0.5]
    """
    if kind == "none":
        return rewards.clone()
    if kind == "mean":
        return rewards - rewards.mean(dim=0, keepdim=True)
    if kind != "rloo":
        raise ValueError(f"unknown baseline {kind!r}")
    out = torch.empty_like(rewards)
    for g in group.unique():
        rows = group == g
        count = int(rows.sum())
        if count < 2:
            raise ValueError("the leave-one-out baseline needs at least 2 samples per prompt")
        total = rewards[rows].sum(dim=0, keepdim=True)
        out[rows] = rewards[rows] - (total - rewards[rows]) / (count - 1)
    return out


def turn_gather(turn_ids: torch.Tensor, per_turn: torch.Tensor) -> torch.Tensor:
    """Spread a per-turn value [B, 2] over tokens [B, L]: turn-1 tokens get column 0, turn-2 tokens column 1, others 0."""
    zeros = torch.zeros_like(per_turn[:, :1])
    table = torch.cat([zeros, per_turn], dim=1)  # column k holds the value of turn k (0: untrained)
    return table.gather(1, turn_ids.long())


def kl_to_go(kl: torch.Tensor, turn_ids: torch.Tensor) -> torch.Tensor:
    """Sum of per-token KL from each token to the end of its own turn (reward-to-go with gamma=1 within a turn and
    gamma=0 across turns). Tokens outside both turns get 0.

    >>> kl = torch.tensor([[9.0, 1.0, 2.0, 9.0, 3.0, 4.0]]); t = torch.tensor([[0, 1, 1, 0, 2, 2]])
    >>> kl_to_go(kl, t).tolist()
    [[0.0, 3.0, 2.0, 0.0, 7.0, 4.0]]
    """
    out = torch.zeros_like(kl)
    for turn in (1, 2):
        masked = torch.where(turn_ids == turn, kl, torch.zeros_like(kl))
        suffix = masked.flip(1).cumsum(1).flip(1)
        out = torch.where(turn_ids == turn, suffix, out)
    return out


def token_advantages(
    turn_ids: torch.Tensor,
    turn_advantages: torch.Tensor,
    kl: torch.Tensor,
    turn_kl_weights: torch.Tensor,
    kl_mode: str,
) -> torch.Tensor:
    """Advantage of every token [B, L].

    kl_mode='reward' (k1 in the reward): A = (R_turn - baseline) - w_turn * sum of k1 from this token to the end of
    its turn. kl_mode='loss': A = R_turn - baseline; the KL is added to the loss instead (see `score_loss`).
    """
    advantages = turn_gather(turn_ids, turn_advantages)
    if kl_mode == "reward":
        advantages = advantages - turn_gather(turn_ids, turn_kl_weights) * kl_to_go(kl, turn_ids)
    return advantages * (turn_ids > 0)


def k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Low-variance, non-negative KL estimator exp(r) - r - 1 with r = log pi_ref - log pi."""
    log_ratio = (ref_logp - logp).clamp(-20.0, 20.0)
    return torch.exp(log_ratio) - log_ratio - 1.0


def score_loss(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    turn_ids: torch.Tensor,
    advantages: torch.Tensor,
    turn_kl_weights: torch.Tensor,
    *,
    kl_mode: str,
    is_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token loss [B, L] whose gradient is the REINFORCE gradient (plus the k3 KL gradient in 'loss' mode).

    -A * exp(logp - stop_grad(logp)) equals -A in value and has gradient -A * grad(logp): the on-policy form that
    a truncated importance weight (rollout vs learner) can multiply. Untrained tokens give 0.
    """
    ratio = torch.exp(logp - logp.detach())
    weights = advantages if is_weights is None else advantages * is_weights
    loss = -weights * ratio
    if kl_mode == "loss":
        loss = loss + turn_gather(turn_ids, turn_kl_weights) * k3(logp, ref_logp)
    return loss * (turn_ids > 0)
