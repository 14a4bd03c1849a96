"""SCoRe's per-turn rewards (Kumar et al., 2024, Stage I and Stage II)."""

from __future__ import annotations


def progress_bonus(r1: float, r2: float, alpha: float) -> float:
    """Stage II turn-2 reward: r2 + alpha * (r2 - r1).

    With alpha = 10 the four outcomes of two binary attempts give:

    >>> [progress_bonus(r1, r2, alpha=10.0) for r1, r2 in [(0, 1), (1, 1), (1, 0), (0, 0)]]
    [11.0, 1.0, -10.0, 0.0]
    """
    return float(r2 + alpha * (r2 - r1))


def turn_rewards(r1: float, r2: float, *, stage: int, alpha: float) -> tuple[float, float]:
    """The scalar reward each turn's tokens see (gamma = 0 between turns).

    Stage I trains only attempt 2 on the task; attempt 1 gets no task reward (only the KL that pins it to the base).
    Stage II rewards attempt 1 with r1 and attempt 2 with the shaped reward.

    >>> turn_rewards(1.0, 0.0, stage=1, alpha=10.0)
    (0.0, 0.0)
    >>> turn_rewards(0.0, 1.0, stage=1, alpha=10.0)
    (0.0, 1.0)
    >>> turn_rewards(1.0, 0.0, stage=2, alpha=10.0)
    (1.0, -10.0)
    """
    if stage == 1:
        return 0.0, float(r2)
    if stage == 2:
        return float(r1), progress_bonus(r1, r2, alpha)
    raise ValueError(f"stage must be 1 or 2, got {stage!r}")
