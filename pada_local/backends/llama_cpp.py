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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ModelError
from . import grammar_last as grammar_last_module
from .base import ChatRequest, Completion, OnItem, one_by_one, sampling_kwargs
from .kv_prefix import PrefixReuse, chat_formatter, render_prompt
from .llama_batch import BatchDecoder, available_memory, fit_sequences, kv_bytes_per_token

DEFAULT_PARALLEL = 8  # sequences decoded together when teacher.parallel is not set (memory allowing)


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
        parallel: int | None = 1,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.n_ctx = n_ctx
        self.n_threads = n_threads if n_threads is not None else (os.cpu_count() or 1)
        self.llm = _load(self.model_path, n_ctx, self.n_threads, n_gpu_layers, seed, lora_path)
        # Schema replies: the grammar tests the sampled token, not the vocabulary (grammar_last).
        self.grammar_last = grammar_last and grammar_last_module.install(self.llm)
        self.prefix = PrefixReuse.for_model(self.llm) if reuse_prefix else None
        # Several requests decode together (llama_batch.py) where the chat template is the model's
        # own (the prompt is built the way the library builds it) and no LoRA is applied.
        batchable = PrefixReuse.for_model(self.llm) is not None and lora_path is None
        self.parallel = self._fit_parallel(parallel, log) if batchable else 1
        self.concurrency = self.parallel  # quality control asks every re-solve at once when > 1
        # Generation's unit of replay: a resumed round makes a chunk with a missing job again whole
        # (a reply depends on the requests decoded beside it).
        self.batch_chunk = 4 * self.parallel if self.parallel > 1 else 0
        self._decoder: BatchDecoder | None = None
        self._formatter: Any = None

    def _fit_parallel(self, wanted: int | None, log: Callable[[str], None] | None) -> int:
        """`wanted` sequences (None: DEFAULT_PARALLEL) as far as their KV cells fit in memory."""
        n, note = fit_sequences(DEFAULT_PARALLEL if wanted is None else wanted, self.n_ctx,
                                kv_bytes_per_token(self.llm), available_memory())
        if note is not None and log is not None:
            log(note)
        return n

    def generate(self, requests: Sequence[ChatRequest], on_item: OnItem | None = None) -> list[Completion]:
        if self.parallel <= 1 or len(requests) <= 1:
            return one_by_one(self.complete, requests, on_item)
        if self._decoder is None:
            try:
                self._decoder = BatchDecoder(self.llm, self.parallel, self.n_ctx, self.n_threads,
                                             new_sampler=self._sampler, render=self._render)
            except MemoryError as err:  # a GPU's memory, which the check before could not see
                raise ModelError(f"{self.model_path}: {err}",
                                 hint="lower teacher.parallel (or teacher.n_ctx)") from None

        def validated(i: int, done: Completion) -> None:  # on_item hears each reply as it is kept
            if on_item is not None:
                on_item(i, self._finish(done, requests[i]))

        return [self._finish(c, r) for c, r in
                zip(self._decoder.generate(requests, validated), requests, strict=True)]

    @staticmethod
    def _finish(done: Completion, req: ChatRequest) -> Completion:
        return _validated(done, req) if req.schema is not None and done.ok else done

    def _render(self, req: ChatRequest) -> tuple[list[int], list[str]]:
        if self._formatter is None:
            self._formatter = chat_formatter(self.llm)
        return render_prompt(self.llm, self._formatter, req.messages)

    def _sampler(self, req: ChatRequest) -> Any:
        """The sampler chain llama-cpp-python's chat completion would use for this request (its
        defaults, the request's temperature and seed, the schema's grammar, sampled grammar-last)."""
        from llama_cpp.llama_grammar import LlamaGrammar

        kwargs = sampling_kwargs(req, self.temperature, self.max_tokens, self.seed)
        grammar = None if req.schema is None else LlamaGrammar.from_json_schema(
            json.dumps(req.schema.model_json_schema()), verbose=False)
        self.llm.set_seed(kwargs["seed"])
        return self.llm._init_sampler(top_k=40, top_p=0.95, min_p=0.05, typical_p=1.0,
                                      temp=kwargs["temperature"], repeat_penalty=1.0, grammar=grammar)

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
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None
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


def _load(path: Path, n_ctx: int, n_threads: int, n_gpu_layers: int, seed: int,
          lora_path: Path | None = None) -> Any:
    from llama_cpp import Llama

    try:
        return Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=n_threads,
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

