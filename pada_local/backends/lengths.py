"""Which training examples fit `train.max_length`: one rule for every trainer backend.

An example whose prompt + answer is longer than max_length is dropped, never cut: TRL would cut
the answer (the loss then falls on part of it, or on none of it) while mlx-lm drops only rows
left with no answer token, so the same config trained different data per backend. Each backend
calls `fit_spec` with its own tokenizer before training and returns the dropped ids on its
Adapter; preflight calls `truncation_report` on D_train to warn before any model loads.

Lengths are counted as the trainers count them: the student's own chat template over the prompt
messages plus the answer as an assistant turn. That is the sequence TRL tokenizes for a
conversational prompt/completion row (peft, Unsloth) and mlx-lm's ChatDataset for a chat.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import ConfigError
from .base import TrainExample, TrainSpec, common_prefix

SHOWN_IDS = 3  # ids named in a warning; the rest are counted
WARN_SHARE = 0.01  # preflight warns when more than this share of D_train would be dropped


def chat_ids(tokenizer: Any, messages: Sequence[dict[str, str]],
             generation_prompt: bool = False) -> list[int]:
    """Token ids of `messages` under the tokenizer's chat template, as TRL and mlx-lm get them."""
    out = tokenizer.apply_chat_template(list(messages), tokenize=True, return_dict=True,
                                        add_generation_prompt=generation_prompt)
    # A transformers tokenizer gives a BatchEncoding; a wrapper (mlx-lm's) may give the ids.
    return list(out["input_ids"] if isinstance(out, Mapping) else out)


def example_length(tokenizer: Any, ex: TrainExample) -> tuple[int, int]:
    """(tokens of prompt + answer, tokens the loss falls on). The answer starts where the prompt
    rendered alone and the whole chat diverge, as TRL counts it (`common_prefix_length`)."""
    prompt = chat_ids(tokenizer, ex.prompt_messages, generation_prompt=True)
    full = chat_ids(tokenizer, [*ex.prompt_messages, {"role": "assistant", "content": ex.answer}])
    return len(full), len(full) - common_prefix(prompt, full)


@dataclass(frozen=True)
class Fit:
    kept: tuple[TrainExample, ...]
    dropped_ids: tuple[str, ...]
    lengths: tuple[int, ...]  # prompt + answer tokens of every example, in order


def fit_examples(tokenizer: Any, examples: Sequence[TrainExample], max_length: int) -> Fit:
    """Keep the examples whose whole prompt + answer fits max_length and has an answer token."""
    kept, dropped, lengths = [], [], []
    for i, ex in enumerate(examples):
        total, answer = example_length(tokenizer, ex)
        lengths.append(total)
        if total <= max_length and answer > 0:
            kept.append(ex)
        else:
            dropped.append(ex.id or f"#{i}")
    return Fit(tuple(kept), tuple(dropped), tuple(lengths))


def fit_spec(spec: TrainSpec, tokenizer: Any) -> tuple[TrainSpec, tuple[str, ...]]:
    """The spec with only the examples that fit, and the ids left out. Every backend calls this
    with the tokenizer it trains with, before training."""
    fit = fit_examples(tokenizer, spec.examples, spec.max_length)
    if not fit.kept:
        raise ConfigError(f"train.max_length={spec.max_length}: no training example fits "
                          f"(the shortest is {min(fit.lengths, default=0)} tokens with its prompt)",
                          hint=f"raise train.max_length to at least {suggest_max_length(fit.lengths)}")
    return replace(spec, examples=fit.kept), fit.dropped_ids


def dropped_warning(dropped_ids: Sequence[str], total: int, max_length: int) -> str:
    """One line: how many examples were left out, the first few ids, and what to change."""
    shown = ", ".join(dropped_ids[:SHOWN_IDS]) + (", ..." if len(dropped_ids) > SHOWN_IDS else "")
    return (f"{len(dropped_ids)} of {total} training examples are longer than train.max_length="
            f"{max_length} tokens (prompt + answer) and are left out, not cut: {shown}")


def suggest_max_length(lengths: Sequence[int]) -> int:
    """The 99th percentile length (nearest rank), rounded up to a multiple of 32."""
    if not lengths:
        return 32
    p99 = sorted(lengths)[max(math.ceil(0.99 * len(lengths)) - 1, 0)]
    return max(32, -(-p99 // 32) * 32)


class TruncationReport(NamedTuple):
    n_dropped: int
    first_ids: tuple[str, ...]
    suggested_max_length: int | None  # set only when more than WARN_SHARE would be dropped
    warning: str | None  # the line preflight shows, with the suggestion; None when all is well


def truncation_report(tokenizer_or_dir: Any, examples: Sequence[TrainExample],
                      max_length: int) -> TruncationReport:
    """What `fit_spec` would drop from `examples` (D_train), for preflight. `tokenizer_or_dir` is
    a tokenizer, a Hugging Face model folder or a .gguf file (a GGUF student not yet prepared)."""
    tokenizer = tokenizer_for(tokenizer_or_dir)
    fit = fit_examples(tokenizer, examples, max_length)
    first = fit.dropped_ids[:SHOWN_IDS]
    if len(fit.dropped_ids) <= WARN_SHARE * len(examples):
        return TruncationReport(len(fit.dropped_ids), first, None, None)
    suggested = suggest_max_length(fit.lengths)
    warning = (dropped_warning(fit.dropped_ids, len(examples), max_length)
               + f"; set train.max_length to {suggested} to keep 99% of them")
    return TruncationReport(len(fit.dropped_ids), first, suggested, warning)


def tokenizer_for(source: Any) -> Any:
    """A tokenizer as given, or the one a model folder (or tokenizer source) holds."""
    if not isinstance(source, (str, Path)):
        return source
    path = Path(source)
    if path.suffix != ".gguf":
        from .hf import load_tokenizer

        return load_tokenizer(path)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
