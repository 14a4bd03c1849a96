"""Shared-prompt packing: the layout by hand, and the same log-probs, gradients and update as the unpacked pass."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from score.config import ConfigError, load_config
from score.learner import Batch, Learner, token_logprobs
from score.learner_group import deal_groups, split_batch
from score.packing import pack_shared_prompts

CPU = torch.device("cpu")


def test_layout_by_hand():
    # two samples of prompt [1, 2] and a lone sequence whose prompt is [9]
    seqs, prefix = [[1, 2, 3, 4], [1, 2, 5], [9, 8, 7]], [2, 2, 1]
    packed = pack_shared_prompts(seqs, prefix, pad_id=0, max_tokens=100, attention="sdpa", device=CPU)
    assert packed.input_ids.tolist() == [[1, 2, 3, 4, 5], [9, 8, 7, 0, 0]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 2], [0, 1, 2, 0, 0]]
    # the hidden state that predicts token j + 1; past a sequence's end: its row's first position
    assert packed.source.tolist() == [[0, 1, 2], [0, 1, 0], [5, 6, 5]]
    assert packed.tokens == 8
    T, F = True, False
    assert packed.attention_mask[0, 0].tolist() == [
        [T, F, F, F, F],
        [T, T, F, F, F],
        [T, T, T, F, F],  # sample 1's tokens see the prompt and themselves
        [T, T, T, T, F],
        [T, T, F, F, T],  # sample 2's token sees the prompt, not sample 1
    ]
    assert packed.attention_mask[1, 0, 3].tolist() == [F, F, F, T, F]  # padding attends to itself only
    eager = pack_shared_prompts(seqs, prefix, pad_id=0, max_tokens=100, attention="eager", device=CPU)
    assert eager.attention_mask[0, 0, 4].tolist() == [0.0, 0.0, torch.finfo(torch.float32).min,
                                                      torch.finfo(torch.float32).min, 0.0]


def test_nothing_shared_means_no_packing_and_max_tokens_splits_a_group():
    assert pack_shared_prompts([[1, 2, 3], [4, 5, 6]], [1, 1], pad_id=0, max_tokens=100, attention="sdpa",
                               device=CPU) is None
    # prompt (2) + three continuations of 3: 11 positions; at most 8 per row gives rows of 2 and 1 samples
    seqs = [[1, 2, 3, 3, 3], [1, 2, 4, 4, 4], [1, 2, 5, 5, 5]]
    packed = pack_shared_prompts(seqs, [2, 2, 2], pad_id=0, max_tokens=8, attention="sdpa", device=CPU)
    assert packed.input_ids.tolist() == [[1, 2, 3, 3, 3, 4, 4, 4], [1, 2, 5, 5, 5, 0, 0, 0]]
    with pytest.raises(ValueError, match="sdpa"):
        pack_shared_prompts(seqs, [2, 2, 2], pad_id=0, max_tokens=8, attention="flash_attention_2", device=CPU)


def _sequences(vocab: int, seed: int = 0):
    """Three prompts (7, 5 and 4 tokens) with 3, 3 and 1 samples of 2-8 tokens each."""
    g = torch.Generator().manual_seed(seed)
    seqs, prefix = [], []
    for prompt_len, samples in ((7, 3), (5, 3), (4, 1)):
        prompt = torch.randint(3, vocab, (prompt_len,), generator=g).tolist()
        for _ in range(samples):
            tail = int(torch.randint(2, 9, (1,), generator=g))
            seqs.append(prompt + torch.randint(3, vocab, (tail,), generator=g).tolist())
            prefix.append(prompt_len)
    return seqs, prefix


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("max_tokens", [4096, 14])
def test_packed_logprobs_and_gradients_equal_the_unpacked(tiny_model_path, attention, max_tokens):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, attn_implementation=attention,
                                                 dtype=torch.float32).eval()
    seqs, prefix = _sequences(model.config.vocab_size)
    width = max(map(len, seqs))
    ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    read = torch.zeros(len(seqs), width - 1, dtype=torch.bool)  # from the first sample token to the end
    for b, s in enumerate(seqs):
        read[b, prefix[b] - 1:len(s) - 1] = True
    packed = pack_shared_prompts(seqs, prefix, pad_id=0, max_tokens=max_tokens, attention=attention, device=CPU)
    assert packed.tokens < sum(map(len, seqs))  # the prompts were computed fewer times
    results = []
    for packing in (None, packed):
        model.zero_grad()
        logp = token_logprobs(model, ids, mask, positions=read, packing=packing, chunk_tokens=5)
        (logp * torch.linspace(0.5, 1.5, logp.numel()).view_as(logp)).sum().backward()
        results.append((logp.detach(), [p.grad.clone() for p in model.parameters()]))
    (a, ga), (b, gb) = results
    assert (a != 0).sum() == read.sum()
    torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-6)


def _group_batch(vocab: int) -> Batch:
    """Two prompts with 3 samples each: prompt, y1 (2 tokens), instruction (1), y2 (rest), as SCoRe packs them."""
    seqs, prefix = _sequences(vocab, seed=3)
    seqs, prefix = seqs[:6], prefix[:6]
    turns = [[0] * p + [1, 1, 0] + [2] * (len(s) - p - 3) for s, p in zip(seqs, prefix)]
    seqs = [s + [5] * max(0, len(t) - len(s)) for s, t in zip(seqs, turns)]  # samples of 2 tokens get a y2
    turns = [t[:len(s)] for s, t in zip(seqs, turns)]
    return Batch(input_ids=seqs, turn_ids=turns, rollout_logprobs=[[0.0] * len(s) for s in seqs],
                 turn_advantages=[(0.5, -1.0), (-0.5, 2.0), (1.0, 0.0), (0.0, -1.0), (0.3, 0.1), (-0.2, 0.4)],
                 turn_kl_weights=(0.1, 0.01))


@pytest.mark.parametrize("kl_mode", ["reward", "loss"])
def test_train_step_with_shared_prompts_makes_the_same_update(tiny_model_path, kl_mode):
    results = {}
    for share in (False, True):
        learner = Learner(str(tiny_model_path), lr=1e-2, seed=0)
        batch = _group_batch(learner.policy.config.vocab_size)
        learner.train_step(batch, kl_mode=kl_mode, micro_batch_size=6)  # move off the reference: KL terms non-zero
        stats = learner.train_step(batch, kl_mode=kl_mode, micro_batch_size=3, share_prompt=share)
        results[share] = (stats, torch.cat([p.detach().flatten() for p in learner.policy.parameters()]))
    (a, pa), (b, pb) = results[False], results[True]
    for key in ("loss", "kl_t1", "kl_t2", "grad_norm", "logprob_mismatch"):
        assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
    assert a["kl_t1"] != 0.0
    torch.testing.assert_close(pb, pa, rtol=1e-4, atol=1e-6)
    prompts = sum(p for p, _ in ((7, 3), (5, 3)))
    assert b["tokens"] == a["tokens"] - 2 * prompts  # each prompt computed once instead of three times


def test_ranks_get_whole_prompt_groups():
    batch = _group_batch(400)
    parts = split_batch(batch, 2, share_prompt=True)
    prompts = [{tuple(ids[:turns.index(1)]) for ids, turns in zip(part.input_ids, part.turn_ids)} for part in parts]
    assert sorted(len(part.input_ids) for part in parts) == [3, 3] and all(len(p) == 1 for p in prompts)
    assert deal_groups([4, 4, 4], [0, 0, 0], 3) == [[0, 1, 2], [], []]


def test_share_prompt_max_tokens_must_be_positive(tiny_model_path):
    with pytest.raises(ConfigError, match="train.share_prompt_max_tokens"):
        load_config(None, [f"model.path={tiny_model_path}", "train.share_prompt_max_tokens=0"])
