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
