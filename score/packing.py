"""Shared-prompt packing: the samples of one prompt go through the model as one row, the prompt computed once.

The n samples of a prompt (`rollout.n`) begin with the same prompt tokens. Unpacked, every forward and backward pass
recomputes that prompt n times. Packed, a row holds the prompt once, then each sample's continuation (attempt 1, the
correction instruction, attempt 2), and a 4-D attention mask lets each continuation see the prompt and itself only,
with position ids that restart after the prompt for each continuation. Every token then has exactly the context and
position it has in its own unpacked sequence, so the log-probs are the same (`token_logprobs(..., packing=)`; tested
against the unpacked pass, gradients included).

What it saves: a prompt of P tokens shared by k continuations of S tokens costs P + kS token positions instead of
k(P + S). What it costs: attention over the longer row, P + kS wide, with a dense mask (no causal fast path). For
short attempts this is a few percent of the layer; `max_tokens` caps a packed row so that long samples, where
attention would dominate, are split over several rows (each repeating the prompt).

It needs an attention implementation that takes a 4-D mask: "sdpa" (a boolean mask) or "eager" (an additive one).
Others (flash attention) run unpacked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PACKABLE_ATTENTION = ("sdpa", "eager")


@dataclass
class PackedRows:
    """A micro-batch of B sequences packed into R rows of width W."""

    input_ids: torch.Tensor
    """[R, W] token ids (padding after the last continuation)."""
    position_ids: torch.Tensor
    """[R, W] each token's position in its own sequence."""
    attention_mask: torch.Tensor
    """[R, 1, W, W]: True (sdpa) or 0.0 (eager) where a query may attend to a key."""
    source: torch.Tensor
    """[B, L-1] long: the flat index, into the [R * W] packed positions, of the hidden state that predicts token
    j + 1 of sequence b. Positions past a sequence's end point at its row's first position (callers mask them)."""
    tokens: int
    """Real (non-padding) positions in the rows."""


def prompt_lengths(turn_ids: list[list[int]]) -> list[int]:
    """Per sequence, the tokens before its first trained token: the prompt that its sibling samples share.

    >>> prompt_lengths([[0, 0, 1, 1, 0, 2], [0, 1], [0, 0, 0]])
    [2, 1, 3]
    """
    return [next((t for t, turn in enumerate(turns) if turn > 0), len(turns)) for turns in turn_ids]


def prompt_groups(input_ids: list[list[int]], prefix: list[int]) -> list[int]:
    """A group number per sequence: sequences with the same prompt tokens share one, numbered in order of first
    appearance.

    >>> prompt_groups([[5, 6, 1], [7, 2], [5, 6, 3, 3]], [2, 1, 2])
    [0, 1, 0]
    """
    numbers: dict[tuple[int, ...], int] = {}
    return [numbers.setdefault(tuple(ids[:p]), len(numbers)) for ids, p in zip(input_ids, prefix)]


def grouped_order(lengths: list[int], groups: list[int]) -> list[int]:
    """Row indices with each prompt group's rows together: groups by their longest row, longest first, and each
    group's rows longest first. Micro-batches cut from this order keep siblings together (so they can share their
    prompt) and still hold sequences of similar length.

    >>> grouped_order([3, 9, 5, 4], [0, 1, 0, 1])
    [1, 3, 2, 0]
    """
    longest: dict[int, int] = {}
    for length, group in zip(lengths, groups):
        longest[group] = max(longest.get(group, 0), length)
    return sorted(range(len(lengths)), key=lambda i: (-longest[groups[i]], groups[i], -lengths[i]))


def pack_shared_prompts(input_ids: list[list[int]], prefix: list[int], *, pad_id: int, max_tokens: int,
                        attention: str, device: torch.device) -> PackedRows | None:
    """Pack sequences that share their first `prefix[b]` tokens (the same tokens) into rows of at most `max_tokens`
    (a row holds at least its prompt and one continuation). None where nothing is shared: every sequence's prompt
    is its own, so packing would only add the mask."""
    if attention not in PACKABLE_ATTENTION:
        raise ValueError(f"shared-prompt packing needs attention in {PACKABLE_ATTENTION}, not {attention!r}")
    groups = prompt_groups(input_ids, prefix)
    if len(set(groups)) == len(groups):
        return None
    members: dict[int, list[int]] = {}
    for b, g in enumerate(groups):
        members.setdefault(g, []).append(b)
    rows: list[tuple[list[int], list[int], int]] = []  # (prompt tokens, the sequences that follow it, row width)
    for seqs in members.values():
        prompt = input_ids[seqs[0]][:prefix[seqs[0]]]
        current: list[int] = []
        width = len(prompt)
        for b in seqs:
            extra = len(input_ids[b]) - len(prompt)
            if current and width + extra > max_tokens:
                rows.append((prompt, current, width))
                current, width = [], len(prompt)
            current.append(b)
            width += extra
        rows.append((prompt, current, width))

    W = max(width for _, _, width in rows)
    L = max(len(ids) for ids in input_ids)
    ids = torch.full((len(rows), W), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), W), dtype=torch.long)
    segment = torch.full((len(rows), W), -2, dtype=torch.long)  # -1: the prompt, k: continuation k, -2: padding
    source = torch.zeros((len(input_ids), L - 1), dtype=torch.long)
    for r, (prompt, seqs, _) in enumerate(rows):
        p = len(prompt)
        ids[r, :p] = torch.tensor(prompt)
        positions[r, :p] = torch.arange(p)
        segment[r, :p] = -1
        start = p
        for k, b in enumerate(seqs):
            tail = input_ids[b][p:]
            end = start + len(tail)
            ids[r, start:end] = torch.tensor(tail, dtype=torch.long)
            positions[r, start:end] = torch.arange(p, p + len(tail))
            segment[r, start:end] = k
            # the hidden state at sequence position j predicts token j + 1: in the prompt for j < p
            j = torch.arange(len(input_ids[b]) - 1)
            source[b, : len(j)] = r * W + torch.where(j < p, j, start + j - p)
            source[b, len(j):] = r * W
            start = end
    query, key = segment[:, :, None], segment[:, None, :]
    causal = torch.ones(W, W, dtype=torch.bool).tril()
    allowed = causal & ((key == query) | (key == -1)) & (query != -2)
    allowed |= torch.eye(W, dtype=torch.bool)  # a padding query attends to itself: no row of the softmax is empty
    mask = allowed[:, None]
    if attention == "eager":
        mask = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    return PackedRows(ids.to(device), positions.to(device), mask.to(device), source.to(device),
                      int((segment != -2).sum()))
