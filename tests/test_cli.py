"""The command line: instant help, clean errors with exit codes, config validation."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pada_local.cli import main


def test_help_does_not_import_heavy_libraries():
    # The harlequin habit: import the CLI in a fresh interpreter and look at sys.modules.
    code = ("import sys; from pada_local import arguments, cli; arguments.build();"
            "heavy = [m for m in ('torch', 'transformers', 'llama_cpp', 'sentence_transformers', 'textual', 'peft')"
            " if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for command in ("models", "doctor", "run", "runs", "demo", "config"):
        assert command in text


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def test_unknown_config_key_is_an_error(tmp_path, capsys):
    cfg = _config(tmp_path, """
        data: {train: t.jsonl, validation: v.jsonl}
        loop: {roundz: 3}
    """)
    assert main(["config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "loop.roundz: unknown key" in err and str(cfg) in err


def test_bad_yaml_reports_line(tmp_path, capsys):
    cfg = _config(tmp_path, "data:\n  train: [unclosed\n")
    assert main(["config", str(cfg)]) == 2
    assert f"{cfg}:" in capsys.readouterr().err


def test_overrides_and_relative_paths(tmp_path, capsys):
    cfg = _config(tmp_path, "data: {train: t.jsonl, validation: v.jsonl}\n")
    assert main(["config", str(cfg), "--set", "loop.rounds=0", "--set", "train.lr=0.001"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["loop"]["rounds"] == 0 and resolved["train"]["lr"] == 0.001
    assert resolved["data"]["train"] == str(tmp_path / "t.jsonl")


def test_scorer_needs_its_fields(tmp_path, capsys):
    cfg = _config(tmp_path, "data: {train: t.jsonl, validation: v.jsonl}\ntask: {scorer: {kind: label}}\n")
    assert main(["config", str(cfg)]) == 2
    assert "needs 'labels'" in capsys.readouterr().err


def test_models_and_doctor_run(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {("teacher", "smollm2-135m"), ("embedder", "all-minilm-l6-v2")} <= {(r["role"], r["name"]) for r in rows}
    assert main(["doctor", "--json"]) == 0
    checks = {c["check"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["llama-cpp-python"]["status"] == "ok"
    assert "would use 'peft'" in checks["trainer: auto"]["detail"]


def test_runs_without_store_is_a_clear_error(tmp_path, capsys):
    assert main(["runs", "--store", str(tmp_path / "none.db")]) == 2
    assert "no run store" in capsys.readouterr().err
