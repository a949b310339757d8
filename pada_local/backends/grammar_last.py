"""Schema-constrained sampling at llama.cpp's own speed: the grammar checks one token, not all.

llama-cpp-python puts the grammar sampler into the chain ahead of top-k, so for every generated
token the grammar tests every entry of the vocabulary (49k for SmolLM2, 128k for Llama 3); with a
small teacher that costs more than the model itself. llama.cpp's own sampler (its `common`
library, used by llama-cli and llama-server) orders it the other way by default: sample with the
plain chain, test only the chosen token against the grammar, and only when the grammar rejects
it apply the grammar to the whole vocabulary and sample again. Same rules, same determinism for a
given seed; different draws than grammar-first where the plain chain's first choice is invalid.

`install(llm)` swaps this in for one `Llama` object; it needs llama-cpp-python's sampler hook
(`Llama._init_sampler`, a private method) and leaves the object as it is where that is missing.
"""

from __future__ import annotations

import ctypes
import inspect
import math
from typing import Any

import numpy as np


def install(llm: Any) -> bool:
    """Make `llm` sample grammar-last; False (nothing changed) where its version has no hook."""
    original = getattr(llm, "_init_sampler", None)
    if original is None or "grammar" not in inspect.signature(original).parameters:
        return False

    def init_sampler(*args: Any, grammar: Any = None, **kwargs: Any) -> Any:
        chain = original(*args, grammar=None, **kwargs)
        if grammar is None:
            return chain
        return GrammarLastSampler(chain, llm, grammar)

    llm._init_sampler = init_sampler
    return True


class GrammarLastSampler:
    """What `Llama.sample` calls (`sample(ctx, idx)`), for one generation."""

    def __init__(self, chain: Any, llm: Any, grammar: Any) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self.chain = chain  # an _internals.LlamaSampler: its chain is freed with it
        self.grammar = llama_cpp.llama_sampler_init_grammar(
            llm._model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8"))
        if not self.grammar:
            raise ValueError("llama.cpp could not compile the grammar")
        self.n_vocab = llm.n_vocab()
        self.buf = (llama_cpp.llama_token_data * self.n_vocab)()
        self.view = np.ctypeslib.as_array(self.buf)  # id, logit, p: a view onto buf
        self.all = llama_cpp.llama_token_data_array(self.buf, self.n_vocab, -1, False)
        self.one_buf = (llama_cpp.llama_token_data * 1)()
        self.one = llama_cpp.llama_token_data_array(self.one_buf, 1, -1, False)
        self.rejected = 0  # tokens the plain chain chose and the grammar refused (for tests)

    def sample(self, ctx: Any, idx: int) -> int:
        lib, raw = self._lib, ctx.ctx
        logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(raw, idx), shape=(self.n_vocab,))
        token = self._draw(logits, with_grammar=False)
        self.one_buf[0] = lib.llama_token_data(token, 0.0, 0.0)
        self.one.size, self.one.selected, self.one.sorted = 1, -1, False
        lib.llama_sampler_apply(self.grammar, ctypes.byref(self.one))
        if math.isinf(self.one_buf[0].logit):  # refused: the grammar over the whole vocabulary
            self.rejected += 1
            token = self._draw(logits, with_grammar=True)
        lib.llama_sampler_accept(self.grammar, token)
        lib.llama_sampler_accept(self.chain.sampler, token)
        return token

    def _draw(self, logits: np.ndarray, with_grammar: bool) -> int:
        lib = self._lib
        self.view["id"] = np.arange(self.n_vocab, dtype=np.int32)  # the chain reorders in place
        self.view["logit"] = logits
        self.view["p"] = 0.0
        self.all.data, self.all.size, self.all.selected, self.all.sorted = self.buf, self.n_vocab, -1, False
        if with_grammar:
            lib.llama_sampler_apply(self.grammar, ctypes.byref(self.all))
        lib.llama_sampler_apply(self.chain.sampler, ctypes.byref(self.all))
        if not 0 <= self.all.selected < self.all.size:
            raise RuntimeError("llama.cpp's sampler chose no token")
        return int(self.all.data[self.all.selected].id)

    def close(self) -> None:
        if self.grammar:
            self._lib.llama_sampler_free(self.grammar)
            self.grammar = None
        self.chain.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter teardown: the library may be gone
            pass
