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
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from pada_local.backends.base import ChatRequest
from pada_local.backends.openai_endpoint import OpenAIGenerator, url_warnings
from pada_local.config import dump, load
from pada_local.errors import ConfigError, ModelError, PadaError
from pada_local.run import loop
from pada_local.run.preflight import preflight

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


def _start_server(gguf: Path, port: int, log_path: Path) -> subprocess.Popen:
    base_url = f"http://127.0.0.1:{port}/v1"
    log = log_path.open("a")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", MODEL,
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--n_threads", "2",
         "--api_key", KEY],
        stdout=log, stderr=subprocess.STDOUT)
    log.close()  # the child holds its own handle
    deadline = time.monotonic() + 180
    while not _ready(base_url):
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {proc.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            _stop(proc)
            pytest.fail(f"llama_cpp.server did not answer in 180 s; see {log_path}")
        time.sleep(0.5)
    return proc


def _stop(proc: subprocess.Popen, kill: bool = False) -> None:
    if kill:
        proc.kill()
    else:
        proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def server(teacher_gguf: Path, tmp_path_factory):
    port = _free_port()
    proc = _start_server(teacher_gguf, port, tmp_path_factory.mktemp("server") / "server.log")
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        _stop(proc)


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


def test_the_endpoint_client_comes_with_every_install():
    """`openai` is a requirement of the package itself, not of an extra: an install without
    [dev] can use `models.teacher: openai:...`. The installed metadata says so, and the teacher
    is built by name (no server needed to build it)."""
    import importlib.metadata

    from pada_local.backends import get_generator

    required = [r for r in importlib.metadata.requires("pada-local") or [] if "extra ==" not in r]
    assert any(r.replace(" ", "").startswith("openai>=") for r in required), required
    gen = get_generator("openai", "http://127.0.0.1:9/v1", "qwen")
    assert gen.supports_schema and gen.base_url == "http://127.0.0.1:9/v1"


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
        preflight(_endpoint_config(tmp_path, server, "models.teacher_endpoint.model=nope"))
    assert server in str(err.value)


@pytest.mark.slow
def test_a_tiny_run_with_the_teacher_behind_the_server(tmp_path, server, key):
    from pada_local.ledger.runs import Ledger
    from pada_local.ledger.store import RunStore

    cfg = _endpoint_config(tmp_path, server, "loop.budget=4", "loop.analysis_cap=2")
    run_id = loop.start(cfg)
    with RunStore(cfg.store) as store:
        run = Ledger(store).run(run_id)
        assert run["status"] == "finished" and run["teacher"] == f"openai:{server}#{MODEL}"
        assert store.count("candidates", run_id) > 0
        assert {(1, "generate"), (1, "quality")} <= {(s["round"], s["stage"]) for s in store.rows("stages", run_id)}
    found = [p for p in tmp_path.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert found == []


# ---------------------------------------------------------------- concurrency


def test_several_requests_in_flight_come_back_in_order(server, key):
    """At concurrency 3 every reply reaches on_item once, as it arrives, and the list keeps the
    requests' order (each request names its own number, so a mix-up would show)."""
    gen = _gen(server, concurrency=3, temperature=0.0)
    asks = [ChatRequest(messages=({"role": "user", "content": f"Reply with JSON: the answer is '{n}'."},),
                        schema=Answer, max_tokens=24) for n in ("alpha", "bravo", "charlie", "delta", "echo")]
    seen: list[int] = []
    done = gen.generate(asks, on_item=lambda i, c: seen.append(i))
    assert sorted(seen) == list(range(5)) and all(c.ok for c in done)
    alone = [_gen(server, temperature=0.0).generate([a])[0].data.answer for a in asks]
    assert [c.data.answer for c in done] == alone  # same replies as one by one, in request order
    gen.close()


class _Flaky(BaseHTTPRequestHandler):
    """A real HTTP server that answers 503 to the first `fail` chat requests, then a valid reply;
    it records the most requests it ever had in flight at once."""

    fail = 0
    seen = 0
    in_flight = 0
    most = 0
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (the http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        with cls.lock:
            cls.seen += 1
            failing = cls.seen <= cls.fail
            cls.in_flight += 1
            cls.most = max(cls.most, cls.in_flight)
        try:
            time.sleep(0.05)  # long enough for several requests to overlap
            if failing:
                self._send(503, {"error": {"message": "overloaded"}})
                return
            content = json.dumps({"answer": body["messages"][-1]["content"][-1]})
            self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": MODEL,
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": content}}],
                             "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})
        finally:
            with cls.lock:
                cls.in_flight -= 1

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky():
    _Flaky.fail, _Flaky.seen, _Flaky.in_flight, _Flaky.most = 0, 0, 0, 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def _numbered(n: int) -> list[ChatRequest]:
    return [ChatRequest(messages=({"role": "user", "content": f"item {i % 10}"},), schema=Answer)
            for i in range(n)]


def test_errors_shrink_the_window_and_retries_recover(flaky):
    _Flaky.fail = 3
    gen = OpenAIGenerator(flaky, MODEL, concurrency=4, retries=3, backoff=0.01)
    gen._mode = "json_object+schema"  # what the probe would have found; the stub takes any form
    done = gen.generate(_numbered(12))
    assert [c.data.answer for c in done] == [str(i % 10) for i in range(12)]
    assert _Flaky.most > 1  # requests did overlap
    assert gen.window.lowest < 4  # errors halved the window (successes may have grown it back)
    assert _Flaky.seen == 12 + 3  # every failed request was retried once, nothing more


def test_a_server_that_keeps_failing_stops_the_stage_naming_the_url(flaky):
    _Flaky.fail = 10_000
    gen = OpenAIGenerator(flaky, MODEL, concurrency=4, retries=2, backoff=0.01)
    gen._mode = "json_object+schema"
    arrived: list[int] = []
    with pytest.raises(ModelError, match="failed 3 times") as err:
        gen.generate(_numbered(40), on_item=lambda i, c: arrived.append(i))
    assert flaky in str(err.value) and arrived == []
    assert _Flaky.seen < 40 * 3  # the requests not yet sent were dropped, not tried


def test_the_window_halves_on_errors_and_grows_back():
    from pada_local.backends.openai_endpoint import Window

    w = Window(8)
    assert w.shrink() == 4 and w.shrink() == 2 and w.shrink() == 1 and w.shrink() == 1
    assert w.lowest == 1
    w.success()
    assert w.limit == 2
    for _ in range(2):
        w.success()
    assert w.limit == 3
    for _ in range(100):
        w.success()
    assert w.limit == 8


def test_doctor_probes_the_configured_server(tmp_path, server, key, capsys):
    import yaml

    from pada_local.cli import main

    path = tiny_task(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["models"] = {"teacher_endpoint": {"base_url": server, "model": MODEL, "api_key_env": KEY_ENV}}
    path.write_text(yaml.safe_dump(raw))
    assert main(["doctor", "--json", "--config", str(path)]) == 0
    teacher = {c["check"]: c for c in json.loads(capsys.readouterr().out)["checks"]}["config: teacher"]
    assert teacher["status"] == "ok"
    assert server in teacher["detail"] and "json_object+schema" in teacher["detail"]
    raw["models"]["teacher_endpoint"]["model"] = "nope"
    path.write_text(yaml.safe_dump(raw))
    assert main(["doctor", "--json", "--config", str(path)]) == 1
    teacher = {c["check"]: c for c in json.loads(capsys.readouterr().out)["checks"]}["config: teacher"]
    assert teacher["status"] == "missing" and "not served there" in teacher["detail"]


@pytest.mark.slow
def test_server_killed_mid_generation_then_resume(tmp_path, teacher_gguf, key, server):
    """The server dies while samples are being generated: the run stops with an error naming the
    URL; after a restart `pada run --resume` finishes, the samples stored before the kill are
    unchanged (not requested again), and the job keys equal an uninterrupted run's."""
    import sqlite3

    from pada_local.ledger.runs import Ledger
    from pada_local.ledger.store import RunStore

    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    log = tmp_path / "server.log"
    extra = ["loop.budget=8", "loop.analysis_cap=2", "teacher.concurrency=2",
             "models.teacher_endpoint.retries=1"]
    cfg = _endpoint_config(tmp_path, url, *extra)
    sets = [a for kv in [f"store={cfg.store}", f"workdir={cfg.workdir}",
                         f"models.teacher_endpoint.base_url={url}", f"models.teacher_endpoint.model={MODEL}",
                         f"models.teacher_endpoint.api_key_env={KEY_ENV}", *extra] for a in ("--set", kv)]
    proc = _start_server(teacher_gguf, port, log)
    errors = (tmp_path / "run.err").open("w")
    cmd = [sys.executable, "-m", "pada_local.cli", "run", str(tmp_path / "tiny.yaml"), *sets]
    run = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errors)
    try:
        deadline = time.monotonic() + 900
        while True:
            assert run.poll() is None, "the run ended before the server was killed"
            assert time.monotonic() < deadline, "no candidates appeared in time"
            try:
                with sqlite3.connect(cfg.store, timeout=5) as con:
                    if con.execute("SELECT count(*) FROM candidates").fetchone()[0] >= 2:
                        break
            except sqlite3.OperationalError:
                pass  # no store or no table yet
            time.sleep(0.2)
        _stop(proc, kill=True)
        run.wait(timeout=300)
        errors.close()
        err = (tmp_path / "run.err").read_text()
        assert run.returncode != 0 and url in err, err[-2000:]
        with RunStore(cfg.store) as store:
            run_id = Ledger(store).runs()[0]["id"]
            before = {c["key"]: c for c in store.rows("candidates", run_id, 1)}
            assert 0 < len(before) < 8 and not Ledger(store).for_run(run_id).stage_done(1, "generate")
        proc = _start_server(teacher_gguf, port, log)
        out = subprocess.run([sys.executable, "-m", "pada_local.cli", "run", "--resume", run_id, "--store",
                              str(cfg.store)], capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-2000:]
    finally:
        if run.poll() is None:
            run.kill()
        _stop(proc)
    (tmp_path / "ref").mkdir()
    reference = loop.start(_endpoint_config(tmp_path / "ref", server, *extra[:-1]))
    with RunStore(cfg.store) as store:
        after = {c["key"]: c for c in store.rows("candidates", run_id, 1)}
        assert Ledger(store).run(run_id)["status"] == "finished"
    for key_, row in before.items():  # the same rows: same id, same text, same time of writing
        assert {k: after[key_][k] for k in ("id", "input", "raw", "created_at")} == \
            {k: row[k] for k in ("id", "input", "raw", "created_at")}
    with RunStore(tmp_path / "ref" / "runs.db") as ref:
        ref_keys = {c["key"].split("/", 1)[1] for c in ref.rows("candidates", reference, 1)}
    assert {k.split("/", 1)[1] for k in after} == ref_keys and len(after) == 8
