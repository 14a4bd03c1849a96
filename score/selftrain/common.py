"""What SCPO and IWSI share: k answers per unlabelled problem, the votes on their final answers, and the gold-label
diagnostics that are logged but never used.

A sample is one first-turn answer, kept as the engine's token ids. Its vote key is `score.evaluate.answer_key`: the
extracted and normalised final answer for math-like environments (so "1,000" and "1000.0" vote together), an
environment's own `answer_key(attempt, problem)` when it has one, else the text. A sample without a final answer has
the key None: it votes for nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from envs.base import Environment, Problem
from score.engines.base import Completion, SamplingParams
from score.evaluate import answer_key
from score.learner import SequenceBatch
from score.rollout import ChatRenderer, Generate


@dataclass
class Sample:
    """One sampled answer to one problem."""

    problem: Problem
    """The problem as the loop sees it: its reference is hidden."""
    index: int
    """Which of the problem's k samples (0..k-1)."""
    prompt_ids: list[int]
    completion: Completion
    text: str
    key: str | None
    """The final answer it votes for; None when it gives none."""

    def sequence(self) -> tuple[list[int], list[int]]:
        """Token ids of prompt + answer and the mask of the answer's tokens (what is trained)."""
        ids = self.prompt_ids + self.completion.token_ids
        return ids, [0] * len(self.prompt_ids) + [1] * len(self.completion.token_ids)


def sample_answers(problems: list[Problem], env: Environment, renderer: ChatRenderer, generate: Generate, *, k: int,
                   params: SamplingParams) -> list[list[Sample]]:
    """k first-turn answers to every problem, in one batched generation; returns one list of k per problem."""
    prompts = [renderer.first_turn(env.first_turn_messages(p)) for p in problems]
    completions = generate([prompt for prompt in prompts for _ in range(k)], params)
    groups = []
    for i, problem in enumerate(problems):
        group = []
        for j in range(k):
            completion = completions[i * k + j]
            text = renderer.decode(completion.token_ids)
            group.append(Sample(problem, j, prompts[i], completion, text, _key(env, text, problem)))
        groups.append(group)
    return groups


def _key(env: Environment, text: str, problem: Problem) -> str | None:
    try:
        return answer_key(env, text, problem)
    except Exception:  # noqa: BLE001 - untrusted model output must never stop a run; it just does not vote
        return None


def vote_counts(keys: Sequence[str | None]) -> Counter:
    """How many samples gave each final answer (samples without one do not vote). Counter keeps first-seen order.

    >>> vote_counts(["4", None, "5", "4"])
    Counter({'4': 2, '5': 1})
    """
    return Counter(key for key in keys if key is not None)


def majority(keys: Sequence[str | None]) -> str | None:
    """The most voted answer; ties go to the answer sampled first; None when no sample gave an answer.

    >>> majority(["5", "4", "4", "5", None]), majority([None, None])
    ('5', None)
    """
    counts = vote_counts(keys)
    return max(counts, key=counts.__getitem__) if counts else None


def top_vote_share(keys: Sequence[str | None]) -> float:
    """V(majority) / k, with k counting every sample (also those without an answer).

    >>> top_vote_share(["4", "4", "5", None])
    0.5
    """
    counts = vote_counts(keys)
    return max(counts.values()) / len(keys) if counts else 0.0


def batch_of(samples: list[Sample], weights: Sequence[float], group_size: int = 1) -> SequenceBatch:
    """A `SequenceBatch` of these samples (prompt + answer, the answer masked in) with values["weight"] and
    values["sample_logprob"] (the engine's log-probability of the answer: which model sampled it)."""
    sequences = [s.sequence() for s in samples]
    return SequenceBatch([ids for ids, _ in sequences], [mask for _, mask in sequences],
                         {"weight": [float(w) for w in weights],
                          "sample_logprob": [float(sum(s.completion.logprobs)) for s in samples]}, group_size)


def percentiles(values: Sequence[float], name: str, qs: Sequence[int] = (10, 50, 90)) -> dict[str, float]:
    """{name_p10: ..., name_p50: ..., name_p90: ...}; empty for no values.

    >>> percentiles([1.0, 2.0, 3.0], "w", (50,))
    {'w_p50': 2.0}
    """
    if not len(values):
        return {}
    return {f"{name}_p{q}": float(v) for q, v in zip(qs, np.percentile(np.asarray(values, dtype=float), qs))}


class GoldLabels:
    """The gold references of the unlabelled problems, kept apart from the loop. Used only to log how often the
    pseudo-labels are right; nothing it returns feeds back into training."""

    def __init__(self, labelled: list[Problem], score: Callable[[list[str], list[Problem]], list[float]]) -> None:
        self._gold = {p.id: p for p in labelled}
        self._score = score

    def correct(self, samples: list[Sample]) -> list[float]:
        """1.0 for every sample whose answer is right under the gold reference, else 0.0."""
        if not samples:
            return []
        return [float(r) for r in self._score([s.text for s in samples], [self._gold[s.problem.id] for s in samples])]


def label_diagnostics(groups: list[list[Sample]], pseudo_labelled: list[Sample], gold: GoldLabels | None
                      ) -> dict[str, float]:
    """Logged only: how right the samples, the majority answers and the pseudo-labelled samples are.

    sample_acc: all k samples of every problem; majority_acc: the first sample of each problem's most voted answer
    (0 when no sample answered); pseudo_label_acc: the samples a method trains on as right (SCPO: the chosen ones).
    """
    if gold is None:
        return {}
    flat = [s for group in groups for s in group]
    rewards = dict(zip(((s.problem.id, s.index) for s in flat), gold.correct(flat)))
    majority_rewards = []
    for group in groups:
        top = majority([s.key for s in group])
        first = next((s for s in group if top is not None and s.key == top), None)
        majority_rewards.append(rewards[(first.problem.id, first.index)] if first else 0.0)
    out = {"sample_acc": float(np.mean(list(rewards.values()))) if rewards else 0.0,
           "majority_acc": float(np.mean(majority_rewards)) if majority_rewards else 0.0}
    if pseudo_labelled:
        out["pseudo_label_acc"] = float(np.mean([rewards[(s.problem.id, s.index)] for s in pseudo_labelled]))
    return out
