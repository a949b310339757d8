"""Batched decoding for the in-process llama.cpp teacher: several requests in one context.

llama.cpp decodes many sequences in one batch for little more than the cost of one (decoding is
bound by reading the weights, once per batch), so the teacher keeps up to N requests in flight,
each its own sequence with its own sampler chain (temperature, seed, the JSON-schema grammar,
sampled grammar-last as in grammar_last.py) and its own stops. A new request's prompt shares
the KV cells of the longest opening it has in common with a sequence already in the context
(copied, not computed again), so the opening all of a stage's prompts share is evaluated once.

Reproducible: the same requests in the same order give the same replies (each sequence's
sampler is seeded by its request; the batches are formed in request order). A sequence's
logits are computed in a batch with others, so they can differ in the last bits from a
one-at-a-time computation (matrix kernels block by batch size); a greedy reply then rarely
differs (benchmarks/bench_engines.py --only batch measures how often).

The KV cache holds N x teacher.n_ctx cells in one unified pool; `fit_sequences` checks its size
against the memory before the context is made, and lowers N (saying so) rather than fail later.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import ChatRequest, Completion, OnItem, common_prefix

_MIN_SHARED = 8  # a common opening shorter than this is not worth a cell copy


@dataclass
class _Seq:
    index: int  # the request's place in the list
    req: ChatRequest
    prompt: list[int]
    sampler: Any  # .sample(ctx, idx) -> token (accepts it), .close()
    max_tokens: int
    stops: list[bytes]
    slot: int = -1
    pending: list[int] = field(default_factory=list)  # prompt tokens not decoded yet
    pos: int = 0  # the next position to decode
    out: list[int] = field(default_factory=list)
    started: float = 0.0
    finish: str | None = None  # "stop" | "length" once done
    text: bytes = b""


class _Context:
    """What the samplers read logits from (`.ctx`, as llama-cpp-python's own context wrapper)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx


class BatchDecoder:
    """N sequences of one llama.cpp context, filled from a queue of requests as they finish."""

    def __init__(self, llm: Any, n_seq: int, n_ctx_seq: int, n_threads: int, n_batch: int = 512,
                 new_sampler: Callable[[ChatRequest], Any] | None = None,
                 render: Callable[[ChatRequest], tuple[list[int], list[str]]] | None = None) -> None:
        import llama_cpp

        self.lib, self.llm, self.n_seq, self.n_ctx_seq = llama_cpp, llm, n_seq, n_ctx_seq
        self.n_batch = max(n_batch, n_seq)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_seq * n_ctx_seq
        params.n_batch = params.n_ubatch = self.n_batch
        params.n_seq_max = n_seq
        # One pool: a copied opening is shared cells, not a copy. A stream per sequence measured
        # slower (16 demo requests, 8 at once, 2 cores shared with another job: 50-53 s against 26-37 s).
        params.kv_unified = True
        params.n_threads = params.n_threads_batch = n_threads
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
        if not self.ctx:
            raise MemoryError(f"llama.cpp could not make a context of {params.n_ctx} cells")
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self.wrapped = _Context(self.ctx)
        self.cached: list[list[int]] = [[] for _ in range(n_seq)]  # tokens each slot's cells hold
        self.new_sampler, self.render = new_sampler, render
        self.shared = self.evaluated = 0  # prompt tokens copied / decoded, for benchmarks
        # Where the time goes, for benchmarks: llama_decode calls that carry prompt tokens and those
        # that only decode (one new token per generating sequence), and the tokens the latter made.
        self.prompt_seconds = self.decode_seconds = 0.0
        self.decode_tokens = 0

    # -- public

    def generate(self, requests: Sequence[ChatRequest], on_item: OnItem | None = None) -> list[Completion]:
        """Every request's reply in request order; `on_item` hears of each as it finishes."""
        # A clean context for every call: a reply depends on this call's requests alone, never on
        # what an earlier call left in the cells (so the same requests give the same replies).
        self.lib.llama_memory_clear(self.mem, True)
        self.cached = [[] for _ in range(self.n_seq)]
        results: dict[int, Completion] = {}
        waiting: list[_Seq] = []
        for i, req in enumerate(requests):
            seq = self._prepare(i, req)
            if isinstance(seq, _Seq):
                waiting.append(seq)
                continue
            results[i] = seq  # a prompt that cannot fit is that item's failure, as one at a time
            if on_item is not None:
                on_item(i, seq)
        active: list[_Seq] = []
        try:
            while waiting or active:
                free = sorted(set(range(self.n_seq)) - {s.slot for s in active})
                while waiting and free and not self._wait_for_opening(waiting[0], active):
                    active.append(self._start(waiting.pop(0), free.pop(0)))
                for seq in self._step(active):
                    active.remove(seq)
                    results[seq.index] = self._completion(seq)
                    if on_item is not None:
                        on_item(seq.index, results[seq.index])
        finally:
            for seq in active:
                seq.sampler.close()
        return [results[i] for i in range(len(requests))]

    def close(self) -> None:
        if self.ctx:
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.ctx)
            self.ctx = None

    # -- one request

    def _prepare(self, index: int, req: ChatRequest) -> _Seq | Completion:
        assert self.render is not None and self.new_sampler is not None
        prompt, stops = self.render(req)
        if len(prompt) >= self.n_ctx_seq:
            why = f"prompt too long for teacher.n_ctx={self.n_ctx_seq} ({len(prompt)} tokens)"
            return Completion(text="", ok=False, prompt_tokens=len(prompt), error=why)
        limit = self.n_ctx_seq - len(prompt)
        max_tokens = limit if req.max_tokens is None or req.max_tokens <= 0 else min(req.max_tokens, limit)
        return _Seq(index, req, prompt, None, max_tokens, [s.encode() for s in stops if s])

    def _wait_for_opening(self, seq: _Seq, active: list[_Seq]) -> bool:
        """Start a request one step later when a prompt still being decoded shares more of its
        opening than any slot holds yet: the opening is then computed once and copied."""
        held = max((common_prefix(c, seq.prompt) for c in self.cached), default=0)
        enough = max(held + 1, _MIN_SHARED)
        return any(s.pending and common_prefix(s.prompt, seq.prompt) >= enough for s in active)

    def _start(self, seq: _Seq, slot: int) -> _Seq:
        """Give the request a slot and its sampler; take its longest common opening from a slot
        that holds it."""
        assert self.new_sampler is not None
        lib, mem = self.lib, self.mem
        seq.slot, seq.started, seq.sampler = slot, time.perf_counter(), self.new_sampler(seq.req)
        donor, shared = slot, common_prefix(self.cached[slot], seq.prompt)
        for other in range(self.n_seq):
            n = common_prefix(self.cached[other], seq.prompt)
            if n > shared:
                donor, shared = other, n
        shared = min(shared, len(seq.prompt) - 1)  # the last prompt token is decoded: its logits
        if shared < _MIN_SHARED:
            shared = 0
        if donor == slot:
            lib.llama_memory_seq_rm(mem, slot, shared, -1)
        else:
            lib.llama_memory_seq_rm(mem, slot, -1, -1)
            lib.llama_memory_seq_cp(mem, donor, slot, 0, shared)
        self.cached[slot] = list(seq.prompt[:shared])
        seq.pending, seq.pos = list(seq.prompt[shared:]), shared
        self.shared += shared
        return seq

    # -- one decode call

    def _step(self, active: list[_Seq]) -> list[_Seq]:
        """One llama_decode: every generating sequence's next token, then as much of the waiting
        prompts as fits. Returns the sequences that finished."""
        rows: list[tuple[_Seq, int]] = []  # (sequence, batch row whose logits it samples)
        n = 0
        for seq in (s for s in active if not s.pending):
            self._put(n, seq.out[-1], seq.pos, seq.slot, True)
            rows.append((seq, n))
            seq.pos, n = seq.pos + 1, n + 1
        generating = n
        for seq in (s for s in active if s.pending):
            take = seq.pending[: self.n_batch - n]
            for k, token in enumerate(take):
                last = k == len(take) - 1 and len(take) == len(seq.pending)
                self._put(n, token, seq.pos, seq.slot, last)
                if last:
                    rows.append((seq, n))
                seq.pos, n = seq.pos + 1, n + 1
            self.cached[seq.slot] += take
            self.evaluated += len(take)
            seq.pending = seq.pending[len(take):]
            if n >= self.n_batch:
                break
        self.batch.n_tokens = n
        t0 = time.perf_counter()
        if self.lib.llama_decode(self.ctx, self.batch) != 0:
            raise RuntimeError("llama.cpp could not decode a batch (the KV cache is full)")
        if n > generating:
            self.prompt_seconds += time.perf_counter() - t0
        else:
            self.decode_seconds += time.perf_counter() - t0
            self.decode_tokens += n
        return [seq for seq, row in rows if self._sample(seq, row)]

    def _put(self, i: int, token: int, pos: int, slot: int, logits: bool) -> None:
        b = self.batch
        b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, 1, int(logits)
        b.seq_id[i][0] = slot

    def _sample(self, seq: _Seq, row: int) -> bool:
        """Sample the sequence's next token; True when it is done."""
        token = seq.sampler.sample(self.wrapped, row)
        if self.lib.llama_vocab_is_eog(self.llm._model.vocab, token):
            seq.finish = "stop"
            return True
        seq.out.append(token)
        self.cached[seq.slot].append(token)
        seq.text = self.llm.detokenize(seq.out, prev_tokens=seq.prompt)
        hit = [s for s in seq.stops if s in seq.text]
        if hit:
            seq.text, seq.finish = seq.text[: seq.text.index(hit[0])], "stop"
        elif len(seq.out) >= seq.max_tokens:
            seq.finish = "length"
        return seq.finish is not None

    def _completion(self, seq: _Seq) -> Completion:
        seq.sampler.close()
        return Completion(text=seq.text.decode("utf-8", errors="ignore"), prompt_tokens=len(seq.prompt),
                          completion_tokens=len(seq.out), seconds=time.perf_counter() - seq.started,
                          finish_reason=seq.finish)


def kv_bytes_per_token(llm: Any) -> int:
    """Bytes one KV cell takes for this model (f16 keys and values, every layer)."""
    lib, model = __import__("llama_cpp"), llm._model.model
    n_head = max(1, lib.llama_model_n_head(model))
    head_dim = lib.llama_model_n_embd(model) // n_head
    return 2 * 2 * lib.llama_model_n_layer(model) * lib.llama_model_n_head_kv(model) * head_dim


def fit_sequences(wanted: int, n_ctx: int, per_token: int, available: int | None,
                  share: float = 0.25) -> tuple[int, str | None]:
    """How many sequences of n_ctx cells fit in `share` of the available memory (bytes; None:
    unknown, take what was asked), and a line saying so when it is fewer than wanted."""
    if available is None:
        return wanted, None
    each = n_ctx * per_token
    fits = max(1, min(wanted, int(available * share // max(each, 1))))
    if fits >= wanted:
        return wanted, None
    need, free = wanted * each / 2**20, available / 2**20
    return fits, (f"teacher: {fits} sequences at once, not {wanted}: {wanted} x {n_ctx} KV cells would "
                  f"take {need:.0f} MB, more than {share:.0%} of the {free:.0f} MB free")


def available_memory() -> int | None:
    """Free memory in bytes (MemAvailable on Linux, psutil elsewhere), or None when unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
