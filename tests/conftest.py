"""Shared fixtures. Real engines use the embedded default models (CPU, offline); they load once
per session. `make setup` prepares them; a missing one is a failure, not a skip."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def teacher_gguf() -> Path:
    from pada_local import models

    return models.resolve_teacher("smollm2-135m")


@pytest.fixture(scope="session")
def teacher(teacher_gguf: Path):
    from pada_local.backends.llama_cpp import LlamaCppGenerator

    gen = LlamaCppGenerator(teacher_gguf, n_ctx=1024, temperature=0.7, max_tokens=96, seed=0)
    yield gen
    gen.close()


@pytest.fixture(scope="session")
def student_dir() -> Path:
    from pada_local import models

    return models.prepare_student(models.resolve_student("smollm2-135m"))


@pytest.fixture(scope="session")
def embedder():
    from pada_local import models
    from pada_local.backends.embed import SentenceEmbedder

    return SentenceEmbedder(models.resolve_embedder("all-minilm-l6-v2"))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
