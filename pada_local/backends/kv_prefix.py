"""Prompt-prefix reuse for the in-process llama.cpp teacher, reproducible by construction.

Teacher requests repeat their opening messages (the system text of a stage, a pattern's
instructions), and llama.cpp's own prefix matching would reuse whatever the KV cache happens to
hold, so a reply would depend on the request before it: a resumed run would sample differently.
Here a prompt is always evaluated in the same pieces, cut at message boundaries that depend on
the request alone: [message 1][message 2]...[the rest]. A piece whose KV state is already known
(still in the context, or saved after an earlier request) is restored instead of evaluated; a
piece evaluated now is evaluated exactly as it would be from a cold cache. So a request gets the
same reply with a cold cache as with a warm one (tested), and only the time differs.

Saved states are one sequence's KV cells (llama_state_seq_*), a few MB for a small teacher,
kept in a byte-bounded LRU.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from .base import common_prefix

# Piece boundaries closer than this are not worth a separate llama_decode call.
_MIN_PIECE = 8


def chat_formatter(llm: Any, generation_prompt: bool = True) -> Any:
    """The formatter llama-cpp-python renders this model's chat template with (Any: it types
    messages as its own TypedDicts; ours are plain dicts)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    bos, eos = llm.token_bos(), llm.token_eos()
    text = llm._model.token_get_text  # the same strings llama-cpp-python gives its formatter
    return Jinja2ChatFormatter(template=llm.metadata["tokenizer.chat_template"],
                               bos_token=text(bos) if bos != -1 else "",
                               eos_token=text(eos) if eos != -1 else "", stop_token_ids=[eos],
                               add_generation_prompt=generation_prompt)


def render_prompt(llm: Any, formatter: Any,
                  messages: Sequence[dict[str, Any]]) -> tuple[list[int], list[str]]:
    """A chat prompt's tokens and stop strings exactly as llama-cpp-python's chat completion
    builds them."""
    result = formatter(messages=list(messages))
    prompt = result.prompt.encode("utf-8")
    tokens = list(llm.tokenize(prompt, add_bos=not result.added_special, special=True))
    stop = result.stop if isinstance(result.stop, list) else [] if result.stop is None else [result.stop]
    return tokens, [s for s in stop if s]


class PrefixReuse:
    """Evaluates a chat prompt's opening messages before llama-cpp-python's completion runs."""

    def __init__(self, llm: Any, max_bytes: int = 256 * 2**20) -> None:
        import llama_cpp

        self.llm, self.lib = llm, llama_cpp
        self.full, self.head = chat_formatter(llm), chat_formatter(llm, generation_prompt=False)
        # A state is only valid for a request that cuts its prefix the same way: keep the cuts.
        self.states: OrderedDict[tuple[int, ...], tuple[tuple[int, ...], bytes]] = OrderedDict()
        self.live_cuts: tuple[int, ...] = ()
        self.max_bytes = max_bytes
        self.hits = self.evaluated = 0  # tokens restored / evaluated here, for benchmarks

    @classmethod
    def for_model(cls, llm: Any) -> PrefixReuse | None:
        """None where the prompt is not built by the model's own chat template (a named chat
        format or handler): there the pieces could not be computed the way the library builds them."""
        if llm.chat_handler is not None or llm.chat_format != "chat_template.default":
            return None
        if "tokenizer.chat_template" not in llm.metadata:
            return None
        return cls(llm)

    def prepare(self, messages: Sequence[dict[str, Any]]) -> None:
        """Leave the context holding exactly the prompt's opening pieces; the completion call then
        evaluates the rest (its own prefix match stops where the context ends)."""
        tokens, cuts = self.pieces(messages)
        if not cuts or len(tokens) >= self.llm.n_ctx():
            self.llm.reset()  # too long: the completion call reports it, as without reuse
            self.live_cuts = ()
            return
        start = self._restore(tokens, cuts)
        for lo, hi in zip([start, *cuts], cuts, strict=False):
            if hi <= lo:
                continue
            self.llm.eval(tokens[lo:hi])
            self.evaluated += hi - lo
            self._save(tuple(tokens[:hi]), tuple(c for c in cuts if c <= hi))
        self.live_cuts = tuple(cuts)

    def pieces(self, messages: Sequence[dict[str, Any]]) -> tuple[list[int], list[int]]:
        """The prompt's tokens as the library will build them, and where its pieces end: after the
        first message (a stage's system text) and before the last (the shared opening of a
        pattern's or an item's requests). More cuts cost a decode call and a saved state each."""
        msgs = list(messages)
        full = self.full(messages=msgs)
        tokens = self._tokenize(full.prompt, full.added_special)
        cuts: list[int] = []
        for k in sorted({1, len(msgs) - 1}):
            cut = self._cut(msgs[:k], full.prompt, tokens) if 0 < k < len(msgs) else 0
            if cut - (cuts[-1] if cuts else 0) >= _MIN_PIECE and cut < len(tokens) - 1:
                cuts.append(cut)
        return tokens, cuts

    def _cut(self, head_msgs: list[dict[str, Any]], full: str, tokens: list[int]) -> int:
        try:
            head = self.head(messages=head_msgs)
        except Exception:  # noqa: BLE001 - a template may refuse a partial conversation
            return 0
        if not full.startswith(head.prompt):
            return 0
        return common_prefix(self._tokenize(head.prompt, head.added_special), tokens)

    def _tokenize(self, prompt: str, added_special: bool) -> list[int]:
        return list(self.llm.tokenize(prompt.encode("utf-8"), add_bos=not added_special, special=True))

    def _restore(self, tokens: list[int], cuts: list[int]) -> int:
        """Bring the context to the longest known opening piece; its length (0: none known)."""
        live = list(self.llm.input_ids[: self.llm.n_tokens])
        for cut in reversed(cuts):
            mine = tuple(c for c in cuts if c <= cut)
            if (len(live) >= cut and live[:cut] == tokens[:cut]
                    and tuple(c for c in self.live_cuts if c <= cut) == mine):
                self._truncate(cut)
                self.hits += cut
                return cut
            saved = self.states.get(tuple(tokens[:cut]))
            if saved is not None and saved[0] == mine:
                self.states.move_to_end(tuple(tokens[:cut]))
                self._load(saved[1], tokens[:cut])
                self.hits += cut
                return cut
        self.llm.reset()
        self._truncate(0)
        return 0

    def _truncate(self, n: int) -> None:
        self.llm._ctx.kv_cache_seq_rm(-1, n, -1)
        self.llm.n_tokens = n

    def _save(self, key: tuple[int, ...], cuts: tuple[int, ...]) -> None:
        if key in self.states and self.states[key][0] == cuts:
            self.states.move_to_end(key)
            return
        ctx = self.llm._ctx.ctx
        size = self.lib.llama_state_seq_get_size(ctx, 0)
        buf = (self.lib.ctypes.c_uint8 * size)()
        n = self.lib.llama_state_seq_get_data(ctx, buf, size, 0)
        self.states[key] = (cuts, bytes(buf[:n]))
        self.states.move_to_end(key)
        while sum(len(v[1]) for v in self.states.values()) > self.max_bytes and len(self.states) > 1:
            self.states.popitem(last=False)

    def _load(self, state: bytes, tokens: list[int]) -> None:
        self._truncate(0)
        buf = (self.lib.ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if self.lib.llama_state_seq_set_data(self.llm._ctx.ctx, buf, len(state), 0) != len(state):
            raise RuntimeError("llama.cpp could not restore a saved prompt prefix")
        self.llm.input_ids[: len(tokens)] = tokens
        self.llm.n_tokens = len(tokens)
