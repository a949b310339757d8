"""Teacher (and GGUF student) inference through llama-cpp-python.

llama.cpp compiles a JSON schema into a grammar, but silently falls back to generic JSON when
it cannot; so every constrained reply is validated with pydantic here, and an invalid reply
becomes a failed Completion carrying its raw text, never an exception.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ModelError
from . import grammar_last as grammar_last_module
from .base import ChatRequest, Completion, OnItem, one_by_one, sampling_kwargs
from .kv_prefix import PrefixReuse


class LlamaCppGenerator:
    supports_schema = True

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        temperature: float = 0.7,
        max_tokens: int = 256,
        seed: int = 0,
        lora_path: Path | None = None,
        reuse_prefix: bool = True,
        grammar_last: bool = True,
    ) -> None:
        self.model_path = Path(model_path)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.n_ctx = n_ctx
        self.llm = _load(self.model_path, n_ctx, n_threads, n_gpu_layers, seed, lora_path)
        # Schema replies: the grammar tests the sampled token, not the vocabulary (grammar_last).
        self.grammar_last = grammar_last and grammar_last_module.install(self.llm)
        self.prefix = PrefixReuse.for_model(self.llm) if reuse_prefix else None

    def generate(self, requests: Sequence[ChatRequest], on_item: OnItem | None = None) -> list[Completion]:
        return one_by_one(self.complete, requests, on_item)

    def complete(self, req: ChatRequest) -> Completion:
        # llama.cpp's own prefix matching would make a reply depend on the request before it
        # (a resumed run must sample exactly what the first one did): either evaluate every
        # prompt from a clean KV cache, or reuse its opening messages in fixed pieces (kv_prefix).
        if self.prefix is None:
            self.llm.reset()
        else:
            self.prefix.prepare(req.messages)
        start = time.perf_counter()
        try:
            reply = self.llm.create_chat_completion(**self._kwargs(req))
        except ValueError as err:
            too_long = _too_long(str(err), self.n_ctx, self.llm.n_ctx())
            if too_long is None:
                raise
            return too_long
        seconds = time.perf_counter() - start
        choice = reply["choices"][0]
        text = choice["message"].get("content") or ""
        usage = reply.get("usage") or {}
        done = Completion(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            seconds=seconds,
            finish_reason=choice.get("finish_reason"),
        )
        return done if req.schema is None else _validated(done, req)

    def _kwargs(self, req: ChatRequest) -> dict[str, Any]:
        kwargs = sampling_kwargs(req, self.temperature, self.max_tokens, self.seed)
        if req.schema is not None:
            schema = req.schema.model_json_schema()
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        return kwargs

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=True))

    def close(self) -> None:
        closer = getattr(self.llm, "close", None)
        if closer is not None:
            closer()


def _validated(done: Completion, req: ChatRequest) -> Completion:
    assert req.schema is not None
    try:
        # strict=False: small models put raw newlines inside JSON strings; that is harmless.
        data = req.schema.model_validate(json.loads(done.text, strict=False))
    except json.JSONDecodeError as err:
        return _failed(done, f"invalid reply: not JSON ({err.msg} at char {err.pos})")
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "reply"
        return _failed(done, f"invalid reply: {where}: {first['msg']}")
    return Completion(**{**done.__dict__, "data": data})


def _too_long(message: str, n_ctx: int, window: int) -> Completion | None:
    """llama-cpp-python refuses a prompt that fills the context window with a ValueError; that
    is one item's failure (a rejected row), not the run's. None for any other ValueError."""
    found = _TOO_LONG.search(message)
    if found is None:
        return None
    # llama.cpp may round the window up (to 256 at least): name both when they differ.
    real = "" if window == n_ctx else f", a window of {window} here"
    return Completion(text="", ok=False, prompt_tokens=int(found.group(1)),
                      error=f"prompt too long for teacher.n_ctx={n_ctx} ({found.group(1)} tokens{real})")


_TOO_LONG = re.compile(r"Requested tokens \((\d+)\) exceed context window")


def _failed(done: Completion, error: str) -> Completion:
    return Completion(**{**done.__dict__, "ok": False, "error": error, "data": None})


def _load(path: Path, n_ctx: int, n_threads: int | None, n_gpu_layers: int, seed: int,
          lora_path: Path | None = None) -> Any:
    from llama_cpp import Llama

    try:
        return Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=n_threads if n_threads is not None else (os.cpu_count() or 1),
            n_gpu_layers=n_gpu_layers,
            seed=seed,
            verbose=False,
            lora_path=None if lora_path is None else str(lora_path),  # an export's base + adapter form
        )
    except (ValueError, RuntimeError) as err:
        raise ModelError(f"{path}: llama.cpp could not load this model ({err})") from None


def build_info() -> dict[str, Any]:
    """llama-cpp-python's version and the features its llama.cpp was built with."""
    import llama_cpp

    info: dict[str, Any] = {"version": llama_cpp.__version__}
    try:
        info["system_info"] = llama_cpp.llama_print_system_info().decode(errors="replace").strip()
        info["gpu_offload"] = bool(llama_cpp.llama_supports_gpu_offload())
    except AttributeError:
        pass
    return info

