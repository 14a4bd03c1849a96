"""The verifiers' losses and aggregations against values worked out by hand, and through SCoRe's learner."""

import functools
import math

import pytest
import torch

from score.learner import Learner, SequenceBatch
from score.verifiers.learner import HeadLearner, load_head_model
from score.verifiers.losses import (
    aggregate,
    confidence_loss,
    hardened_targets,
    orm_loss,
    orm_objective,
    prm_loss,
    prm_mask,
    prm_objective,
    simpo_objective,
    simpo_pair_loss,
    simpo_score,
)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_orm_final_and_every_token_bce_hand_computed():
    scores = torch.tensor([[5.0, 1.0, -2.0, 7.0], [0.0, 3.0, 0.0, 0.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]])  # row 0 ends at column 2, row 1 at column 1
    labels = torch.tensor([1.0, 0.0])
    # final: row 0 logit -2, label 1 -> softplus(2); row 1 logit 3, label 0 -> softplus(3)
    assert orm_loss(scores, mask, labels).tolist() == pytest.approx([softplus(2), softplus(3)], abs=1e-6)
    # every: row 0 mean(softplus(-1), softplus(2)); row 1 one token
    assert orm_loss(scores, mask, labels, head="every").tolist() == pytest.approx(
        [(softplus(-1) + softplus(2)) / 2, softplus(3)], abs=1e-6)
    # soft labels (a weak supervisor's probability): 0.25 * softplus(2) + 0.75 * softplus(-2) for row 0
    soft = orm_loss(scores, mask, torch.tensor([0.25, 0.0]))
    assert soft[0].item() == pytest.approx(0.25 * softplus(2) + 0.75 * softplus(-2), abs=1e-6)
    with pytest.raises(ValueError, match="orm_head"):
        orm_loss(scores, mask, labels, head="mean")


def test_orm_objective_sums_rows_and_counts_accuracy():
    scores = torch.tensor([[0.0, 2.0], [0.0, 1.0]], requires_grad=True)
    mask = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    loss, stats = orm_objective(scores, None, mask, {"label": torch.tensor([1.0, 0.0])})
    assert loss.item() == pytest.approx(softplus(-2) + softplus(1), abs=1e-6)
    assert stats["accuracy"] == 1.0  # row 0 right (2 > 0, correct), row 1 wrong (1 > 0, incorrect)
    loss.backward()
    assert scores.grad[:, 0].abs().sum() == 0 and scores.grad[0, 1] < 0 and scores.grad[1, 1] > 0


def test_confidence_loss_hand_computed():
    # p = sigmoid([2, -1, 0.5, -3]) = [.881, .269, .622, .047]; a quarter of the weak labels are 1, so tau is the
    # 75th percentile (.687) and only the first row is a hardened positive.
    logits = torch.tensor([2.0, -1.0, 0.5, -3.0])
    weak = torch.tensor([0.0, 1.0, 0.0, 0.0])
    assert hardened_targets(logits, weak).tolist() == [1.0, 0.0, 0.0, 0.0]
    got = confidence_loss(logits, weak, alpha=0.25).tolist()
    want = [0.75 * softplus(2) + 0.25 * softplus(-2), 0.75 * softplus(1) + 0.25 * softplus(-1),
            0.75 * softplus(0.5) + 0.25 * softplus(0.5), 0.75 * softplus(-3) + 0.25 * softplus(-3)]
    assert got == pytest.approx(want, abs=1e-6)
    # through the ORM objective: alpha 0 is the plain ORM loss
    scores, mask = logits.unsqueeze(1), torch.ones(4, 1)
    plain, _ = orm_objective(scores, None, mask, {"label": weak})
    mixed, _ = orm_objective(scores, None, mask, {"label": weak}, confidence_alpha=0.25)
    assert plain.item() == pytest.approx(sum(orm_loss(scores, mask, weak).tolist()), abs=1e-6)
    assert mixed.item() == pytest.approx(sum(want), abs=1e-5)


def test_simpo_score_and_pair_loss_hand_computed():
    logp = torch.tensor([[-9.0, -1.0, -2.0, -3.0], [-9.0, -4.0, 0.0, 0.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0]])
    assert simpo_score(logp, mask).tolist() == [-2.0, -4.0]  # -6 / 3 tokens; -4 / 1 token
    # beta 2, gamma 1: -log sigmoid(2 * (-2 - -4) - 1) = softplus(-3)
    assert simpo_pair_loss(torch.tensor([-2.0]), torch.tensor([-4.0]), beta=2.0, gamma=1.0).item() == pytest.approx(
        softplus(-3), abs=1e-6)
    loss, stats = simpo_objective(logp, None, mask, {}, beta=2.0, gamma=1.0)
    assert loss.item() == pytest.approx(softplus(-3), abs=1e-6) and stats["pair_accuracy"] == 1.0
    assert stats["margin"] == 2.0
    # a pair ranked the wrong way round: the same scores swapped -> softplus(5)
    swapped, stats = simpo_objective(logp.flip(0), None, mask.flip(0), {}, beta=2.0, gamma=1.0)
    assert swapped.item() == pytest.approx(softplus(5), abs=1e-6) and stats["pair_accuracy"] == 0.0


def test_prm_mask_loss_and_aggregation_hand_computed():
    # 3-token prompt, 5-token solution with steps ending at its tokens 1 (good) and 4 (bad)
    assert prm_mask(8, 3, [1, 4], [1.0, 0.0]) == [0, 0, 0, 0, 2, 0, 0, 1]
    with pytest.raises(ValueError, match="step labels"):
        prm_mask(8, 3, [1, 4], [1.0])
    scores = torch.tensor([[0.0, 1.0, 9.0, 2.0]])
    mask = torch.tensor([[0.0, 2.0, 0.0, 1.0]])  # good step scored 1, bad step scored 2
    assert prm_loss(scores, mask).item() == pytest.approx((softplus(-1) + softplus(2)) / 2, abs=1e-6)
    _, stats = prm_objective(scores, None, mask, {})
    assert stats["step_accuracy"] == 0.5 and stats["steps"] == 2.0
    assert aggregate([0.9, 0.5, 0.8], "min") == 0.5
    assert aggregate([0.9, 0.5, 0.8], "prod") == pytest.approx(0.36)
    assert aggregate([], "min") == 0.0
    with pytest.raises(ValueError, match="prm_aggregate"):
        aggregate([0.5], "mean")


def _rows(lengths_and_answers, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids, masks = [], []
    for length, answer in lengths_and_answers:
        ids.append(torch.randint(3, 400, (length,), generator=g).tolist())
        masks.append([0] * (length - answer) + [1] * answer)
    return ids, masks


def test_head_learner_trains_the_orm_loss_of_an_independent_forward(tiny_model_path, tmp_path):
    """The learner's loss is the ORM BCE of logits computed here with plain transformers, micro-batches of 1 and of
    the whole batch give the same update, and the saved checkpoint scores like the learner."""
    ids, masks = _rows([(9, 3), (7, 2), (10, 5), (6, 1)])
    labels = [1.0, 0.0, 0.0, 1.0]
    batch = SequenceBatch(ids, masks, {"label": labels})
    objective = functools.partial(orm_objective, head="final")
    params = []
    for micro in (1, 4):
        learner = HeadLearner(str(tiny_model_path), lr=1e-2, seed=0)
        with torch.no_grad():
            finals = torch.tensor([learner.policy(input_ids=torch.tensor([row])).logits[0, -1, 0].item() for row in ids])
        expected = torch.nn.functional.binary_cross_entropy_with_logits(finals, torch.tensor(labels))
        stats = learner.train_sequences(batch, objective, micro_batch_size=micro)
        assert stats["loss"] == pytest.approx(expected.item(), rel=1e-5)
        params.append(torch.cat([p.detach().flatten() for p in learner.policy.parameters()]))
    # AdamW moves every weight by about lr (1e-2) on its first step; a near-zero gradient summed in another order
    # moves by a little less
    torch.testing.assert_close(params[0], params[1], rtol=1e-4, atol=1e-4)
    learner.save(str(tmp_path / "orm"), with_optimizer=False)
    reloaded = load_head_model(str(tmp_path / "orm")).eval()
    with torch.no_grad():
        a = reloaded(input_ids=torch.tensor([ids[0]])).logits[0, 1:, 0]
        b = learner.token_values(learner.policy.eval(), torch.tensor([ids[0]]), torch.ones(1, len(ids[0]),
                                                                                            dtype=torch.long))[0]
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="reference"):
        learner.train_sequences(batch, objective, use_reference=True)


def test_simpo_verifier_trains_through_the_plain_learner(tiny_model_path):
    """SimPO needs no head and no reference: the plain learner's log-probs, length-normalised, computed here."""
    ids, masks = _rows([(9, 3), (7, 2), (10, 5), (8, 1)], seed=1)
    batch = SequenceBatch(ids, masks, {}, group_size=2)
    learner = Learner(str(tiny_model_path), lr=1e-2)
    with torch.no_grad():
        scores = []
        for row, mask in zip(ids, masks):
            x = torch.tensor([row])
            lp = learner.policy(input_ids=x).logits[0, :-1].log_softmax(-1).gather(-1, x[0, 1:, None])[:, 0]
            scores.append(float((lp * torch.tensor(mask[1:], dtype=torch.float32)).sum()) / sum(mask))
    scores = torch.tensor(scores)
    expected = simpo_pair_loss(scores[0::2], scores[1::2], beta=2.0, gamma=0.5).mean()
    stats = learner.train_sequences(batch, functools.partial(simpo_objective, beta=2.0, gamma=0.5))
    assert stats["loss"] == pytest.approx(expected.item(), rel=1e-5)
