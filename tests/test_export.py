"""Export of a tiny real run's student to every format, each verified for real: the adapter and
the merged folder load in transformers, every GGUF (f16, q8_0, q4_k_m, a GGUF LoRA) loads and
answers in llama-cpp-python from the export folder alone. Failure cases leave nothing under
the final name: a missing converter without consent, an unsupported architecture, a full
disk, an export interrupted by Ctrl-C, and a failed verification.

The converter comes from the llama-cpp-python sdist on PyPI: fetched into the cache once if
`make setup` (`python -m pada_local.export.converter --fetch`) has not already done so."""

from __future__ import annotations

import ctypes
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest

from pada_local import export
from pada_local.cli import main
from pada_local.config import load
from pada_local.errors import PadaError
from pada_local.export import converter, placement
from pada_local.files import sha256_file
from pada_local.ledger.store import RunStore
from pada_local.printing import export_result as print_result
from pada_local.run import loop

from .conftest import tiny_task as _tiny_task

pytestmark = pytest.mark.slow

FILE_TYPES = {"f16": "1", "q8_0": "7", "q4_0": "2", "q4_k_m": "15"}  # llama.cpp's general.file_type


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, str]:
    """A real run, round 0 only (zero-shot, LoRA training, evaluation): enough to export."""
    folder = tmp_path_factory.mktemp("export-run")
    cfg = load(_tiny_task(folder), [f"store={folder / 'runs.db'}", f"workdir={folder / 'work'}", "loop.rounds=0"])
    return cfg.store, loop.start(cfg)


@pytest.fixture(scope="module")
def converter_ready() -> converter.Converter:
    # Fetches llama-cpp-python's sdist from PyPI once when the cache lacks it (CI set-up).
    return converter.ensure(allow_fetch=True, log=lambda m: print(m, file=sys.stderr))


def _show(result: export.ExportResult, record_property) -> None:
    """The verification numbers, printed (pytest -s) and kept in the test report."""
    v = result.verification
    assert v is not None
    for c in v.checks:
        line = (f"{result.format} {result.quant or ''} {c.target}: exported {c.score:.3f} vs in-memory "
                f"{v.reference_score:.3f} on {v.n_items} items, agreement {c.agreement:.3f}, "
                f"stops {c.stops}, template {c.template_ok}, {c.seconds:.1f}s")
        print(line)
        record_property(c.target, line)


def _assert_recorded(store_path: Path, result: export.ExportResult) -> None:
    with RunStore(store_path) as store:
        rows = {Path(a["path"]): a for a in store.rows("artifacts", result.run_id) if a["kind"].startswith("export_")}
    for f in result.files:
        assert f.path.is_file() and rows[f.path]["sha256"] == f.sha256 == sha256_file(f.path)
        assert rows[f.path]["bytes"] == f.path.stat().st_size


def _assert_clean(out: Path) -> None:
    """Nothing under the final name and no temporary folder left next to it."""
    assert not out.exists()
    leftovers = list(out.parent.glob(f".{out.name}.*")) if out.parent.exists() else []
    assert not leftovers


# ---------------------------------------------------------------- every format, verified


def test_adapter_export(tiny_run, tmp_path, record_property):
    store, run_id = tiny_run
    result = export.export_run(store, run_id, fmt="adapter", out=tmp_path / "adapter")
    _show(result, record_property)
    assert result.ok and result.out_dir == tmp_path / "adapter"
    names = {f.path.name for f in result.files}
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md", "Modelfile", "export.json"} <= names
    assert result.verification.checks[0].agreement == 1.0  # the very weights the run trained
    _assert_recorded(store, result)


def test_merged_export(tiny_run, tmp_path, record_property):
    store, run_id = tiny_run
    result = export.export_run(store, run_id, fmt="merged", out=tmp_path / "merged")
    _show(result, record_property)
    assert result.ok
    config = json.loads((result.out_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "bfloat16"
    assert (result.out_dir / "chat_template.jinja").is_file() and (result.out_dir / "model.safetensors").is_file()
    card = (result.out_dir / "README.md").read_text()
    assert "apache-2.0" in card and "SmolLM2-135M-Instruct" in card and run_id in card
    _assert_recorded(store, result)


@pytest.mark.parametrize("quant, lora", [("f16", False), ("q8_0", False), ("q4_k_m", True)])
def test_gguf_export_loads_and_answers_from_its_folder(tiny_run, converter_ready, tmp_path, quant, lora,
                                                       record_property):
    store, run_id = tiny_run
    result = export.export_run(store, run_id, fmt="gguf", quant=quant, lora_gguf=lora, out=tmp_path / "out")
    _show(result, record_property)
    assert result.ok, result.verification
    assert len(result.verification.checks) == 1 + lora
    gguf = result.out_dir / f"smollm2-135m-tiny-skills-{quant}.gguf"
    # Only the export folder: copy it elsewhere and run the GGUF from there.
    alone = shutil.copytree(result.out_dir, tmp_path / "elsewhere")
    answer, finish, meta = _ask(alone / gguf.name, "What is 2 plus 2?")
    print(f"{quant}: {answer!r} ({finish})")
    assert answer and finish == "stop"
    assert meta["general.file_type"] == FILE_TYPES[quant] and "<|im_end|>" in meta["tokenizer.chat_template"]
    modelfile = (alone / "Modelfile").read_text()
    assert f"FROM ./{gguf.name}" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    _assert_recorded(store, result)


def _ask(gguf: Path, question: str) -> tuple[str, str, dict]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=512, verbose=False)
    try:
        reply = llm.create_chat_completion(messages=[{"role": "user", "content": question}], temperature=0.0,
                                           max_tokens=64)
        return reply["choices"][0]["message"]["content"], reply["choices"][0]["finish_reason"], dict(llm.metadata)
    finally:
        llm.close()


def test_ollama_template_renders_the_training_prompt(student_dir):
    from pada_local.backends.hf import load_tokenizer, render_prompt

    tok = load_tokenizer(student_dir)
    for system in ("Answer briefly.", None):
        template = export.ollama_template(tok, system)
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": "Hi?"}]
        rendered = template.replace("{{ .System }}", system or "").replace("{{ .Prompt }}", "Hi?")
        assert rendered.split("{{ .Response }}")[0] == render_prompt(tok, msgs)
        assert template.endswith("{{ .Response }}<|im_end|>\n")
    assert export.stop_tokens(tok) == ["<|im_end|>"]


# ---------------------------------------------------------------- clean failures


def test_missing_converter_without_consent(tiny_run, tmp_path, monkeypatch, capsys):
    store, run_id = tiny_run
    monkeypatch.setenv("PADA_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("PADA_CONVERTER_DIR", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # nobody at a terminal to say yes
    out = tmp_path / "exports" / "gguf"
    code = main(["export", run_id, "--format", "gguf", "--store", str(store), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "converter is not in the cache" in err and "--yes" in err
    _assert_clean(out)
    assert not out.parent.exists()


def test_unsupported_architecture(tiny_run, converter_ready, tmp_path):
    store, run_id = tiny_run
    student = tmp_path / "opt-student"
    student.mkdir()
    (student / "config.json").write_text(json.dumps({"architectures": ["OPTForCausalLM"], "model_type": "opt"}))
    (student / "model.safetensors").write_bytes(b"")
    copy = _store_copy(store, tmp_path / "runs.db", run_id, student)
    out = tmp_path / "gguf"
    with pytest.raises(PadaError, match="does not support the architecture OPTForCausalLM") as exc:
        export.export_run(copy, run_id, fmt="gguf", out=out)
    assert "--format merged" in exc.value.hint
    _assert_clean(out)


def _store_copy(store: Path, dest: Path, run_id: str, student: Path) -> Path:
    with sqlite3.connect(store) as src, sqlite3.connect(dest) as dst:
        src.backup(dst)
        cfg = json.loads(dst.execute("SELECT config_json FROM runs WHERE id = ?", [run_id]).fetchone()[0])
        cfg["models"]["student"] = str(student)
        dst.execute("UPDATE runs SET config_json = ? WHERE id = ?", [json.dumps(cfg), run_id])
    return dest


def test_full_disk_before_and_during_the_export(tiny_run, tmp_path, monkeypatch):
    store, run_id = tiny_run
    out = tmp_path / "merged"
    usage = namedtuple("usage", "total used free")
    with monkeypatch.context() as m:
        m.setattr(shutil, "disk_usage", lambda _: usage(10**9, 10**9 - 1000, 1000))
        with pytest.raises(PadaError, match="not enough disk space"):
            export.export_run(store, run_id, fmt="merged", out=out)
    _assert_clean(out)
    # The disk fills up half-way through writing: the second file copied hits ENOSPC.
    real_copy, copied = shutil.copy2, []

    def copy_until_full(src, dst, **kw):
        if copied:
            raise OSError(28, "No space left on device")
        copied.append(real_copy(src, dst, **kw))

    monkeypatch.setattr(shutil, "copy2", copy_until_full)
    with pytest.raises(PadaError, match="not enough disk space"):
        export.export_run(store, run_id, fmt="adapter", out=tmp_path / "adapter", verify=False)
    assert copied
    _assert_clean(tmp_path / "adapter")


SIGINT_BIT = 1 << (signal.SIGINT - 1)  # its bit (0x2) in the masks of /proc/PID/status


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads signal dispositions in /proc")
def test_ctrl_c_during_conversion_stops_the_export_and_leaves_nothing(tiny_run, converter_ready, tmp_path):
    """A user's Ctrl-C while llama.cpp's converter runs: the terminal sends SIGINT to the
    foreground process group (pada and the converter it started), where no process ignores it;
    pada exits 130, says that nothing was left under the final name, and leaves nothing there
    nor any temporary folder."""
    store, run_id = tiny_run
    out = tmp_path / "gguf"
    cmd = [sys.executable, "-m", "pada_local.cli", "export", run_id, "--format", "gguf", "--quant", "f16",
           "--store", str(store), "--out", str(out)]
    # Its own process group (session), so the signal reaches the group as a terminal's does.
    proc = subprocess.Popen(_as_a_foreground_job(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        converting = _wait_for(lambda: _converter_of(proc.pid), proc)
        group = [proc.pid, *_descendants(proc.pid)]
        assert converting in group
        for pid in group:
            _assert_sigint_reaches(pid)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err[-2000:]
    assert "stopped: export interrupted; no file was left under the final name" in err, err[-2000:]
    _assert_clean(out)


def test_ctrl_c_dropped_inside_a_c_callback_during_verification_still_stops_the_export(tiny_run, tmp_path,
                                                                                   monkeypatch):
    """A Ctrl-C that lands while C code runs is raised in the first Python code to run, which can
    be a callback of that C code: llama-cpp-python's log callback while llama.cpp loads a GGUF to
    verify it. ctypes prints and drops a KeyboardInterrupt raised there; the export must stop all
    the same, before anything is placed under the final name."""
    store, run_id = tiny_run
    from_c = ctypes.CFUNCTYPE(None)(lambda: signal.raise_signal(signal.SIGINT))  # C calling Python
    real_verify, dropped = export.verify_export, []

    def verify_with_ctrl_c_in_a_callback(*args, **kwargs):
        from_c()  # the KeyboardInterrupt is raised inside the callback, and dropped there
        return real_verify(*args, **kwargs)

    monkeypatch.setattr(export, "verify_export", verify_with_ctrl_c_in_a_callback)
    monkeypatch.setattr(sys, "unraisablehook", lambda what: dropped.append(what.exc_type))
    out = tmp_path / "adapter"
    # Python's own handler, as under a terminal, whatever started this test run
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            export.export_run(store, run_id, fmt="adapter", out=out)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert dropped == [KeyboardInterrupt]  # what ctypes did with it: the case this test is about
    _assert_clean(out)


def _as_a_foreground_job(cmd: list[str]) -> list[str]:
    """`cmd` as a shell starts a foreground job: SIGINT at its default disposition and unblocked.
    A process inherits an ignored SIGINT through exec (a background job of a non-interactive
    shell, e.g. a test runner started with `&`, has it ignored, as POSIX specifies), and Python
    then never raises KeyboardInterrupt: such an export runs to the end, and rightly so. A
    launcher resets it and execs `cmd` (same pid), with no Python run in a forked child of this
    multi-threaded process (what preexec_fn would do)."""
    launcher = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
                "os.execv(sys.argv[1], sys.argv[1:])")
    return [sys.executable, "-c", launcher, *cmd]


def _children() -> dict[int, list[int]]:
    """ppid -> pids, from /proc/*/stat (a process may end while it is read: then it is left out)."""
    out: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()  # after "pid (comm)": state, ppid, ...
            out.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return out


def _descendants(pid: int) -> list[int]:
    children, found, todo = _children(), [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _converter_of(pid: int) -> int | None:
    """The pid of llama.cpp's converter among pid's descendants, once it runs (exec'd)."""
    return next((p for p in _descendants(pid) if converter.HF_SCRIPT in _cmdline(p)), None)


def _masks(status: Path) -> dict[str, int]:
    """The signal masks of /proc/PID/status: SigPnd, SigBlk, SigIgn, SigCgt (hexadecimal)."""
    lines = (line.split(":", 1) for line in status.read_text().splitlines())
    return {key: int(value, 16) for key, value in lines if key in ("SigPnd", "SigBlk", "SigIgn", "SigCgt")}


def _assert_sigint_reaches(pid: int) -> None:
    """pid neither ignores SIGINT nor blocks it in every thread (a process that ended meanwhile
    is not checked)."""
    try:
        ignored = _masks(Path(f"/proc/{pid}/status"))["SigIgn"]
        blocked = [_masks(t / "status")["SigBlk"] for t in Path(f"/proc/{pid}/task").iterdir()]
    except (OSError, KeyError):
        return
    what = f"pid {pid} ({_cmdline(pid)[:200]})"
    assert not ignored & SIGINT_BIT, f"{what} ignores SIGINT (SigIgn {ignored:#x}): Ctrl-C cannot stop it"
    assert not all(mask & SIGINT_BIT for mask in blocked), f"{what} blocks SIGINT in every thread"


def _wait_for(found, proc: subprocess.Popen, timeout: float = 600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "the export ended before it could be interrupted"
        hit = found()
        if hit:
            return hit
        time.sleep(0.05)
    raise AssertionError("the converter never started")


def test_stale_temporary_folders_of_a_killed_export_are_removed(tmp_path):
    out = tmp_path / "export-gguf-q8_0"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".{out.name}.tmp-{dead.stdout.strip()}"
    (stale / "partial.gguf").parent.mkdir()
    (stale / "partial.gguf").write_bytes(b"GGUF")
    mine = tmp_path / f".{out.name}.tmp-{os.getpid()}"
    mine.mkdir()
    placement.clean_stale(out)
    assert not stale.exists() and mine.exists()


def test_failed_verification_is_kept_aside_and_exits_non_zero(tiny_run, tmp_path, monkeypatch, capsys):
    store, run_id = tiny_run
    dropped = export.Check("adapter", "transformers", True, True, True, 0.1, 0.2, 10, 1.0)
    failed = export.Verification(0.8, 10, export.MAX_DROP, (dropped,))
    monkeypatch.setattr(export, "verify_export", lambda *a, **k: failed)
    out = tmp_path / "adapter"
    result = export.export_run(store, run_id, fmt="adapter", out=out)
    assert not result.ok and result.out_dir == tmp_path / "adapter.unverified"
    assert not out.exists() and (result.out_dir / "adapter_model.safetensors").is_file()
    print_result(result)
    assert "verification FAILED" in capsys.readouterr().out
    with RunStore(store) as s:
        rows = [a for a in s.rows("artifacts", run_id) if a["path"].startswith(str(result.out_dir))]
    metas = [json.loads(a["meta_json"]) for a in rows]
    assert metas and all(m["verified"] is False for m in metas)


def test_refuses_to_replace_a_folder_it_did_not_write(tiny_run, tmp_path):
    store, run_id = tiny_run
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(PadaError, match="not a pada export"):
        export.export_run(store, run_id, fmt="adapter", out=out)
    assert (out / "notes.txt").read_text() == "keep me" and len(list(out.iterdir())) == 1


def test_only_the_converters_are_taken_from_the_sdist():
    top = "llama_cpp_python-0.3.36/vendor/llama.cpp/"
    assert converter._wanted(top + "convert_hf_to_gguf.py") == "convert_hf_to_gguf.py"
    assert converter._wanted(top + "conversion/llama.py") == "conversion/llama.py"
    assert converter._wanted(top + "gguf-py/gguf/vocab.py") == "gguf-py/gguf/vocab.py"
    for other in ("src/llama.cpp", "CMakeLists.txt", "convert_hf_to_gguf_update.py", "llama_cpp/llama.py"):
        assert converter._wanted(top + other) is None and converter._wanted("llama_cpp_python-0.3.36/" + other) is None


def test_quant_needs_gguf(tiny_run):
    store, run_id = tiny_run
    with pytest.raises(PadaError, match="--quant applies to --format gguf only"):
        export.export_run(store, run_id, fmt="merged", quant="q4_k_m")
