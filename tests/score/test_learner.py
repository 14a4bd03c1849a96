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
