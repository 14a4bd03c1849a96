"""The learner on its own (no Ray): exact gradient accumulation, frozen reference, bf16, checkpoints."""

import pytest
import torch

from score.learner import Batch, Learner


def _batch(seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    input_ids, turn_ids = [], []
    for length in (9, 12, 7, 10):
        input_ids.append(torch.randint(3, 400, (length,), generator=g).tolist())
        # prompt (3 tokens), y1 (2), instruction (1), y2 (rest)
        turn_ids.append([0, 0, 0, 1, 1, 0] + [2] * (length - 6))
    return Batch(
        input_ids=input_ids,
        turn_ids=turn_ids,
        rollout_logprobs=[[0.0] * len(ids) for ids in input_ids],
        turn_advantages=[(0.5, -1.0), (-0.5, 2.0), (1.0, 0.0), (0.0, -1.0)],
        turn_kl_weights=(0.1, 0.01),
    )


def _params(learner: Learner) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in learner.policy.parameters()])


@pytest.mark.parametrize("kl_mode,loss_agg", [("reward", "token_mean"), ("loss", "seq_mean")])
def test_micro_batches_accumulate_to_the_full_batch_update(tiny_model_path, kl_mode, loss_agg):
    results = []
    for micro in (1, 4):
        learner = Learner(str(tiny_model_path), lr=1e-2, seed=0)
        # move the policy off the reference first, so that the KL terms are not zero
        learner.train_step(_batch(1), kl_mode=kl_mode, loss_agg=loss_agg, micro_batch_size=4)
        stats = learner.train_step(_batch(2), kl_mode=kl_mode, loss_agg=loss_agg, micro_batch_size=micro)
        results.append((stats, _params(learner)))
    (a, pa), (b, pb) = results
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-6)
    assert a["kl_t1"] == pytest.approx(b["kl_t1"], rel=1e-4) and a["kl_t1"] != 0.0
    torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-6)


def test_update_moves_policy_and_leaves_reference(tiny_model_path):
    learner = Learner(str(tiny_model_path), lr=1e-2, seed=0)
    before = learner.parameter_checksums()
    stats = learner.train_step(_batch(), kl_mode="reward", micro_batch_size=2, max_grad_norm=1.0)
    after = learner.parameter_checksums()
    assert after["reference"] == before["reference"] and after["policy"] != before["policy"]
    assert stats["trained_tokens"] == sum(len(ids) - 4 for ids in _batch().input_ids)
    assert stats["grad_norm"] > 0


def test_bfloat16_autocast_step_runs_and_keeps_fp32_master_weights(tiny_model_path):
    learner = Learner(str(tiny_model_path), dtype="bfloat16", lr=1e-2)
    stats = learner.train_step(_batch(), kl_mode="loss", micro_batch_size=2)
    assert torch.isfinite(torch.tensor(stats["loss"]))
    assert all(p.dtype == torch.float32 for p in learner.policy.parameters())


def test_checkpoint_roundtrip_restores_weights_and_optimizer(tiny_model_path, tmp_path):
    learner = Learner(str(tiny_model_path), lr=1e-2)
    learner.train_step(_batch(), kl_mode="reward")
    learner.save(str(tmp_path / "ckpt"), with_optimizer=True)
    restored = Learner(str(tiny_model_path), lr=1e-2)
    restored.load(str(tmp_path / "ckpt"))
    torch.testing.assert_close(_params(restored), _params(learner))
    # the next update is identical only if the AdamW moments came back too
    learner.train_step(_batch(3), kl_mode="reward")
    restored.train_step(_batch(3), kl_mode="reward")
    torch.testing.assert_close(_params(restored), _params(learner))


def test_dropout_is_off_so_the_kl_starts_at_zero(tmp_path):
    """A model configured with dropout: the policy (== reference at step 0) must score tokens exactly as the
    reference and as the engines do, so the KL at step 0 is 0 and the log-probs are the sampling policy's."""
    from score.tiny import build_tiny_model, default_corpus

    path = build_tiny_model(tmp_path / "dropout", default_corpus(), seed=4, attention_dropout=0.5)
    learner = Learner(str(path), lr=1e-2, seed=0)
    stats = learner.train_step(_batch(), kl_mode="reward", micro_batch_size=4)
    assert stats["kl_t1"] == 0.0 and stats["kl_t2"] == 0.0
    # and the gradient step still happened
    assert learner.parameter_checksums()["policy"] != learner.parameter_checksums()["reference"]


def test_grad_norm_is_reported_before_clipping_with_the_clipped_flag(tiny_model_path):
    norms = {}
    for threshold in (1e-6, 1e6):
        learner = Learner(str(tiny_model_path), lr=1e-2, seed=0)
        stats = learner.train_step(_batch(), kl_mode="reward", max_grad_norm=threshold)
        norms[threshold] = stats["grad_norm"]
        assert stats["grad_clipped"] == float(threshold == 1e-6)
    # the same pre-clip norm whatever the threshold (not the clipped one, which would be 1e-6)
    assert norms[1e-6] == pytest.approx(norms[1e6], rel=1e-6) and norms[1e6] > 1e-3


def _mixed_batch() -> Batch:
    """Lengths 9, 12, 7, 10 in arrival order: micro-batches of 2 cut from the length order are (12, 10) and (9, 7)."""
    return _batch(5)


def _grads(learner: Learner) -> torch.Tensor:
    return torch.cat([p.grad.detach().flatten() for p in learner.policy.parameters()])


@pytest.mark.parametrize("loss_agg", ["token_mean", "seq_mean"])
def test_length_sorted_micro_batches_make_the_full_batch_gradient(tiny_model_path, loss_agg):
    """Micro-batches of 2 regroup the sequences by length ((12, 10), (9, 7) instead of the arrival order's (9, 12),
    (7, 10)); the whole batch in one pass is padded to 12. The loss is normalised over the whole batch, so gradient
    and update are the same."""
    results = {}
    for micro in (2, 4):
        learner = Learner(str(tiny_model_path), lr=1e-2, seed=0)
        learner.train_step(_batch(1), kl_mode="loss", loss_agg=loss_agg, micro_batch_size=4)  # KL terms non-zero
        stats = learner.train_step(_mixed_batch(), kl_mode="loss", loss_agg=loss_agg, micro_batch_size=micro,
                                   max_grad_norm=1e6)
        results[micro] = (stats, _grads(learner), _params(learner))
    (a, ga, pa), (b, gb, pb) = results[2], results[4]
    assert ga.abs().max() > 0
    torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-6)
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-6)
    assert a["kl_t2"] == pytest.approx(b["kl_t2"], rel=1e-4) and a["kl_t2"] != 0.0


def test_pad_frac_counts_the_padding_of_length_sorted_micro_batches(tiny_model_path):
    learner = Learner(str(tiny_model_path), lr=1e-2, seed=0)
    # lengths 9, 12, 7, 10 (38 real tokens). Sorted micro-batches of 2: (12, 10) and (9, 7) compute 2*12 + 2*9 = 42
    # positions, 4 of them padding; the arrival order's (9, 12), (7, 10) would compute 44, 6 of them padding.
    stats = learner.train_step(_mixed_batch(), kl_mode="reward", micro_batch_size=2)
    assert stats["tokens"] == 38
    assert stats["pad_frac"] == pytest.approx(4 / 42)
    # one micro-batch of all four is padded to 12: 48 positions, 10 of them padding
    whole = learner.train_step(_mixed_batch(), kl_mode="reward", micro_batch_size=4)
    assert whole["pad_frac"] == pytest.approx(10 / 48)
    # micro-batches of one sequence pad nothing
    assert learner.train_step(_mixed_batch(), kl_mode="reward", micro_batch_size=1)["pad_frac"] == 0.0


def test_train_step_reports_each_phase_time(tiny_model_path):
    from score.learner import PHASES

    learner = Learner(str(tiny_model_path), lr=1e-2, seed=0)
    stats = learner.train_step(_batch(), kl_mode="reward", micro_batch_size=2)
    assert set(PHASES) == {"time_ref_forward", "time_policy_forward", "time_backward", "time_optimizer"}
    assert all(stats[phase] > 0 for phase in PHASES)
    # the phases are parts of the whole call
    assert sum(stats[phase] for phase in PHASES) <= stats["time_learner"]


def test_length_order_puts_the_longest_first_and_keeps_ties_in_order():
    from score.learner import length_order

    assert length_order([3, 9, 5, 9, 1]) == [1, 3, 2, 0, 4]
    assert length_order([]) == []
