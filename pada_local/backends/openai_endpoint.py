"""Teacher (and judge) inference through any OpenAI-compatible server: Ollama, LM Studio,
llama.cpp's llama-server, llama-cpp-python's server, vLLM.

Structured output: a JSON-schema `response_format` where the server takes one, else JSON mode
carrying the schema (llama-cpp-python's server compiles it into a grammar), else plain JSON
mode; the first request that a mode serves fixes it for the generator. Every reply is validated
with pydantic exactly as the in-process backend does: an invalid reply is a failed Completion
with its raw text, never an exception. A prompt longer than the server's context is one item's
failure too. Connection errors, time-outs and server errors are retried a bounded number of
times with back-off, then stop the run with a PadaError naming the URL and what failed.
With `concurrency` > 1 several requests are in flight at once; an error halves that number
(one more after each run of successes), and replies reach the caller as they arrive.

The API key is read from the named environment variable when the client is built, handed to
the client and never kept anywhere else (not on this object, not in any config or log).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from ..errors import BackendUnavailable, ConfigError, ModelError
from .base import ChatRequest, Completion, OnItem, one_by_one, sampling_kwargs
from .llama_cpp import _validated

log = logging.getLogger(__name__)

# Ways to ask for structured output, most exact first.
MODES = ("json_schema", "json_object+schema", "json_object")


class OpenAIGenerator:
    supports_schema = True

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        temperature: float = 0.7,
        max_tokens: int = 256,
        seed: int = 0,
        timeout: float = 300.0,
        retries: int = 3,
        backoff: float = 1.0,
        concurrency: int = 1,
    ) -> None:
        try:
            import openai
        except ImportError:
            raise BackendUnavailable("a teacher behind a server needs the `openai` client library, part of "
                                     "pada-local's install", hint="pip install 'openai>=1.40'") from None

        self.base_url = base_url.rstrip("/")
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.retries = retries
        self.backoff = backoff
        self._mode: str | None = None  # fixed by the first structured request a mode serves
        self.concurrency = max(1, concurrency)
        self.window = Window(self.concurrency)
        for warning in url_warnings(self.base_url):
            log.warning(warning)
        # Retries are ours (bounded, then a clean stop naming the URL), not the client's.
        self.client = openai.OpenAI(base_url=self.base_url, api_key=_api_key(api_key_env),
                                    timeout=timeout, max_retries=0)

    # ------------------------------------------------------------------ Generator protocol

    def generate(self, requests: Sequence[ChatRequest], on_item: OnItem | None = None) -> list[Completion]:
        """Up to `concurrency` requests in flight (servers batch them), fewer after errors; each
        reply goes to `on_item` as it arrives, and the list comes back in request order."""
        if self.concurrency == 1 or len(requests) <= 1:
            return one_by_one(self.complete, requests, on_item)
        out: dict[int, Completion] = {}
        start = 0
        if self._mode is None and any(r.schema is not None for r in requests):
            # The first structured request finds the server's output mode; the rest then use it.
            first = next(i for i, r in enumerate(requests) if r.schema is not None)
            for i in range(first + 1):
                out[i] = self.complete(requests[i])
                if on_item is not None:
                    on_item(i, out[i])
            start = first + 1
        self._in_parallel(requests, range(start, len(requests)), out, on_item)
        return [out[i] for i in range(len(requests))]

    def _in_parallel(self, requests: Sequence[ChatRequest], todo: range, out: dict[int, Completion],
                     on_item: OnItem | None) -> None:
        from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

        pending = iter(todo)
        running: dict[Future[Completion], int] = {}
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="teacher")
        try:
            while True:
                while len(running) < self.window.limit:
                    i = next(pending, None)
                    if i is None:
                        break
                    running[pool.submit(self.complete, requests[i])] = i
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=running.__getitem__):
                    i = running.pop(future)
                    out[i] = future.result()  # a failure after the retries stops the stage here
                    self.window.success()
                    if on_item is not None:
                        on_item(i, out[i])
        finally:
            # Requests not yet sent are dropped; those in flight finish and are discarded.
            pool.shutdown(wait=True, cancel_futures=True)

    def complete(self, req: ChatRequest) -> Completion:
        import openai

        modes = [self._mode] if self._mode is not None else list(MODES)
        if req.schema is None:
            modes = [""]
        for n, mode in enumerate(modes):
            start = time.perf_counter()
            try:
                reply = self._call(self._kwargs(req, mode))
            except (openai.BadRequestError, openai.UnprocessableEntityError, _FormatRefused) as err:
                message = _message(err)
                if isinstance(err, openai.BadRequestError) and _is_context_error(err, message):
                    return Completion(text="", ok=False,
                                      error=f"prompt too long for the context of {self.model} at "
                                            f"{self.base_url} (server said: {message})")
                if mode and self._mode is None and n + 1 < len(modes):
                    continue  # this server does not take this form of structured output
                if mode and self._mode is None:
                    raise ModelError(f"{self.base_url}: model '{self.model}' accepts no form of structured "
                                     f"output (JSON schema or JSON mode): {message}",
                                     hint="use a server with JSON-schema or JSON-mode support") from None
                return Completion(text="", ok=False, error=f"the server rejected the request: {message}")
            seconds = time.perf_counter() - start
            if mode:
                self._mode = mode
            return self._completion(reply, req, seconds)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ capability probe

    def probe(self) -> str:
        """The server answers, serves the model, and honours one tiny schema request; raises a
        ModelError naming the URL and what failed. Returns the structured-output mode found."""
        import openai

        try:
            served = [m.id for m in self._with_retries(lambda: self.client.models.list().data)]
        except openai.NotFoundError:
            raise ModelError(f"{self.base_url}/models: not found",
                             hint="base_url must be the OpenAI API root, usually ending in /v1") from None
        except openai.AuthenticationError as err:
            raise self._auth_error(err) from None
        if not any(self.model in (m, m.removesuffix(":latest")) for m in served):
            raise ModelError(f"{self.base_url}: model '{self.model}' is not served there",
                             hint="it serves: " + (", ".join(served) or "nothing"))
        ask = 'Reply with the JSON object {"ok": true} and nothing else.'
        done = self.complete(ChatRequest(messages=({"role": "user", "content": ask},), schema=_Probe,
                                         max_tokens=32, temperature=0.0))
        if not done.ok:
            raise ModelError(f"{self.base_url}: model '{self.model}' failed a structured-output request: "
                             f"{done.error}", hint=f"raw reply: {done.text[:200]!r}")
        assert self._mode is not None
        return self._mode

    # ------------------------------------------------------------------ helpers

    def _kwargs(self, req: ChatRequest, mode: str) -> dict[str, Any]:
        kwargs = {"model": self.model, **sampling_kwargs(req, self.temperature, self.max_tokens, self.seed)}
        if req.schema is not None:
            schema = req.schema.model_json_schema()
            kwargs["response_format"] = {
                "json_schema": {"type": "json_schema",
                                "json_schema": {"name": req.schema.__name__, "schema": schema}},
                "json_object+schema": {"type": "json_object", "schema": schema},
                "json_object": {"type": "json_object"},
            }[mode]
        return kwargs

    def _call(self, kwargs: dict[str, Any]) -> Any:
        import openai

        try:
            return self._with_retries(lambda: self.client.chat.completions.create(**kwargs))
        except openai.AuthenticationError as err:
            raise self._auth_error(err) from None
        except openai.NotFoundError as err:
            raise ModelError(f"{self.base_url}: model '{self.model}' or its chat endpoint was not found "
                             f"({_message(err)})", hint="check base_url and model") from None

    def _with_retries(self, call: Any) -> Any:
        import openai

        transient = (openai.APIConnectionError, openai.RateLimitError)
        for attempt in range(self.retries + 1):
            try:
                return call()
            except openai.InternalServerError as err:
                # llama-cpp-python's server answers 500 to a response_format it does not take.
                if "response_format" in _message(err):
                    raise _FormatRefused(_message(err)) from None
                if attempt == self.retries:
                    raise ModelError(f"{self.base_url}: the teacher server failed {self.retries + 1} times: "
                                     f"{_message(err)}", hint=_RESUME) from None
                self._wait(err, attempt)
            except transient as err:
                if attempt == self.retries:
                    what = "timed out" if isinstance(err, openai.APITimeoutError) else _message(err)
                    raise ModelError(
                        f"{self.base_url}: the teacher server failed {self.retries + 1} times: {what}",
                        hint=_RESUME) from None
                self._wait(err, attempt)
        raise AssertionError("unreachable")

    def _wait(self, err: Exception, attempt: int) -> None:
        wait = self.backoff * 2 ** attempt
        limit = self.window.shrink()
        log.warning("%s: %s; retrying in %.1fs (%d requests at once from now)", self.base_url,
                    type(err).__name__, wait, limit)
        time.sleep(wait)

    def _auth_error(self, err: Exception) -> ModelError:
        return ModelError(f"{self.base_url}: the server refused the API key ({_message(err)})",
                          hint="set the environment variable named in api_key_env")

    def _completion(self, reply: Any, req: ChatRequest, seconds: float) -> Completion:
        choice = reply.choices[0]
        usage = reply.usage
        done = Completion(
            text=choice.message.content or "",
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            seconds=seconds,
            finish_reason=choice.finish_reason,
        )
        return done if req.schema is None else _validated(done, req)


class Window:
    """How many requests may be in flight: halved on each error or time-out, one more after a
    run of successes as long as the window (additive increase, multiplicative decrease)."""

    def __init__(self, most: int) -> None:
        self.most, self.limit, self.lowest, self._streak = most, most, most, 0
        self._lock = threading.Lock()

    def shrink(self) -> int:
        with self._lock:
            self.limit, self._streak = max(1, self.limit // 2), 0
            self.lowest = min(self.lowest, self.limit)
            return self.limit

    def success(self) -> None:
        with self._lock:
            self._streak += 1
            if self.limit < self.most and self._streak >= self.limit:
                self.limit, self._streak = self.limit + 1, 0


_RESUME = "is the server running and reachable? finished work is kept: `pada run --resume RUN_ID` continues"


class _FormatRefused(Exception):
    """A server error that only says the response_format was not understood."""


class _Probe(BaseModel):
    ok: bool


def _api_key(env: str | None) -> str:
    """The key from the named variable only: never OPENAI_API_KEY unasked, never from a file."""
    if env is None:
        return "none"  # local servers want no key; the client insists on some string
    value = os.environ.get(env)
    if not value:
        raise ConfigError(f"api_key_env: the environment variable {env} is not set",
                          hint=f"export {env}=... before the run")
    return value


def url_warnings(base_url: str) -> list[str]:
    """Plain http to a host other than this machine sends prompts (and any key) in clear text."""
    parts = urlsplit(base_url)
    if parts.scheme != "http" or _loopback(parts.hostname or ""):
        return []
    return [f"{base_url}: plain http to another machine: prompts and the API key travel unencrypted "
            "(use https, or an SSH tunnel to 127.0.0.1)"]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _message(err: Exception) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return str(getattr(err, "message", None) or err)


def _is_context_error(err: Exception, message: str) -> bool:
    code = getattr(err, "code", None)
    return code == "context_length_exceeded" or "context" in message.lower()
