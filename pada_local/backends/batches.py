"""Training batches as one row in which the examples' shared prompt opening is computed once.

The examples of a task open with the same rendered text (chat template and system prompt: 26 of
the demo task's 47 tokens per example). A batch goes in as one row: that opening once, then each
example's remainder (the rest of its prompt, its answer), each remainder attending to the opening
and to itself only (a 4D mask), at the positions it has on its own. Each remainder therefore sees
exactly the context it sees alone, so the loss is that of the examples trained separately, and the
opening's activations get the sum of the gradients their copies would get: the same gradient,
computed with fewer tokens. Without a shared opening the row is the padding-free one (each
example in its own block).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

IGNORE = -100


def shared_length(ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]]) -> int:
    """How many opening tokens all examples share, within their prompts and leaving each example
    at least one prompt token of its own (that token predicts the answer's first token, so it must
    sit in the example's own block)."""
    prompts = [list(x[: prompt_length(lab)]) for x, lab in zip(ids, labels, strict=True)]
    if not prompts:
        return 0
    return max(0, min(len(os.path.commonprefix(prompts)), min(map(len, prompts)) - 1))


def prompt_length(labels: Sequence[int]) -> int:
    """Tokens before the first one the loss counts (the prompt: TRL labels it -100)."""
    return next((i for i, tok in enumerate(labels) if tok != IGNORE), len(labels))


class SharedPrefixCollator:
    """Collates TRL-tokenized examples (`input_ids`, `labels`) into one row: see the module text."""

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        ids = [list(e["input_ids"]) for e in examples]
        labels = [list(e["labels"]) for e in examples]
        shared = shared_length(ids, labels)
        row, pos, lab, block = list(ids[0][:shared]), list(range(shared)), [IGNORE] * shared, [0] * shared
        for k, (x, y) in enumerate(zip(ids, labels, strict=True), start=1):
            row += x[shared:]
            pos += range(shared, len(x))
            # A block's first token is a prompt token (shared_length leaves one), and the row's
            # token before it is not its context (another block's end): never a target.
            lab += [IGNORE, *y[shared + 1 :]]
            block += [k] * (len(x) - shared)
        b = torch.tensor(block)
        n = len(row)
        causal = torch.arange(n)[:, None] >= torch.arange(n)[None, :]
        visible = causal & ((b[:, None] == b[None, :]) | (b[None, :] == 0))
        return {"input_ids": torch.tensor([row]), "labels": torch.tensor([lab]),
                "position_ids": torch.tensor([pos]), "attention_mask": visible[None, None]}


def example_tokens(position_ids: Any) -> int:
    """The tokens the examples have on their own, read off a row's position ids: each example (its
    block, or the opening and the first block) ends where the positions stop increasing, at its
    length minus one."""
    total = 0
    for p in position_ids:
        ends = (p[1:] <= p[:-1]).nonzero().flatten().tolist() + [len(p) - 1]
        total += int(sum(int(p[e]) + 1 for e in ends))
    return total


def supports_custom_mask(model: Any) -> bool:
    """A 4D boolean mask goes to torch's scaled-dot-product attention unchanged; other kernels
    (flash attention, eager's additive masks, Unsloth's) are left to the padding-free layout, and
    so are models with sliding-window layers (the custom mask would replace their window)."""
    config = getattr(model, "config", None)
    return getattr(config, "_attn_implementation", None) == "sdpa" and full_attention(config)


def full_attention(config: Any) -> bool:
    """Every layer attends to the whole context (no sliding window): a shared opening's keys and
    values, or one mask for all layers, then mean the same in every layer."""
    types = getattr(config, "layer_types", None)
    if types:
        return all(t == "full_attention" for t in types)
    return not getattr(config, "sliding_window", None)
