"""Chunked log-probs and gradient checkpointing: same numbers and gradients, and no [B, L, V] logits tensor."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoModelForCausalLM

from score.learner import Learner, token_logprobs


class LargestVocabTensor(TorchDispatchMode):
    """Records the largest tensor with a vocabulary-sized last dimension that any op (forward or backward) returns."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab, self.largest = vocab, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.dim() >= 2 and t.shape[-1] == self.vocab:
                self.largest = max(self.largest, t.numel() // self.vocab)
        return out


def _inputs(vocab: int, lengths=(9, 12, 7, 12)):
    g = torch.Generator().manual_seed(0)
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(3, vocab, (n,), generator=g)
        mask[i, :n] = 1
    return ids, mask


def _logprobs_and_grads(model, ids, mask, chunk):
    model.zero_grad(set_to_none=True)
    logp = token_logprobs(model, ids, mask, chunk_tokens=chunk)
    (logp * mask[:, 1:]).sum().backward()
    return logp.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])


def test_chunked_logprobs_match_full_logits_and_their_gradients(tiny_model_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    ids, mask = _inputs(model.config.vocab_size)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    expected = logits.log_softmax(-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    reference, reference_grad = None, None
    for chunk in (1, 7, 1024):
        logp, grad = _logprobs_and_grads(model, ids, mask, chunk)
        torch.testing.assert_close(logp, expected.detach(), rtol=0, atol=1e-5)
        if reference_grad is None:
            reference, reference_grad = logp, grad
        torch.testing.assert_close(grad, reference_grad, rtol=1e-5, atol=1e-6)
    assert reference is not None and float(reference_grad.abs().sum()) > 0


def test_no_batch_by_length_by_vocab_tensor_is_ever_built(tiny_model_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    vocab = model.config.vocab_size
    ids, mask = _inputs(vocab, lengths=(30, 41, 25, 41))
    positions = ids.shape[0] * (ids.shape[1] - 1)
    with LargestVocabTensor(vocab) as seen:
        _logprobs_and_grads(model, ids, mask, chunk=8)
    # forward and backward: one chunk of logits at a time; the only larger vocab-wide tensor is the output weight's
    # transpose ([hidden, vocab]) inside the matmul
    assert seen.largest == max(8, model.config.hidden_size) < positions
    # the detector sees the full logits when they exist (an output layer that is not a plain Linear is not chunked)
    with LargestVocabTensor(vocab) as seen:
        model.config.final_logit_softcapping = 30.0
        try:
            _logprobs_and_grads(model, ids, mask, chunk=8)
        finally:
            model.config.final_logit_softcapping = None
    assert seen.largest >= positions



def test_selected_positions_get_the_same_logprobs_and_gradients_and_the_output_layer_runs_on_them_only(
        tiny_model_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    vocab = model.config.vocab_size
    ids, mask = _inputs(vocab, lengths=(30, 41, 25, 41))
    g = torch.Generator().manual_seed(1)
    positions = (torch.rand(ids.shape[0], ids.shape[1] - 1, generator=g) < 0.7) & mask[:, 1:].bool()
    weights = torch.randn(positions.shape, generator=g)

    def run(selected):
        model.zero_grad(set_to_none=True)
        with LargestVocabTensor(vocab) as seen:
            logp = token_logprobs(model, ids, mask, chunk_tokens=1024, positions=selected)
            (logp * weights * positions).sum().backward()
        return logp.detach(), torch.cat([p.grad.flatten() for p in model.parameters()]), seen.largest

    full, full_grad, full_rows = run(None)
    part, part_grad, part_rows = run(positions)
    torch.testing.assert_close(part[positions], full[positions], rtol=0, atol=1e-5)
    assert float(part[~positions].abs().sum()) == 0.0
    torch.testing.assert_close(part_grad, full_grad, rtol=1e-4, atol=1e-6)
    # one chunk holds every computed position: the largest vocab-wide tensor counts the rows the output layer ran on
    assert full_rows == positions.numel() and part_rows == int(positions.sum()) < full_rows
    # nothing selected (an FSDP padding micro-batch): all zeros, but the output layer still takes part in the graph
    model.zero_grad(set_to_none=True)
    none = token_logprobs(model, ids, mask, positions=torch.zeros_like(positions))
    assert float(none.detach().abs().sum()) == 0.0
    (none.sum() + 0.0).backward()
    assert model.get_output_embeddings().weight.grad is not None


def test_gradient_checkpointing_gives_the_same_update_with_fewer_saved_activations(tiny_model_path):
    from score.learner import Batch

    batch = Batch(input_ids=[list(range(5, 25)), list(range(30, 44))], turn_ids=[[0] * 4 + [1] * 6 + [0] + [2] * 9,
                                                                                 [0] * 3 + [1] * 4 + [0] + [2] * 6],
                  rollout_logprobs=[[0.0] * 20, [0.0] * 14], turn_advantages=[(1.0, -0.5), (0.5, 1.5)],
                  turn_kl_weights=(0.1, 0.01))
    params, saved = [], []
    for checkpointing in (False, True):
        learner = Learner(str(tiny_model_path), lr=1e-2, gradient_checkpointing=checkpointing)
        learner.policy.eval()  # checkpointing must not depend on train mode (dropout stays off for on-policy log-probs)
        count = [0]

        def pack(t, count=count):
            count[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            learner.train_step(batch, kl_mode="loss", micro_batch_size=2)
        saved.append(count[0])
        params.append(torch.cat([p.detach().flatten() for p in learner.policy.parameters()]))
    torch.testing.assert_close(params[0], params[1], rtol=1e-5, atol=1e-7)
    assert saved[1] < 0.8 * saved[0], saved


@pytest.mark.parametrize("bad", [0, -3])
def test_learner_rejects_a_bad_chunk_size(tiny_model_path, bad):
    with pytest.raises(ValueError, match="train.logprob_chunk_tokens"):
        Learner(str(tiny_model_path), logprob_chunk_tokens=bad)
