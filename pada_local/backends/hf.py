"""Student inference with transformers: batched greedy decoding over the student's own chat
template, left-padded, optionally with a LoRA adapter merged in."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .base import ChatRequest, Completion, OnItem
from .batches import full_attention
from .device import pick_device


def quiet_libraries() -> None:
    """Our own progress reporting replaces the libraries' bars and chatter."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def load_tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok.chat_template is None:
        raise ModelError(f"{model_dir}: the tokenizer has no chat template", hint="use an instruct model")
    return tok


def load_model(model_dir: Path, adapter: Path | None = None, device: str | None = None,
               dtype_name: str | None = None) -> Any:
    """The base student, with `adapter` merged in when given (merging makes decoding faster).
    The merge happens in fp32, then the weights take the device's type (device.train_dtype):
    merged straight into bf16, small LoRA updates round away."""
    import torch
    from transformers import AutoModelForCausalLM

    from .device import device_dtype, torch_dtype

    quiet_libraries()
    device = device or pick_device()
    dtype = torch_dtype(dtype_name or device_dtype(device))
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(model_dir), dtype=torch.float32 if adapter is not None else dtype, use_safetensors=True)
    except (ValueError, KeyError) as err:
        raise ModelError(f"{model_dir}: transformers cannot load this model ({err})") from None
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload().to(dtype)
    return model.to(device).eval()  # type: ignore[arg-type]  # transformers types .to() oddly


class HFGenerator:
    """Greedy, batched; one template render shared with training (see `render_prompt`).

    Batches hold up to `batch_size` rows (default: as many as fit `BATCH_TOKENS`). The opening
    every prompt of a call shares (chat template, system text: most of a short question's
    prompt) is computed once and its keys and values copied into each batch (`opening`)."""

    supports_schema = False

    def __init__(self, model_dir: Path, adapter: Path | None = None, batch_size: int | None = None,
                 max_new_tokens: int = 32, device: str | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.tokenizer = load_tokenizer(self.model_dir)
        self.tokenizer.padding_side = "left"  # decoder-only batches must pad on the left
        self.model = load_model(self.model_dir, adapter, device)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens

    def generate(self, requests: Sequence[ChatRequest], on_item: OnItem | None = None) -> list[Completion]:
        prompts = [self._prompt_ids(r) for r in requests]
        opening = self._opening(prompts)
        out: list[Completion] = []
        for batch in _batches(len(prompts), self.batch_size or _batch_rows(prompts)):
            caps = [requests[i].max_tokens or self.max_new_tokens for i in batch]
            for i, done in zip(batch, self._batch([prompts[i] for i in batch], max(caps), opening),
                               strict=True):
                out.append(done)
                if on_item is not None:
                    on_item(i, done)
        return out

    def _prompt_ids(self, request: ChatRequest) -> list[int]:
        text = render_prompt(self.tokenizer, request.messages)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _opening(self, prompts: Sequence[Sequence[int]]) -> tuple[int, Any] | None:
        """The shared opening's length and its cache, or None when reusing it is not exact (a
        model with sliding-window layers) or not worth a pass (under `MIN_OPENING` tokens). Each
        prompt keeps at least one token of its own: the last prompt token yields the first reply
        token's logits."""
        import os

        import torch
        from transformers import DynamicCache

        if not prompts or not full_attention(self.model.config):
            return None
        n = min(len(os.path.commonprefix([list(p) for p in prompts])), min(map(len, prompts)) - 1)
        if n < MIN_OPENING:
            return None
        cache = DynamicCache(config=self.model.config)
        with torch.inference_mode():
            self.model(input_ids=torch.tensor([list(prompts[0][:n])], device=self.model.device),
                       cache=cache, use_cache=True)
        return n, cache

    def _batch(self, prompts: Sequence[Sequence[int]], cap: int, opening: tuple[int, Any] | None
               ) -> list[Completion]:
        import torch

        n, cache = opening if opening is not None else (0, None)
        ids, mask = _padded(prompts, n, self.tokenizer.pad_token_id)
        extra = {"cache": _copies(cache, len(prompts))} if cache is not None else {}
        start = time.perf_counter()
        with torch.inference_mode():
            gen = self.model.generate(
                input_ids=ids.to(self.model.device), attention_mask=mask.to(self.model.device),
                max_new_tokens=cap, do_sample=False, pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=stop_token_ids(self.tokenizer), **extra,
            )
        seconds = (time.perf_counter() - start) / len(prompts)
        width = ids.shape[1]
        return [self._completion(gen[i, width:], len(p), seconds) for i, p in enumerate(prompts)]

    def _completion(self, new: Any, prompt_tokens: int, seconds: float) -> Completion:
        n = int((new != self.tokenizer.pad_token_id).sum())
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        return Completion(text=text, prompt_tokens=prompt_tokens, completion_tokens=n, seconds=seconds)

    def score_options(self, requests: Sequence[ChatRequest], options: Sequence[str],
                      batch_size: int | None = None,
                      on_item: Callable[[int, OptionScores], None] | None = None) -> list[OptionScores]:
        """log P(option | prompt) of every option as the continuation of each request's prompt,
        rendered exactly as `generate` renders it (lm-eval-harness multiple-choice scoring).

        Batched: `batch_size` rows per forward pass (default: the generator's batch size, else 8).
        `on_item(i, scores)` is called as request i is done, not necessarily in order."""
        if not options:
            raise ValueError("no options to score")
        opt_ids = [self._option_ids(o) for o in options]
        feeds, where = _shared_feeds(opt_ids)
        prompts = [self._prompt_ids(r) for r in requests]
        # Longest prompts first, so a batch holds rows of similar length and pads little.
        order = sorted(range(len(requests)), key=lambda i: -len(prompts[i]))
        per_batch = max(1, (batch_size or self.batch_size or 8) // len(feeds))
        opening = self._opening(prompts)
        out: list[OptionScores | None] = [None] * len(requests)
        for start in range(0, len(order), per_batch):
            chunk = order[start : start + per_batch]
            logp = self._logprobs([prompts[i] + list(f) for i in chunk for f in feeds],
                                  keep=1 + max(map(len, feeds)), opening=opening)
            for k, i in enumerate(chunk):
                rows = logp[k * len(feeds) : (k + 1) * len(feeds)]
                scores = out[i] = replace(_read_options(tuple(options), opt_ids, feeds, where, rows),
                                          prompt_tokens=len(prompts[i]))
                if on_item is not None:
                    on_item(i, scores)
        return [s for s in out if s is not None]

    def _option_ids(self, option: str) -> list[int]:
        # The option is tokenized on its own and appended to the prompt's ids (not tokenized
        # together with the prompt): the prompt keeps exactly the tokens generation sees, and no
        # token can merge across the boundary.
        ids = list(self.tokenizer(option, add_special_tokens=False)["input_ids"])
        if not ids:
            raise ValueError(f"option {option!r} has no tokens")
        return ids

    def _logprobs(self, rows: Sequence[Sequence[int]], keep: int,
                  opening: tuple[int, Any] | None = None) -> Any:
        """Log-softmax over the vocabulary at the last `keep` positions of each row: (rows, keep, V).
        With `opening` (its length and cache), the rows' first tokens come from the cache."""
        import torch

        n, cache = opening if opening is not None else (0, None)
        # Padded as in generation, so every row ends at the same column and only the last `keep`
        # logits are computed; positions count real tokens only, so a padded row sees the same
        # positions (hence the same scores) as the row alone.
        ids, mask = _padded(rows, n, self.tokenizer.pad_token_id)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        args: dict[str, Any] = {"input_ids": ids[:, n:], "attention_mask": mask, "position_ids": pos[:, n:]}
        args = {k: v.to(self.model.device) for k, v in args.items()}
        if cache is not None:
            args["cache"] = _copies(cache, len(rows))
        # Only the last `keep` positions are needed: skip the vocabulary projection elsewhere
        # where the model class allows it (most do); otherwise compute all logits and slice.
        if "logits_to_keep" in inspect.signature(self.model.forward).parameters:
            args["logits_to_keep"] = keep
        with torch.inference_mode():
            logits = self.model(**args, use_cache=cache is not None).logits
            return logits[:, -keep:].float().log_softmax(-1).cpu()


# Rows x longest prompt per generation batch: 32 short questions, fewer long passages (memory
# on a laptop); an opening shorter than MIN_OPENING tokens is not worth its own forward pass.
BATCH_TOKENS = 2048
MAX_BATCH = 32
MIN_OPENING = 8


def _batch_rows(prompts: Sequence[Sequence[int]]) -> int:
    """Rows per batch when the caller sets none: BATCH_TOKENS over the longest prompt, 1 to MAX_BATCH."""
    longest = max((len(p) for p in prompts), default=1)
    return max(1, min(MAX_BATCH, BATCH_TOKENS // longest))


def _batches(count: int, size: int) -> list[list[int]]:
    """Indices in request order, `size` at a time."""
    return [list(range(i, min(i + size, count))) for i in range(0, count, size)]


def _padded(rows: Sequence[Sequence[int]], opening: int, pad: int) -> tuple[Any, Any]:
    """Token ids and attention mask of rows padded on the left of their own part: the shared
    opening (its first `opening` tokens, identical in every row) stays in front, so it can come
    from one cache, and every row ends at the same column. Padding is masked out."""
    import torch

    width = max(map(len, rows))
    ids = torch.tensor([[*r[:opening], *[pad] * (width - len(r)), *r[opening:]] for r in rows])
    mask = torch.tensor([[1] * opening + [0] * (width - len(r)) + [1] * (len(r) - opening) for r in rows])
    return ids, mask


def _copies(cache: Any, rows: int) -> Any:
    """The opening's cache once per row of a batch, a copy (the forward pass appends to it)."""
    import copy

    out = copy.deepcopy(cache)
    out.batch_repeat_interleave(rows)
    return out


@dataclass(frozen=True)
class OptionScores:
    """How likely the student is to answer each option to one prompt."""

    options: tuple[str, ...]
    logprobs: tuple[float, ...]  # sum of the option's token log-probabilities
    token_counts: tuple[int, ...]
    greedy: tuple[bool, ...]  # every token of the option is the model's argmax (lm-eval's is_greedy)
    prompt_tokens: int = 0  # the rendered prompt's length (what the stage's token tally counts)

    @property
    def per_token(self) -> tuple[float, ...]:
        """Length-normalised: a label of more tokens is not penalised for its length."""
        return tuple(lp / n for lp, n in zip(self.logprobs, self.token_counts, strict=True))

    def best(self, normalize: bool = True) -> str:
        """The option the student finds most likely (per token when `normalize`); first on a tie."""
        values = self.per_token if normalize else self.logprobs
        return self.options[max(range(len(values)), key=values.__getitem__)]


def _shared_feeds(opt_ids: Sequence[Sequence[int]]) -> tuple[list[tuple[int, ...]], list[int]]:
    """The fewest token runs to feed after a prompt so that every option can be read off one:
    option o needs the logits after each of its tokens but the last, so any feed starting with
    o[:-1] serves. All one-token options read the prompt's last position: one row per prompt."""
    feeds: list[tuple[int, ...]] = []
    for ids in sorted(opt_ids, key=len, reverse=True):
        if not any(f[: len(ids) - 1] == tuple(ids[:-1]) for f in feeds):
            feeds.append(tuple(ids[:-1]))
    where = [next(k for k, f in enumerate(feeds) if f[: len(ids) - 1] == tuple(ids[:-1]))
             for ids in opt_ids]
    return feeds, where


def _read_options(options: tuple[str, ...], opt_ids: Sequence[Sequence[int]],
                  feeds: Sequence[tuple[int, ...]], where: Sequence[int], rows: Any) -> OptionScores:
    """One prompt's option scores from its rows of `_logprobs` (one row per feed)."""
    import torch

    sums: list[float] = []
    greedy: list[bool] = []
    keep = rows.shape[1]
    for ids, k in zip(opt_ids, where, strict=True):
        # The logits that predict the option's first token sit just before the feed.
        first = keep - 1 - len(feeds[k])
        dist = rows[k, first : first + len(ids)]
        target = torch.tensor(ids)
        sums.append(float(dist.gather(-1, target[:, None]).sum()))
        greedy.append(bool((dist.argmax(-1) == target).all()))
    return OptionScores(options, tuple(sums), tuple(len(i) for i in opt_ids), tuple(greedy))


def render_prompt(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """The prompt as the student sees it, identical in training and evaluation."""
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)


def stop_token_ids(tokenizer: Any) -> list[int]:
    """The token ids generation stops on: eos and the end-of-turn tokens the vocabulary has."""
    # Chat models end a turn with a special token that is not always `eos` (e.g. <|im_end|>,
    # <|eot_id|>); stop on any of them.
    ids = {tokenizer.eos_token_id}
    for tok in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            ids.add(tid)
    return sorted(i for i in ids if i is not None)


