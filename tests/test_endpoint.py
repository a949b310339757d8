"""The teacher behind an OpenAI-compatible server (issue 15), against a real one: llama-cpp-python's
own server with the embedded teacher GGUF, started on a free 127.0.0.1 port and stopped after.
The server demands an API key, so every passing request proves the key was read from the
environment and sent; no test finds the key's value in a saved config, the store or the run
folder."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from pada_local import loop
from pada_local.backends.base import ChatRequest
from pada_local.backends.openai_endpoint import OpenAIGenerator, url_warnings
from pada_local.config import dump, load
from pada_local.errors import ConfigError, ModelError, PadaError

from .conftest import tiny_task

KEY_ENV = "PADA_TEST_ENDPOINT_KEY"
KEY = "sk-pada-test-4f1c9e27b0d3"
MODEL = "smollm2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(base_url: str) -> bool:
    request = urllib.request.Request(f"{base_url}/models", headers={"Authorization": f"Bearer {KEY}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(teacher_gguf: Path, tmp_path_factory):
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(teacher_gguf), "--model_alias", MODEL,
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--n_threads", "2",
         "--api_key", KEY],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not _ready(base_url):
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}; see {log.name}")
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer in 180 s; see {log.name}")
            time.sleep(0.5)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


class Answer(BaseModel):
    answer: str


class Essay(BaseModel):
    title: str
    body: str = Field(min_length=400)


def _gen(base_url: str, **kwargs) -> OpenAIGenerator:
    return OpenAIGenerator(base_url, kwargs.pop("model", MODEL), api_key_env=KEY_ENV,
                           **{"max_tokens": 48, "seed": 0, **kwargs})


def test_schema_request_returns_a_validated_reply_with_usage(server, key):
    gen = _gen(server)
    ask = ChatRequest(messages=({"role": "user", "content": "What is 2+2? Answer in JSON."},), schema=Answer)
    done = gen.generate([ask])
    assert len(done) == 1 and done[0].ok, done[0].error
    assert isinstance(done[0].data, Answer)
    assert json.loads(done[0].text, strict=False)["answer"] == done[0].data.answer
    assert done[0].prompt_tokens > 0 and done[0].completion_tokens > 0 and done[0].seconds > 0
    # llama-cpp-python's server refuses a json_schema response_format (a 500): JSON mode with the schema.
    assert gen._mode == "json_object+schema"
    gen.close()


def test_invalid_reply_and_too_long_prompt_are_failed_completions(server, key):
    gen = _gen(server, max_tokens=8)
    short = ChatRequest(messages=({"role": "user", "content": "Write an essay as JSON."},), schema=Essay)
    huge = ChatRequest(messages=({"role": "user", "content": "word " * 3000},), schema=Answer)
    cut, too_long = gen.generate([short, huge])
    assert not cut.ok and cut.text and cut.data is None and cut.error.startswith("invalid reply")
    assert not too_long.ok and "prompt too long" in too_long.error and server in too_long.error
    gen.close()


def test_probe_passes_and_names_the_url_when_it_fails(server, key, monkeypatch):
    assert _gen(server).probe() == "json_object+schema"
    with pytest.raises(ModelError, match="not served there") as err:
        _gen(server, model="no-such-model").probe()
    assert server in str(err.value) and MODEL in str(err.value)  # the hint lists what it serves
    monkeypatch.setenv(KEY_ENV, "wrong-key")
    with pytest.raises(ModelError, match="refused the API key") as err:
        _gen(server).probe()
    assert server in str(err.value)
    dead = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(ModelError, match="failed 2 times") as err:
        _gen(dead, retries=1, backoff=0.01, timeout=5).probe()
    assert dead in str(err.value)
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match=KEY_ENV):
        _gen(server)


def test_http_to_another_machine_warns():
    assert url_warnings("http://127.0.0.1:8080/v1") == url_warnings("http://localhost:1/v1") == []
    assert url_warnings("https://gpu-box.lan/v1") == []
    assert "unencrypted" in url_warnings("http://192.168.1.20:8000/v1")[0]


def _endpoint_config(folder: Path, base_url: str, *extra: str):
    return load(tiny_task(folder), [f"store={folder / 'runs.db'}", f"workdir={folder / 'work'}",
                                    f"models.teacher_endpoint.base_url={base_url}",
                                    f"models.teacher_endpoint.model={MODEL}",
                                    f"models.teacher_endpoint.api_key_env={KEY_ENV}", *extra])


def test_the_key_is_never_in_the_saved_config(tmp_path, server, key):
    cfg = _endpoint_config(tmp_path, server)
    saved = json.dumps(dump(cfg))
    assert KEY not in saved and KEY_ENV in saved
    assert cfg.models.teacher == f"openai:{server}#{MODEL}"  # what run history shows


def test_preflight_probes_the_server_not_a_gguf(tmp_path, server, key):
    with pytest.raises(PadaError, match="not served there") as err:
        loop.preflight(_endpoint_config(tmp_path, server, "models.teacher_endpoint.model=nope"))
    assert server in str(err.value)


@pytest.mark.slow
def test_a_tiny_run_with_the_teacher_behind_the_server(tmp_path, server, key):
    from pada_local.store import RunStore

    cfg = _endpoint_config(tmp_path, server, "loop.budget=4", "loop.analysis_cap=2")
    run_id = loop.start(cfg)
    with RunStore(cfg.store) as store:
        run = store.run(run_id)
        assert run["status"] == "finished" and run["teacher"] == f"openai:{server}#{MODEL}"
        assert store.count("candidates", run_id) > 0
        assert {(1, "generate"), (1, "quality")} <= {(s["round"], s["stage"]) for s in store.stages(run_id)}
    found = [p for p in tmp_path.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert found == []
