"""SCoRe's per-token rewards, KL weights and advantages against values computed by hand."""

import pytest
import torch

from rewards.shaping import progress_bonus, turn_rewards
from score.objectives import (
    k3,
    kl_to_go,
    kl_weights,
    per_turn_rewards,
    score_loss,
    subtract_baseline,
    token_advantages,
)

PAIRS = [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)]


def test_shaped_turn2_reward_table_alpha_10():
    # wrong->right 11, right->right 1, right->wrong -10, wrong->wrong 0
    assert [progress_bonus(r1, r2, 10.0) for r1, r2 in [(0, 1), (1, 1), (1, 0), (0, 0)]] == [11.0, 1.0, -10.0, 0.0]


@pytest.mark.parametrize("r1,r2", PAIRS)
def test_stage1_turn_rewards_ignore_attempt1(r1, r2):
    assert turn_rewards(r1, r2, stage=1, alpha=10.0) == (0.0, r2)


@pytest.mark.parametrize("r1,r2,expected", [(0, 0, (0, 0)), (0, 1, (0, 11)), (1, 0, (1, -10)), (1, 1, (1, 1))])
def test_stage2_turn_rewards(r1, r2, expected):
    assert turn_rewards(r1, r2, stage=2, alpha=10.0) == tuple(float(x) for x in expected)


def test_kl_weights_per_stage():
    assert kl_weights(1, beta1=0.01, beta2=0.25) == (0.25, 0.01)
    assert kl_weights(2, beta1=0.01, beta2=0.25) == (0.01, 0.01)
    with pytest.raises(ValueError):
        kl_weights(3, 0.01, 0.1)


def _group_of_all_pairs():
    r1 = torch.tensor([p[0] for p in PAIRS])
    r2 = torch.tensor([p[1] for p in PAIRS])
    return r1, r2, torch.zeros(4, dtype=torch.long)


def test_rloo_advantages_stage1_by_hand():
    r1, r2, group = _group_of_all_pairs()
    adv = subtract_baseline(per_turn_rewards(r1, r2, stage=1, alpha=10.0), group, "rloo")
    # turn 1: no task reward at all. turn 2: R in {0,1}, baseline (2 - R)/3, so A = (4R - 2)/3.
    assert adv[:, 0].tolist() == [0.0, 0.0, 0.0, 0.0]
    torch.testing.assert_close(adv[:, 1], torch.tensor([-2 / 3, 2 / 3, -2 / 3, 2 / 3]))


def test_rloo_advantages_stage2_by_hand():
    r1, r2, group = _group_of_all_pairs()
    rewards = per_turn_rewards(r1, r2, stage=2, alpha=10.0)
    assert rewards.tolist() == [[0.0, 0.0], [0.0, 11.0], [1.0, -10.0], [1.0, 1.0]]
    adv = subtract_baseline(rewards, group, "rloo")
    # both columns sum to 2, so A = R - (2 - R)/3 = (4R - 2)/3
    torch.testing.assert_close(adv[:, 0], torch.tensor([-2 / 3, -2 / 3, 2 / 3, 2 / 3]))
    torch.testing.assert_close(adv[:, 1], torch.tensor([-2 / 3, 14.0, -14.0, 2 / 3]))


def test_rloo_is_per_prompt_and_mean_and_none():
    rewards = torch.tensor([[1.0, 3.0], [0.0, 1.0], [4.0, 0.0], [2.0, 2.0]])
    group = torch.tensor([0, 0, 1, 1])
    assert subtract_baseline(rewards, group, "rloo").tolist() == [[1.0, 2.0], [-1.0, -2.0], [2.0, -2.0], [-2.0, 2.0]]
    assert subtract_baseline(rewards, group, "mean").tolist() == [
        [-0.75, 1.5], [-1.75, -0.5], [2.25, -1.5], [0.25, 0.5]]
    assert subtract_baseline(rewards, group, "none").tolist() == rewards.tolist()
    with pytest.raises(ValueError, match="at least 2"):
        subtract_baseline(rewards[:3], torch.tensor([0, 0, 1]), "rloo")


# One sequence: [prompt p p][y1 a a][instr q][y2 b b b]; turn ids and a per-token k1 estimate.
TURNS = torch.tensor([[0, 0, 1, 1, 0, 2, 2, 2]])
KL = torch.tensor([[0.0, 0.0, 0.5, 0.25, 0.0, 0.1, 0.2, 0.3]])


def test_kl_reward_to_go_stays_within_turn():
    torch.testing.assert_close(kl_to_go(KL, TURNS), torch.tensor([[0.0, 0.0, 0.75, 0.25, 0.0, 0.6, 0.5, 0.3]]))


def test_token_advantages_stage1_kl_in_reward():
    # Stage I, r1 = 1, r2 = 1, no baseline: turn rewards (0, 1); weights beta2 = 0.1 on turn 1, beta1 = 0.01 on turn 2.
    turn_adv = torch.tensor([[0.0, 1.0]])
    weights = torch.tensor([[0.1, 0.01]])
    adv = token_advantages(TURNS, turn_adv, KL, weights, "reward")
    expected = [0, 0, -0.1 * 0.75, -0.1 * 0.25, 0, 1 - 0.01 * 0.6, 1 - 0.01 * 0.5, 1 - 0.01 * 0.3]
    torch.testing.assert_close(adv, torch.tensor([expected]))


def test_token_advantages_stage2_kl_in_loss():
    # Stage II, r1 = 1, r2 = 0, alpha = 10, no baseline: turn rewards (1, -10); KL goes to the loss, not here.
    turn_adv = torch.tensor([[1.0, -10.0]])
    adv = token_advantages(TURNS, turn_adv, KL, torch.tensor([[0.01, 0.01]]), "loss")
    assert adv.tolist() == [[0, 0, 1.0, 1.0, 0, -10.0, -10.0, -10.0]]


def test_loss_value_and_gradient_by_hand():
    logp = torch.log(torch.tensor([[0.5, 0.5, 0.5, 0.25, 0.5, 0.5, 0.5, 0.5]])).requires_grad_(True)
    ref = torch.log(torch.tensor([[0.5, 0.5, 0.25, 0.25, 0.5, 0.5, 0.5, 0.5]]))
    adv = torch.tensor([[0, 0, 2.0, 2.0, 0, -1.0, -1.0, -1.0]])
    weights = torch.tensor([[0.1, 0.01]])
    loss = score_loss(logp, ref, TURNS, adv, weights, kl_mode="loss")
    # k3 at token 2: r = log(0.25/0.5) = -ln 2 -> exp(r) - r - 1 = 0.5 + ln 2 - 1; zero where pi == pi_ref
    k3_token2 = 0.5 + torch.log(torch.tensor(2.0)) - 1.0
    expected = torch.tensor([[0, 0, -2.0 + 0.1 * k3_token2, -2.0, 0, 1.0, 1.0, 1.0]])
    torch.testing.assert_close(loss, expected)
    loss.sum().backward()
    # d/dlogp of -A*exp(logp - sg(logp)) is -A; k3 adds w * (1 - exp(ref - logp)) = 0.1 * (1 - 0.5) at token 2
    torch.testing.assert_close(logp.grad, torch.tensor([[0, 0, -2.0 + 0.05, -2.0, 0, 1.0, 1.0, 1.0]]))


def test_k3_is_nonnegative_and_zero_at_equality():
    a = torch.randn(100)
    b = torch.randn(100)
    assert (k3(a, b) >= 0).all()
    assert torch.allclose(k3(a, a), torch.zeros(100))


def test_truncated_importance_weights_scale_the_gradient():
    logp = torch.zeros(1, 8, requires_grad=True)
    adv = torch.tensor([[0, 0, 1.0, 1.0, 0, 1.0, 1.0, 1.0]])
    is_w = torch.tensor([[1, 1, 0.5, 2.0, 1, 1, 1, 1]])
    score_loss(logp, logp.detach(), TURNS, adv, torch.zeros(1, 2), kl_mode="reward", is_weights=is_w).sum().backward()
    assert logp.grad.tolist() == [[0, 0, -0.5, -2.0, 0, -1.0, -1.0, -1.0]]


def _expected_gradient(kl_mode: str, theta: torch.Tensor, ref: torch.Tensor, beta: float) -> torch.Tensor:
    """E_{y ~ pi}[gradient of the per-token loss at a sampled y], enumerated exactly over a small vocabulary, for a
    one-token turn with zero task advantage (only the KL term acts)."""
    pi = torch.softmax(theta, -1).detach()
    total = torch.zeros_like(theta)
    for y in range(len(theta)):
        logp = torch.log_softmax(theta, -1)[y].reshape(1, 1)
        ref_logp = ref[y].reshape(1, 1)
        turn_ids = torch.tensor([[1]])
        weights = torch.tensor([[beta, beta]])
        adv = token_advantages(turn_ids, torch.zeros(1, 2), logp.detach() - ref_logp, weights, kl_mode)
        loss = score_loss(logp, ref_logp, turn_ids, adv, weights, kl_mode=kl_mode).sum()
        (grad,) = torch.autograd.grad(loss, theta)
        total += pi[y] * grad
    return total


def test_k1_in_reward_follows_the_reverse_kl_and_k3_loss_the_forward_kl():
    """README's claim, checked exactly: k1 folded into the reward gives (in expectation) the gradient of the paper's
    reverse KL(pi || pi_ref); k3 differentiated as a loss gives the gradient of the forward KL(pi_ref || pi)."""
    theta = torch.tensor([0.3, -1.0, 1.2, 0.1], requires_grad=True)
    ref = torch.log_softmax(torch.tensor([1.0, 0.2, -0.5, 0.0]), -1)
    beta = 0.1
    logp = torch.log_softmax(theta, -1)
    (reverse,) = torch.autograd.grad(beta * (logp.exp() * (logp - ref)).sum(), theta)
    logp = torch.log_softmax(theta, -1)
    (forward,) = torch.autograd.grad(beta * (ref.exp() * (ref - logp)).sum(), theta)
    k1 = _expected_gradient("reward", theta, ref, beta)
    k3_loss = _expected_gradient("loss", theta, ref, beta)
    torch.testing.assert_close(k1, reverse, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(k3_loss, forward, rtol=1e-5, atol=1e-7)
    assert (reverse - forward).abs().max() > 1e-2  # genuinely different objectives
