"""Model resolution: clear errors for every way a user's model path can be wrong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pada_local import models
from pada_local.errors import ModelError


def test_missing_gguf(tmp_path):
    with pytest.raises(ModelError, match="GGUF file not found"):
        models.resolve_teacher(str(tmp_path / "nope.gguf"))


def test_not_a_gguf(tmp_path):
    bad = tmp_path / "fake.gguf"
    bad.write_text("hello, I am not a model")
    with pytest.raises(ModelError, match="not a GGUF file"):
        models.check_gguf(bad)


def test_truncated_gguf(tmp_path, teacher_gguf):
    cut = tmp_path / "cut.gguf"
    with teacher_gguf.open("rb") as src, cut.open("wb") as dst:
        dst.write(src.read(teacher_gguf.stat().st_size // 2))
    with pytest.raises(ModelError, match="truncated|corrupt"):
        models.check_gguf(cut)


def test_directory_that_is_not_a_model(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        models.resolve_student(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="safetensors"):
        models.resolve_student(str(tmp_path))


@pytest.mark.slow
def test_unknown_architecture(tmp_path, student_dir):
    from pada_local.backends.hf import load_model

    for f in student_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["model_type"] = "no-such-architecture"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="transformers cannot load"):
        load_model(tmp_path, device="cpu")


def test_prepare_is_atomic(tmp_path, monkeypatch, teacher_gguf):
    monkeypatch.setenv("PADA_MODELS_DIR", str(tmp_path))
    spec = models.StudentSpec(models.student_dir_for(teacher_gguf), teacher_gguf, "x")

    def boom(gguf: Path, out: Path) -> None:
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")  # half-written
        raise RuntimeError("disk full")

    monkeypatch.setattr(models, "_convert_gguf_to_hf", boom)
    with pytest.raises(RuntimeError):
        models.prepare_student(spec)
    assert not spec.hf_dir.exists() and list(tmp_path.iterdir()) == []
    assert not models.student_ready(spec)


def test_default_student_is_prepared_and_listed(student_dir):
    assert (student_dir / models.READY_MARKER).is_file()
    rows = {(r["role"], r["name"]): r for r in models.catalogue_rows()}
    assert rows[("student", "smollm2-135m")]["ready"] == "yes"


def test_embedded_teacher_runs_from_its_q8_copy(tmp_path, monkeypatch):
    """Made once, atomically, in the models folder; the student still comes from the package file."""
    from gguf import GGUFReader

    monkeypatch.setenv("PADA_MODELS_DIR", str(tmp_path))
    path = models.resolve_teacher("smollm2-135m")
    assert path.parent == tmp_path and path.name == "SmolLM2-135M-Instruct.Q8_0-from-Q4_1.gguf"
    file_type = GGUFReader(str(path)).fields["general.file_type"]
    assert int(file_type.parts[file_type.data[0]][0]) == 7  # LLAMA_FTYPE_MOSTLY_Q8_0
    made = path.stat().st_mtime_ns
    assert models.resolve_teacher("smollm2-135m", role="judge") == path and path.stat().st_mtime_ns == made
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    assert models.resolve_student("smollm2-135m").gguf == models.smollm2_gguf()


def test_teacher_copy_falls_back_to_the_package_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PADA_MODELS_DIR", str(tmp_path))

    def boom(source: Path, out: Path, kind: str) -> None:
        out.write_bytes(b"GGUF half")  # half-written
        raise RuntimeError("llama.cpp could not write it")

    monkeypatch.setattr(models, "_requantize", boom)
    assert models.resolve_teacher("smollm2-135m") == models.smollm2_gguf()
    assert list(tmp_path.iterdir()) == []
