"""SCPO's weighted DPO + NLL and the weighted SFT loss, against values worked out by hand, and through the learner."""

import functools
import math

import pytest
import torch

from score.learner import Learner, SequenceBatch
from score.selftrain.losses import scpo_objective, scpo_pair_loss, sft_objective, weighted_nll


def test_scpo_pair_loss_hand_computed():
    # pair 1: log-ratios chosen +0.5, rejected -0.5, beta 0.5 -> margin 0.5; w = 0.5; |y+| = 4; log M(y+) = -2
    #   0.5 * log(1 + e^-0.5) + 1.0 * 0.5 * 2 / 4 = 0.237038 + 0.25
    # pair 2: beta 0.5, log-ratios chosen -1, rejected +1 -> margin -1; w = 0.25; |y+| = 2; log M(y+) = -3
    #   0.25 * log(1 + e^1) + 1.0 * 0.25 * 3 / 2 = 0.328316 + 0.375
    loss = scpo_pair_loss(torch.tensor([-2.0, -3.0]), torch.tensor([-3.0, -1.0]), torch.tensor([-2.5, -2.0]),
                          torch.tensor([-2.5, -2.0]), torch.tensor([0.5, 0.25]), torch.tensor([4.0, 2.0]),
                          beta=0.5, alpha=1.0)
    assert loss.tolist() == pytest.approx([0.237038 + 0.25, 0.328316 + 0.375], abs=1e-6)


def test_scpo_weight_zero_and_alpha_zero():
    args = (torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.0]), torch.tensor([-1.0]))
    # alpha = 0: pure weighted DPO, beta 1, margin 1: w * log(1 + e^-1)
    dpo = scpo_pair_loss(*args, torch.tensor([0.25]), torch.tensor([3.0]), beta=1.0, alpha=0.0)
    assert dpo.item() == pytest.approx(0.25 * math.log(1 + math.exp(-1)), abs=1e-7)
    # w = 0 (a tie between chosen and rejected votes) contributes nothing at all
    assert scpo_pair_loss(*args, torch.tensor([0.0]), torch.tensor([3.0]), beta=1.0, alpha=1.0).item() == 0.0


def test_scpo_objective_reads_rows_as_chosen_rejected_pairs():
    # 2 pairs x 3 tokens; token 0 is the prompt (mask 0). Sequence sums: chosen -1.5 / -1.0, rejected -3 / -0.5.
    logp = torch.tensor([[-9.0, -1.0, -0.5], [-9.0, -2.0, -1.0], [-9.0, -0.5, -0.5], [-9.0, -0.25, -0.25]],
                        requires_grad=True)
    ref = torch.tensor([[-9.0, -1.0, -1.0], [-9.0, -1.0, -1.0], [-9.0, -1.0, -1.0], [-9.0, -1.0, -1.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0]] * 4)
    values = {"weight": torch.tensor([0.5, 0.5, 0.75, 0.75])}
    loss, stats = scpo_objective(logp, ref, mask, values, beta=1.0, alpha=1.0)
    # pair 1: margin (-1.5 + 2) - (-3 + 2) = 1.5; pair 2: margin (-1 + 2) - (-0.5 + 2) = -0.5
    expected = (0.5 * math.log(1 + math.exp(-1.5)) + 0.5 * 1.5 / 2
                + 0.75 * math.log(1 + math.exp(0.5)) + 0.75 * 1.0 / 2)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert stats["pref_accuracy"] == 1.0 and stats["logratio_margin"] == pytest.approx(1.0)
    loss.backward()
    assert logp.grad[:, 0].abs().sum() == 0  # prompt tokens get no gradient
    assert logp.grad[0, 1] < 0 and logp.grad[1, 1] > 0  # raise the chosen answer, lower the rejected one


def test_weighted_sft_hand_computed():
    logp = torch.tensor([[-7.0, -1.0, -3.0], [-7.0, -2.0, -4.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    assert weighted_nll(logp, mask, torch.tensor([1.0, 0.5])).tolist() == [2.0, 2.0]  # 4/2; 0.5 * 4/1
    loss, stats = sft_objective(logp, None, mask, {"weight": torch.tensor([1.0, 0.0])})
    assert loss.item() == 2.0 and stats["nll"] == 6.0  # the filtered row adds no loss; stats are unweighted sums


def _pair_batch() -> SequenceBatch:
    g = torch.Generator().manual_seed(0)
    ids, masks, weights = [], [], []
    for length, answer in ((9, 3), (7, 2), (10, 5), (8, 1), (6, 2), (11, 4)):
        ids.append(torch.randint(3, 400, (length,), generator=g).tolist())
        masks.append([0] * (length - answer) + [1] * answer)
    weights = [0.5, 0.5, 0.25, 0.25, 1.0, 1.0]
    return SequenceBatch(ids, masks, {"weight": weights}, group_size=2)


def _masked_sums(learner: Learner, batch: SequenceBatch, model: str) -> torch.Tensor:
    source = learner.policy if model == "policy" else learner.reference
    sums = []
    with torch.no_grad():
        for ids, mask in zip(batch.input_ids, batch.loss_mask):
            x = torch.tensor([ids])
            lp = source(input_ids=x).logits[0, :-1].log_softmax(-1).gather(-1, x[0, 1:, None])[:, 0]
            sums.append(float((lp * torch.tensor(mask[1:], dtype=torch.float32)).sum()))
    return torch.tensor(sums)


def test_learner_train_sequences_computes_the_scpo_loss_of_independent_logprobs(tiny_model_path, tmp_path):
    """The learner's loss is the pure SCPO loss of log-probs computed here, token by token, with another code path;
    and micro-batches of whole pairs accumulate to the same update as one batch."""
    from score.tiny import build_tiny_model, default_corpus

    other = build_tiny_model(tmp_path / "other", default_corpus(), seed=1)  # a policy that differs from the reference
    batch = _pair_batch()
    objective = functools.partial(scpo_objective, beta=0.5, alpha=1.0)
    results = []
    for micro in (1, 6):  # 1 still holds one whole pair
        learner = Learner(str(tiny_model_path), init_from=str(other), lr=1e-2, seed=0)
        policy, reference = _masked_sums(learner, batch, "policy"), _masked_sums(learner, batch, "reference")
        lengths = torch.tensor([float(sum(m)) for m in batch.loss_mask])
        expected = scpo_pair_loss(policy[0::2], policy[1::2], reference[0::2], reference[1::2],
                                  torch.tensor(batch.values["weight"][0::2]), lengths[0::2], beta=0.5, alpha=1.0)
        stats = learner.train_sequences(batch, objective, use_reference=True, micro_batch_size=micro)
        assert stats["loss"] == pytest.approx(expected.mean().item(), rel=1e-5)
        assert stats["trained_tokens"] == sum(sum(m) for m in batch.loss_mask)
        results.append(torch.cat([p.detach().flatten() for p in learner.policy.parameters()]))
    # AdamW's first step moves every weight by about lr (1e-2): lr * g / (|g| + eps). Summation order changes the
    # near-zero gradients (|g| ~ eps) a little, and those weights' steps by up to 1% of lr
    torch.testing.assert_close(results[0], results[1], rtol=1e-4, atol=1e-4)


def test_train_sequences_rejects_an_empty_batch(tiny_model_path):
    learner = Learner(str(tiny_model_path))
    with pytest.raises(ValueError, match="empty"):
        learner.train_sequences(SequenceBatch([], [], {"weight": []}), sft_objective)
