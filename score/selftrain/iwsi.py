"""IWSI: importance-weighted self-improvement (Jiang et al., 2024, arXiv 2408.09849), and its baselines.

Each round the round's model samples m answers per unlabelled problem (the paper: m = 15 at T = 1.1) and:

- `iwsi.filter=majority` (LMSI, Huang et al. 2022): keep every sample whose final answer is the majority answer;
- `entropy`: the same, only for problems whose normalised answer entropy H / log(answered samples) is at most
  `iwsi.entropy_max` (problems with a single answered sample are dropped);
- `none`: keep every sample;
- `ds` (IWSI): the majority samples whose DS weight is at or below the `keep_percentile`-th percentile of the DS
  weights of all majority samples of the round.

The model then fine-tunes (SFT) on the kept samples.

DS weight, as the authors' code computes it (record_loss.py / record_weights.py / filter_data.py "K-Mixed"): with
L(s) the round model's mean token negative log-likelihood of sample s and L_v the mean of L over a tiny labelled
validation set (gold answers; at most 5% of the training set in the paper),

    r(s) = L_v / L(s),        DS(s) = max(r(s), 1 / r(s))   (>= 1; 1: the sample looks like the validation data).

Two choices differ from that code and are ours: L is taken over the answer tokens only (the code also counts the
question; for short answers the shared prompt would dominate the mean), and r is not clipped (the code clips r to
[0, 2] and 1/r to 5, which makes DS asymmetric above 2).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from envs.base import Environment, Problem
from score.learner import SequenceBatch
from score.rollout import ChatRenderer
from score.selftrain.common import Sample, batch_of, majority, percentiles, vote_counts
from score.selftrain.config import IwsiConfig
from score.selftrain.losses import sft_objective


def mean_nll(token_logprobs: Sequence[float], mask: Sequence[int]) -> float:
    """Mean negative log-likelihood of the masked tokens. `token_logprobs[j]` is log p(token j+1 | tokens <= j) (as
    `Learner.sequence_logprobs` returns them) and `mask` is aligned with the tokens.

    >>> mean_nll([-0.5, -1.0, -2.0], [0, 0, 1, 1])
    1.5
    """
    picked = [-lp for lp, m in zip(token_logprobs, mask[1:]) if m]
    return sum(picked) / len(picked) if picked else 0.0


def ds_weight(sample_nll: float, valid_nll: float) -> float:
    """DS(s) = max(r, 1/r) with r = L_v / L(s). Equal losses give 1; a loss twice or half L_v gives 2.

    >>> ds_weight(1.0, 1.0), ds_weight(0.5, 1.0), ds_weight(2.0, 1.0)
    (1.0, 2.0, 2.0)
    """
    if sample_nll <= 0 or valid_nll <= 0:
        return math.inf  # a zero loss carries no evidence of being in distribution: it is filtered first
    ratio = valid_nll / sample_nll
    return max(ratio, 1.0 / ratio)


def at_or_below_percentile(values: Sequence[float], fraction: float) -> list[bool]:
    """Which values are at or below the `100 * fraction`-th percentile (linear interpolation) of all of them.

    >>> at_or_below_percentile([1.0, 5.0, 2.0, 3.0, 4.0], 0.8)
    [True, False, True, True, True]
    """
    if not len(values):
        return []
    finite = np.asarray(values, dtype=float)
    threshold = np.percentile(np.where(np.isfinite(finite), finite, np.finfo(float).max), 100 * fraction)
    return [bool(v <= threshold) for v in finite]


def normalized_entropy(keys: Sequence[str | None]) -> float | None:
    """Entropy of the answered samples' answers over log(number answered); None with fewer than two answered.

    >>> normalized_entropy(["1", "1", "2", "2"]), normalized_entropy(["1", "1", None]), normalized_entropy(["1"])
    (0.5, 0.0, None)
    """
    counts = vote_counts(keys)
    total = sum(counts.values())
    if total < 2:
        return None
    probs = np.array(list(counts.values()), dtype=float) / total
    return float((probs * -np.log(probs)).sum() / math.log(total))


def validation_sequences(problems: list[Problem], env: Environment, renderer: ChatRenderer, template: str
                         ) -> list[tuple[list[int], list[int]]]:
    """The labelled validation set as (ids, answer mask): the first-turn prompt, then the gold answer written with
    `template` (fields: {reference} and the problem's meta) and the end-of-turn token, as the model would end it."""
    eos = renderer.tokenizer.eos_token or ""
    out = []
    for p in problems:
        prompt = renderer.first_turn(env.first_turn_messages(p))
        try:
            text = template.format_map({**p.meta, "reference": p.reference})
        except KeyError as err:
            raise ValueError(f"iwsi.valid_template uses {{{err.args[0]}}}, which problem {p.id!r} lacks; it has "
                             f"{{reference}} and {sorted(p.meta)}") from None
        answer = renderer.encode(text + eos)
        out.append((prompt + answer, [0] * len(prompt) + [1] * len(answer)))
    return out


class Iwsi:
    """IWSI (and LMSI, entropy and no-filter baselines) as a self-training method of `score.selftrain.loop`."""

    name = "iwsi"
    uses_reference = False
    objective = staticmethod(sft_objective)

    def __init__(self, cfg: IwsiConfig, valid: list[tuple[list[int], list[int]]]) -> None:
        self.cfg = cfg
        self.valid = valid

    def reference(self, round_model: str, base_model: str) -> str:
        return round_model  # SFT uses no reference; the round's own model costs no extra weights

    def round_data(self, groups: list[list[Sample]], ctx) -> tuple[SequenceBatch, list[Sample], dict[str, float]]:
        """The samples to fine-tune on, the same list (each is taken as right), and the filter statistics.

        ctx.mean_nll(sequences) -> the round model's mean answer-token NLL of each (ids, mask) sequence."""
        tops = [majority([s.key for s in group]) for group in groups]
        in_majority = [[s for s in group if top is not None and s.key == top] for group, top in zip(groups, tops)]
        majority_samples = [s for group in in_majority for s in group]
        stats: dict[str, float] = {}
        losses = ctx.mean_nll([s.sequence() for s in majority_samples] + self.valid)
        sample_nll, valid_nll = losses[: len(majority_samples)], float(np.mean(losses[len(majority_samples):]))
        ds = [ds_weight(loss, valid_nll) for loss in sample_nll]
        stats.update({"valid_nll": valid_nll, **percentiles(ds, "ds_weight"), **percentiles(sample_nll, "sample_nll")})

        mode = self.cfg.filter
        if mode == "none":
            kept = [s for group in groups for s in group]
        elif mode == "majority":
            kept = majority_samples
        elif mode == "entropy":
            kept = [s for group, chosen in zip(groups, in_majority)
                    if (h := normalized_entropy([x.key for x in group])) is not None and h <= self.cfg.entropy_max
                    for s in chosen]
        else:  # ds
            kept = [s for s, keep in zip(majority_samples, at_or_below_percentile(ds, self.cfg.keep_percentile))
                    if keep]
        problems_kept = len({s.problem.id for s in kept})
        stats.update({"kept": float(problems_kept), "kept_frac": problems_kept / len(groups) if groups else 0.0,
                      "samples_kept": float(len(kept))})
        return batch_of(kept, [1.0] * len(kept)), kept, stats


def learner_mean_nll(sequence_logprobs: Callable[[list[list[int]]], list[list[float]]]
                     ) -> Callable[[list[tuple[list[int], list[int]]]], list[float]]:
    """ctx.mean_nll from a `sequence_logprobs(sequences)` callable (the learner's)."""
    def compute(sequences: list[tuple[list[int], list[int]]]) -> list[float]:
        logprobs = sequence_logprobs([ids for ids, _ in sequences])
        return [mean_nll(lp, mask) for lp, (_, mask) in zip(logprobs, sequences)]

    return compute
