"""The sharded learner through real Ray actors and real gloo: 2 FSDP2 ranks make the 1-rank update, checkpoints
reshard between rank counts, and the weight stream carries the whole policy."""

import functools

import pytest
import ray
import safetensors.torch
import torch

from score import flat_weights
from score.learner import Batch, SequenceBatch
from score.learner_group import LearnerGroup, deal_rows, split_batch
from score.selftrain.losses import scpo_objective
from score.threads import node_cores


def _batch(seed: int, size: int = 11) -> Batch:
    g = torch.Generator().manual_seed(seed)
    input_ids, turn_ids = [], []
    for _ in range(size):
        length = int(torch.randint(8, 16, (1,), generator=g))
        input_ids.append(torch.randint(3, 400, (length,), generator=g).tolist())
        turn_ids.append([0, 0, 0, 1, 1, 0] + [2] * (length - 6))
    advantages = torch.randn(size, 2, generator=g).tolist()
    return Batch(input_ids, turn_ids, [[-1.0] * len(ids) for ids in input_ids], [tuple(a) for a in advantages],
                 (0.1, 0.01))


def _group(path, ranks: int, **kwargs) -> LearnerGroup:
    return LearnerGroup(num_ranks=ranks, num_cpus=1, timeout_s=300, model_path=str(path), lr=1e-3, seed=0,
                        sync_bucket_bytes=40_000, **kwargs)


def _weights(group: LearnerGroup, folder) -> dict[str, torch.Tensor]:
    group.save(str(folder), with_optimizer=False)
    return safetensors.torch.load_file(str(folder / "model.safetensors"))


def _stream(group: LearnerGroup) -> tuple[int, dict[str, torch.Tensor]]:
    buckets = [dict(flat_weights.tensors(ray.get(ref))) for ref in group.weight_buckets()]
    return len(buckets), {k: v for b in buckets for k, v in b.items()}


def test_ranks_are_dealt_the_length_order_round_robin():
    # lengths by row: 0:5 1:9 2:2 3:7 4:4 5:9; longest first (ties in row order): 1, 5, 3, 0, 4, 2
    assert deal_rows([5, 9, 2, 7, 4, 9], 2) == [[1, 3, 4], [5, 0, 2]]
    assert deal_rows([5, 9], 3) == [[1], [0], []]
    batch = _batch(0, size=5)
    parts = split_batch(batch, 2)
    assert sorted(ids for part in parts for ids in part.input_ids) == sorted(batch.input_ids)
    for part in parts:  # every row keeps its own turns, log-probs and advantages
        for ids, turns, adv in zip(part.input_ids, part.turn_ids, part.turn_advantages):
            row = batch.input_ids.index(ids)
            assert turns == batch.turn_ids[row] and adv == batch.turn_advantages[row]


def test_two_ranks_make_the_one_rank_update(ray_cluster, tiny_model_path, tmp_path):
    results = {}
    for ranks in (1, 2):
        # the 2-rank learner also recomputes its layers (gradient checkpointing under FSDP2): the same update
        group = _group(tiny_model_path, ranks, gradient_checkpointing=ranks == 2)
        try:
            assert [p["rank"] for p in group.placement()] == list(range(ranks))
            # auto threads: the node's cores shared by the ranks on it (one node here)
            assert group.threads == [max(1, node_cores() // ranks)] * ranks
            # 11 samples in micro-batches of 3: the ranks get 6 and 5 samples, 2 micro-batches each; seq_mean and
            # token_mean both need the global denominator
            stats = [group.train_step(_batch(step), kl_mode=mode, loss_agg=agg, micro_batch_size=3,
                                      max_grad_norm=0.5)
                     for step, (mode, agg) in enumerate([("reward", "token_mean"), ("loss", "seq_mean"),
                                                         ("loss", "token_mean")])]
            # and the update ran with them, although Ray started each rank with OMP_NUM_THREADS=1 (num_cpus=1)
            assert all(s["learner_threads"] == max(1, node_cores() // ranks) for s in stats)
            pairs = SequenceBatch([list(range(5, 5 + n)) for n in (9, 12, 7, 10, 8, 11)],
                                  [[0] * 4 + [1] * (n - 4) for n in (9, 12, 7, 10, 8, 11)],
                                  {"weight": [1.0, 1.0, 0.5, 0.5, 2.0, 2.0]}, group_size=2)
            stats.append(group.train_sequences(pairs, functools.partial(scpo_objective, beta=0.5, alpha=1.0),
                                               use_reference=True, micro_batch_size=2))
            results[ranks] = (stats, _weights(group, tmp_path / f"final{ranks}"), _stream(group),
                              group.parameter_checksums())
        finally:
            group.shutdown()
    (stats1, w1, (n1, s1), c1), (stats2, w2, (n2, s2), c2) = results[1], results[2]
    for a, b in zip(stats1, stats2):
        assert a.keys() == b.keys()
        # Times and threads are each rank's own, and two ranks' micro-batches (dealt by length) hold other sequences
        # than one rank's: other padding, and fp32 sums in another order (~1e-7 relative). The SCPO margin is a
        # difference of log-prob sums of size ~40, so its rounding is ~1e-6 absolute.
        for key in a.keys() - {"pad_frac", "learner_threads"} - {k for k in a if k.startswith("time_")}:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=5e-6), key
    assert stats1[0]["grad_norm"] > 0.5  # clipping was active, with the global norm
    assert w1.keys() == w2.keys()
    for name in w1:
        assert (w1[name] - w2[name]).abs().max() <= 1e-6, name
    assert c1["reference"] == pytest.approx(c2["reference"], rel=1e-6)
    # the weight stream: several buckets, together exactly the consolidated weights
    assert n1 == n2 > 1
    for streamed in (s1, s2):
        assert streamed.keys() == w2.keys()
    assert all(torch.equal(s2[k], w2[k]) for k in w2)


def test_tied_embeddings_are_sharded_streamed_and_saved_once(ray_cluster, tmp_path):
    """A tied model (SmolLM2, Qwen2.5 small): the shared tensor stays shared under FSDP and travels once."""
    from transformers import AutoModelForCausalLM

    from score.tiny import build_tiny_model, default_corpus

    path = build_tiny_model(tmp_path / "tied", default_corpus(), seed=1, tie_word_embeddings=True)
    group = _group(path, 2)
    try:
        group.train_step(_batch(0), kl_mode="loss", micro_batch_size=4)
        _, streamed = _stream(group)
        saved = _weights(group, tmp_path / "final")
    finally:
        group.shutdown()
    assert "lm_head.weight" not in streamed and streamed.keys() == saved.keys()
    assert all(torch.equal(streamed[k], saved[k]) for k in saved)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    torch.testing.assert_close(model.lm_head.weight.detach(), saved["model.embed_tokens.weight"])
