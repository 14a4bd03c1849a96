"""SCPO: self-consistency preference optimisation (Prasad et al., 2024, arXiv 2411.04109), without labels.

Each round, for every unlabelled problem x, the round's model M_t samples k answers at temperature > 0 and each
answer votes for its final answer: V(y) = number of the k samples whose final answer equals y's.

- chosen y+: a sample of the most voted answer; rejected y-: a sample of the least voted one. A sample without a
  final answer votes for nothing and counts V = 0, so it is the first candidate for y- (the least consistent);
  ties go to the sample drawn first. A problem needs two different vote counts to give a pair.
- problems whose top vote share V(y+) / k is under the threshold tau are dropped;
- the pairs train M_{t+1}, initialised from M_t, with the weighted DPO + NLL loss of `score.selftrain.losses`
  (vote-margin weight w = (V(y+) - V(y-)) / k) against the frozen M_t (`scpo.reference=round`, the paper's
  choice; `base` keeps model.path as the reference in every round).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from score.learner import SequenceBatch
from score.selftrain.common import Sample, batch_of, vote_counts
from score.selftrain.config import ScpoConfig
from score.selftrain.losses import scpo_objective


@dataclass
class Pair:
    chosen: Sample
    rejected: Sample
    weight: float
    """(V(y+) - V(y-)) / k."""
    share: float
    """V(y+) / k."""


def preference_pair(group: list[Sample]) -> Pair | None:
    """The SCPO pair of one problem's k samples, or None when all of them got the same number of votes.

    >>> from score.engines.base import Completion
    >>> def group(*keys):
    ...     return [Sample(None, i, [], Completion([], [], True), str(k), k) for i, k in enumerate(keys)]
    >>> pair = preference_pair(group("7", "5", "7", "7", "6", None))
    >>> pair.chosen.index, pair.rejected.index, pair.weight, pair.share
    (0, 5, 0.5, 0.5)
    >>> preference_pair(group("7", "5", "7", "6")).rejected.index, preference_pair(group("7", "7")) is None
    (1, True)
    """
    counts = vote_counts(s.key for s in group)
    votes = [counts[s.key] if s.key is not None else 0 for s in group]
    top, bottom = max(votes), min(votes)
    if top == bottom:
        return None
    k = len(group)
    return Pair(group[votes.index(top)], group[votes.index(bottom)], (top - bottom) / k, top / k)


class Scpo:
    """SCPO as a self-training method of `score.selftrain.loop`."""

    name = "scpo"
    uses_reference = True

    def __init__(self, cfg: ScpoConfig) -> None:
        self.cfg = cfg
        self.objective = functools.partial(scpo_objective, beta=cfg.beta, alpha=cfg.alpha)

    def reference(self, round_model: str, base_model: str) -> str:
        return round_model if self.cfg.reference == "round" else base_model

    def round_data(self, groups: list[list[Sample]], ctx) -> tuple[SequenceBatch, list[Sample], dict[str, float]]:
        """The round's preference pairs (rows: chosen, rejected, ...), the samples taken as right (the chosen ones)
        and the vote statistics."""
        pairs = [pair for pair in map(preference_pair, groups) if pair is not None]
        kept = [pair for pair in pairs if pair.share >= self.cfg.vote_threshold]
        rows = [s for pair in kept for s in (pair.chosen, pair.rejected)]
        batch = batch_of(rows, [pair.weight for pair in kept for _ in range(2)], group_size=2)
        stats = {"pairs": float(len(pairs)), "kept": float(len(kept)),
                 "kept_frac": len(kept) / len(groups) if groups else 0.0,
                 "margin_weight_mean": sum(p.weight for p in kept) / len(kept) if kept else 0.0}
        return batch, [pair.chosen for pair in kept], stats
