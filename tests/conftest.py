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
    """The embedded student; PADA_TEST_STUDENT names another folder with its tokenizer (a machine
    without the embedded model's package, e.g. a GPU box the check is carried to)."""
    from pada_local import models

    if os.environ.get("PADA_TEST_STUDENT"):
        return Path(os.environ["PADA_TEST_STUDENT"])
    return models.prepare_student(models.resolve_student("smollm2-135m"))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, student_dir: Path) -> Path:
    """2 layers, hidden 64, random weights, the real SmolLM2 tokenizer and chat template: the
    trainers' code paths in seconds (mlx's CPU build included)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(str(student_dir))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def embedder():
    from pada_local import models
    from pada_local.backends.embed import SentenceEmbedder

    return SentenceEmbedder(models.resolve_embedder("all-minilm-l6-v2"))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_task(folder: Path, seed: int = 123) -> Path:
    """A data set the project never shipped (two items per skill in train, one in validation
    and test, fresh seed) and a config that runs one tiny round with the real models."""
    import yaml

    from pada_local.tasks import skills

    splits = skills.generate({"train": 2, "validation": 1, "test": 1}, seed=seed)
    for split, rows in splits.items():
        write_jsonl(folder / f"{split}.jsonl", rows)
    cfg = {
        "name": "tiny",
        "data": {"train": "train.jsonl", "validation": "validation.jsonl", "test": "test.jsonl"},
        "task": {"name": "tiny-skills", "description": "Short questions with one-word or one-number answers.",
                 "system_prompt": skills.SYSTEM_PROMPT, "answer_format": "one word or number",
                 "scorer": {"kind": "exact"}, "max_new_tokens": 8, "verifier": "skills"},
        "teacher": {"n_ctx": 1024, "max_tokens": 96},
        "train": {"max_steps": 2, "batch_size": 4, "rank": 4, "alpha": 8, "max_length": 96},
        "loop": {"rounds": 1, "budget": 6, "analysis_cap": 4, "k_max": 3},
        "quality": {"verifier_fixes_answer": True},
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def add_run(store, *, name: str | None = "t", task: str = "t", strategy: str = "pada", student: str = "s",
            teacher: str | None = "t", seed: int = 0, run_id: str | None = None) -> str:
    """A recorded (not computed) run, as the ledger records one: for tests that need run rows."""
    from pada_local.ledger.runs import Ledger

    config = {"name": name, "task": {"name": task}, "loop": {"strategy": strategy, "seed": seed},
              "models": {"student": student, "teacher": teacher}}
    return Ledger(store).create_run(config=config, versions={}, run_id=run_id)


def set_round(store, run_id: str, r: int, **fields) -> None:
    """A round's summary columns, written as the ledger writes them (an upsert)."""
    store.write("rounds", [{"run_id": run_id, "round": r, **fields}])
