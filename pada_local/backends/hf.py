"""Student inference with transformers: batched greedy decoding over the student's own chat
template, left-padded, optionally with a LoRA adapter merged in."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from ..errors import ModelError
from .base import ChatRequest, Completion, OnItem


def pick_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


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


def load_model(model_dir: Path, adapter: Path | None = None, device: str | None = None) -> Any:
    """The base student, with `adapter` merged in when given (merging makes decoding faster)."""
    import torch
    from transformers import AutoModelForCausalLM

    quiet_libraries()
    device = device or pick_device()
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    try:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype, use_safetensors=True)
    except (ValueError, KeyError) as err:
        raise ModelError(f"{model_dir}: transformers cannot load this model ({err})") from None
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return model.to(device).eval()


class HFGenerator:
    """Greedy, batched; one template render shared with training (see `render_prompt`)."""

    supports_schema = False

    def __init__(self, model_dir: Path, adapter: Path | None = None, batch_size: int = 8,
                 max_new_tokens: int = 32, device: str | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.tokenizer = load_tokenizer(self.model_dir)
        self.tokenizer.padding_side = "left"  # decoder-only batches must pad on the left
        self.model = load_model(self.model_dir, adapter, device)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens

    def generate(self, requests: Sequence[ChatRequest], on_item: OnItem | None = None) -> list[Completion]:
        out: list[Completion] = []
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start : start + self.batch_size]
            for j, done in enumerate(self._batch(batch)):
                out.append(done)
                if on_item is not None:
                    on_item(start + j, done)
        return out

    def _batch(self, batch: Sequence[ChatRequest]) -> list[Completion]:
        import torch

        texts = [render_prompt(self.tokenizer, r.messages) for r in batch]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(self.model.device)
        cap = max(r.max_tokens or self.max_new_tokens for r in batch)
        start = time.perf_counter()
        with torch.inference_mode():
            gen = self.model.generate(
                **enc, max_new_tokens=cap, do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id, eos_token_id=_stop_ids(self.tokenizer),
            )
        seconds = (time.perf_counter() - start) / len(batch)
        return [self._completion(enc, gen, i, seconds) for i in range(len(batch))]

    def _completion(self, enc: Any, gen: Any, i: int, seconds: float) -> Completion:
        new = gen[i, enc["input_ids"].shape[1] :]
        mask = new != self.tokenizer.pad_token_id
        n = int(mask.sum())
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        return Completion(text=text, prompt_tokens=int(enc["attention_mask"][i].sum()),
                          completion_tokens=n, seconds=seconds)


def render_prompt(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """The prompt as the student sees it, identical in training and evaluation."""
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)


def _stop_ids(tokenizer: Any) -> list[int]:
    # Chat models end a turn with a special token that is not always `eos` (e.g. <|im_end|>,
    # <|eot_id|>); stop on any of them.
    ids = {tokenizer.eos_token_id}
    for tok in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            ids.add(tid)
    return sorted(i for i in ids if i is not None)
