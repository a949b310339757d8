"""A base model (a GGUF without a chat template) is refused at preflight, for every role that
renders chats with it: teacher, judge and GGUF student."""

from __future__ import annotations

from pathlib import Path

import pytest

from pada_local import models
from pada_local.errors import ModelError

from .conftest import tiny_task

TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"


def write_gguf(path: Path, chat_template: str | None) -> Path:
    """A small but real GGUF (header, metadata, one tensor) written with the gguf package."""
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    writer.add_name(path.stem)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_without_chat_template_is_refused_for_each_role(tmp_path):
    base = write_gguf(tmp_path / "base.gguf", None)
    for call, role in ((lambda: models.resolve_teacher(str(base)), "teacher"),
                       (lambda: models.resolve_teacher(str(base), role="judge"), "judge"),
                       (lambda: models.resolve_student(str(base)), "student")):
        with pytest.raises(ModelError, match=f"this {role} GGUF has no chat template") as err:
            call()
        assert err.value.hint is not None and "instruct" in err.value.hint


def test_empty_template_is_refused_and_a_real_one_passes(tmp_path):
    with pytest.raises(ModelError, match="no chat template"):
        models.resolve_teacher(str(write_gguf(tmp_path / "blank.gguf", "  ")))
    chat = write_gguf(tmp_path / "chat.gguf", TEMPLATE)
    assert models.resolve_teacher(str(chat)) == chat
    assert models.resolve_student(str(chat)).gguf == chat
    assert models.check_gguf(write_gguf(tmp_path / "any.gguf", None)).is_file()  # no role: no template needed


def test_embedded_models_have_templates(teacher_gguf):
    """Both pass the chat-template check: the teacher's Q8_0 copy and the package file the
    student is made from."""
    assert models.resolve_teacher("smollm2-135m") == teacher_gguf
    assert teacher_gguf.name.endswith(".Q8_0-from-Q4_1.gguf")
    assert models.resolve_student("smollm2-135m").gguf == models.smollm2_gguf()


@pytest.mark.parametrize("field", ["models.teacher", "models.judge", "models.student"])
def test_run_with_a_base_model_stops_at_preflight(tmp_path, monkeypatch, capsys, field):
    from pada_local.cli import main

    monkeypatch.chdir(tmp_path)
    cfg = tiny_task(tmp_path)
    base = write_gguf(tmp_path / "base.gguf", None)
    store = tmp_path / "runs" / "pada.db"
    assert main(["run", str(cfg), "--set", f"{field}={base}", "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert "no chat template" in err and "instruct" in err and str(base) in err
    assert not store.parent.exists()  # refused before anything was recorded
