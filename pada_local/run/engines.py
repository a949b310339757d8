"""The engines a run uses: teacher, judge, student, embedder and trainer, built by name and
loaded on first use (round 0 never loads the teacher); and the token/time tallies per stage."""

from __future__ import annotations

import platform
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..backends.base import ChatRequest, Completion, Embedder, Generator, OnItem
from ..config import Config, EndpointConfig, TeacherConfig
from ..errors import ConfigError
from ..events import Event, Reporter
from ..records import EvalRow


class Engines:
    """Models load on first use and stay loaded for the run; close() frees the teachers."""

    def __init__(self, cfg: Config, trainer_name: str, report: Reporter) -> None:
        self.cfg, self.trainer_name, self.report = cfg, trainer_name, report
        self._teacher: Generator | None = None
        self._judge: Generator | None = None
        self._embedder: Embedder | None = None

    def _log(self, message: str) -> None:
        self.report(Event("log", "models", message=message))

    def student_dir(self) -> Path:
        from ..models import prepare_student, resolve_student

        return prepare_student(resolve_student(self.cfg.models.student), log=self._log)

    def student(self, adapter: Path | None) -> Generator:
        from ..backends import get_generator

        gen: Generator = get_generator("hf", self.student_dir(), adapter=adapter,
                                       max_new_tokens=self.cfg.task.max_new_tokens)
        return gen

    def teacher(self) -> Generator:
        if self._teacher is None:
            self._teacher = self._teacher_model(self.cfg.models.teacher, "teacher")
        return self._teacher

    def judge(self) -> Generator:
        if self.cfg.models.judge is None:
            return self.teacher()
        if self._judge is None:
            self._judge = self._teacher_model(self.cfg.models.judge, "judge")
        return self._judge

    def _teacher_model(self, name: str, role: str) -> Generator:
        from ..backends import get_generator
        from ..models import resolve_teacher

        t = self.cfg.teacher
        endpoint = self.cfg.models.judge_endpoint if role == "judge" else self.cfg.models.teacher_endpoint
        if endpoint is not None:  # a model behind an OpenAI-compatible server
            self._log(f"teacher {endpoint.model} at {endpoint.base_url}")
            return served(endpoint, t)
        self._log(f"loading teacher {name}")
        gen: Generator = get_generator("llama_cpp", resolve_teacher(name, role), n_ctx=t.n_ctx,
                                       n_threads=t.n_threads, n_gpu_layers=t.n_gpu_layers,
                                       temperature=t.temperature, max_tokens=t.max_tokens,
                                       seed=0 if t.seed is None else t.seed, parallel=t.parallel,
                                       log=self._log)
        if not gen.supports_schema:  # every teacher reply is a JSON object under a schema
            raise ConfigError(f"teacher {name}: its backend cannot constrain replies to a JSON schema")
        return gen

    def embedder(self) -> Embedder:
        if self._embedder is None:
            from ..backends.embed import SentenceEmbedder
            from ..models import resolve_embedder

            self._embedder = SentenceEmbedder(resolve_embedder(self.cfg.models.embedder))
        return self._embedder

    def trainer(self) -> Any:
        from ..backends import get_trainer

        return get_trainer(self.trainer_name)

    def close(self) -> None:
        for gen in (self._teacher, self._judge):
            close = getattr(gen, "close", None)
            if close is not None:
                close()


def served(endpoint: EndpointConfig, t: TeacherConfig | None = None) -> Generator:
    """A teacher or judge behind an OpenAI-compatible server. Without teacher settings: the
    client a pre-run probe uses (one quick retry, no sampling settings)."""
    from ..backends import get_generator

    common: dict[str, Any] = {"api_key_env": endpoint.api_key_env, "timeout": endpoint.timeout}
    if t is None:
        probe: Generator = get_generator("openai", endpoint.base_url, endpoint.model, **common,
                                         retries=min(endpoint.retries, 1), backoff=0.5)
        return probe
    gen: Generator = get_generator("openai", endpoint.base_url, endpoint.model, **common,
                                   temperature=t.temperature, max_tokens=t.max_tokens,
                                   seed=0 if t.seed is None else t.seed, retries=endpoint.retries,
                                   concurrency=t.concurrency)
    return gen


class Tally:
    """Seconds and teacher tokens spent by one stage."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def add(self, completions: Iterable[Completion | None]) -> None:
        for c in completions:
            if c is not None:
                self.prompt_tokens += c.prompt_tokens
                self.completion_tokens += c.completion_tokens

    def add_eval(self, rows: Iterable[EvalRow]) -> None:
        """The student's tokens in an evaluation stage."""
        for r in rows:
            self.prompt_tokens += r.prompt_tokens
            self.completion_tokens += r.completion_tokens

    def stats(self, items: int, **detail: Any) -> dict[str, Any]:
        return {"seconds": round(time.perf_counter() - self.t0, 3), "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "items": items, "detail": detail or None}


class Counted:
    """A Generator that adds every reply's tokens to a stage's tally."""

    def __init__(self, inner: Generator, tally: Tally) -> None:
        self.inner, self.tally = inner, tally
        self.supports_schema = inner.supports_schema
        self.concurrency = int(getattr(inner, "concurrency", 1))  # quality control batches when > 1
        self.batch_chunk = int(getattr(inner, "batch_chunk", 0) or 0)  # generation's unit of replay

    def generate(self, requests: Sequence[ChatRequest], on_item: OnItem | None = None) -> list[Completion]:
        out = self.inner.generate(requests, on_item=on_item)
        self.tally.add(out)
        return out


def versions() -> dict[str, str]:
    """Versions of what shapes a run's numbers, saved with the run."""
    import importlib.metadata as md

    out = {"pada-local": __version__, "python": platform.python_version()}
    for dist in ("torch", "transformers", "peft", "trl", "llama-cpp-python", "sentence-transformers"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out
