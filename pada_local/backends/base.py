"""Small interfaces the stages program against; concrete backends load lazily by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion. `schema` (a pydantic model) constrains and validates the reply."""

    messages: tuple[dict[str, str], ...]
    schema: type[BaseModel] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Completion:
    """A reply. With a schema, `data` is the validated object, or `ok` is False and `error`
    says why; the raw text is always kept so a rejected row can be shown later."""

    text: str
    data: BaseModel | None = None
    ok: bool = True
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    finish_reason: str | None = None


OnItem = Callable[[int, Completion], None]


class Generator(Protocol):
    """Teacher or student inference."""

    supports_schema: bool

    # One Completion per request, in order: callers zip the two (strict).
    def generate(self, requests: Sequence[ChatRequest],
                 on_item: OnItem | None = None) -> list[Completion]: ...


class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> Any:  # numpy array (n, d), L2-normalised
        ...


@dataclass(frozen=True)
class TrainExample:
    """A training pair in chat form; loss is taken on `answer` only. `id` names it in warnings
    (a data item's id, or "synthetic-N")."""

    prompt_messages: tuple[dict[str, str], ...]
    answer: str
    id: str = ""


@dataclass(frozen=True)
class TrainSpec:
    base_dir: Path
    examples: tuple[TrainExample, ...]
    out_dir: Path
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    epochs: float = 2.0
    max_steps: int | None = None
    lr: float = 2e-4
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 256
    seed: int = 0
    precision: str = "auto"  # TrainConfig.precision


@dataclass(frozen=True)
class StepInfo:
    step: int
    total_steps: int
    loss: float | None
    lr: float | None
    epoch: float | None
    tokens_per_s: float | None
    seconds: float


@dataclass(frozen=True)
class Adapter:
    path: Path
    steps: int
    seconds: float
    tokens: int  # the examples' own tokens, padding not counted
    history: tuple[StepInfo, ...] = field(default_factory=tuple)
    # Examples left out because prompt + answer exceed max_length (see lengths.fit_spec).
    dropped_ids: tuple[str, ...] = ()
    # Tokens the model processed, padding included (0: the backend does not count them).
    padded_tokens: int = 0

    @property
    def dropped(self) -> int:
        return len(self.dropped_ids)


class Trainer(Protocol):
    name: str

    def train(
        self,
        spec: TrainSpec,
        on_step: Callable[[StepInfo], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Adapter: ...


def one_by_one(complete: Callable[[ChatRequest], Completion], requests: Sequence[ChatRequest],
               on_item: OnItem | None = None) -> list[Completion]:
    """Generator.generate for backends that answer one request at a time, in order."""
    out = []
    for i, req in enumerate(requests):
        done = complete(req)
        out.append(done)
        if on_item is not None:
            on_item(i, done)
    return out


def sampling_kwargs(req: ChatRequest, temperature: float, max_tokens: int, seed: int) -> dict[str, Any]:
    """Chat-completion arguments: the request's own values, else the backend's defaults.
    `is None` checks, because temperature 0 and seed 0 are real values."""
    return {"messages": list(req.messages),
            "temperature": temperature if req.temperature is None else req.temperature,
            "max_tokens": max_tokens if req.max_tokens is None else req.max_tokens,
            "seed": seed if req.seed is None else req.seed}


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two token lists share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
