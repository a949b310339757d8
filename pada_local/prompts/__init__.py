"""Teacher prompt templates, kept as data files so users can read and edit them.

A file has a `[system]` and a `[user]` section; `$name` placeholders are filled with
string.Template, which leaves JSON braces alone. `PADA_PROMPTS_DIR` (or `prompts_dir` in the
config) points at a folder whose files override the built-in ones by name.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from string import Template

from pydantic import BaseModel, Field

from ..config import TaskConfig
from ..errors import ConfigError
from ..records import Turn

BUILTIN = Path(__file__).parent
_SECTION = re.compile(r"^\[(system|example|user)\]\s*$", re.MULTILINE)


def _path(name: str, override: Path | None) -> Path:
    folder = override or (Path(os.environ["PADA_PROMPTS_DIR"]) if os.environ.get("PADA_PROMPTS_DIR")
                          else None)
    if folder is not None and (folder / f"{name}.txt").is_file():
        return folder / f"{name}.txt"
    return BUILTIN / f"{name}.txt"


def load(name: str, override: Path | None = None) -> dict[str, str]:
    path = _path(name, override)
    parts = _SECTION.split(path.read_text())
    sections = {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}
    if "user" not in sections:
        raise ConfigError(f"{path}: prompt file needs a [user] section")
    return sections


def render(name: str, override: Path | None = None, shots: Sequence[tuple[str, str]] = (),
           **values: object) -> tuple[dict[str, str], ...]:
    """Chat messages for prompt `name` with its placeholders filled.

    A file with an `[example]` section turns each `shots` pair (input, output) into a
    worked turn: the example text as the user's request and the pair as the assistant's JSON
    reply. Small teachers copy a demonstrated form far better than they follow a description.
    """
    sections = load(name, override)
    text_values = {k: str(v) for k, v in values.items()}
    filled = {role: _fill(name, override, text, text_values) for role, text in sections.items()
              if role != "example"}
    messages = [{"role": "system", "content": filled["system"]}] if "system" in filled else []
    if "example" in sections:
        # `$example_answer` lets a label-first prompt ask for each shot's own answer; its reply
        # then shows the input alone, as the real reply will be.
        input_only = "$example_answer" in sections["example"]
        for given, wanted in shots:
            ask = _fill(name, override, sections["example"], {**text_values, "example_answer": wanted})
            reply = {"input": given} if input_only else {"input": given, "output": wanted}
            messages.append({"role": "user", "content": ask})
            messages.append({"role": "assistant", "content": json.dumps(reply)})
    messages.append({"role": "user", "content": filled["user"]})
    return tuple(messages)


def _fill(name: str, override: Path | None, text: str, values: dict[str, str]) -> str:
    try:
        return Template(text).substitute(**values)
    except KeyError as err:
        raise ConfigError(f"{_path(name, override)}: unknown placeholder ${err.args[0]}") from None


# The reply schemas: llama.cpp turns each into a grammar; pydantic validates every reply.


class AnalysisReply(BaseModel):
    root_cause: str = Field(..., min_length=3)
    error_scenario: str = Field(..., min_length=3)


class PatternReply(BaseModel):
    name: str = Field(..., min_length=2)
    description: str = Field(..., min_length=3)


class StrategyReply(BaseModel):
    strategy: str = Field(..., min_length=3)


class SampleReply(BaseModel):
    input: str = Field(..., min_length=1)
    output: str = Field(..., min_length=1)


class InputReply(BaseModel):
    """Label-first generation: the job chose the answer; the teacher writes only the input."""

    input: str = Field(..., min_length=1)


class ComputedReply(BaseModel):
    """Computed answers: the teacher writes the computation; the evaluator gives the answer."""

    input: str = Field(..., min_length=1)
    expression: str = Field(..., min_length=1)
    output: str = Field(..., min_length=1)


class SolveReply(BaseModel):
    answer: str = Field(..., min_length=1)


class JudgeReply(BaseModel):
    score: int = Field(..., ge=1, le=5)
    reason: str = Field(...)


class GradeReply(BaseModel):
    correct: bool
    reason: str = Field(...)


def solve_messages(task: TaskConfig, text: str) -> tuple[dict[str, str], ...]:
    """The teacher solves an input: the teacher check and quality control's re-solve alike."""
    return render("solve", task_description=task.description or task.name,
                  answer_format=task.answer_format or "as in the examples", input=text)


def judge_messages(task: TaskConfig, text: str, answer: str) -> tuple[dict[str, str], ...]:
    """The judge rates an example 1-5: the judge check and quality control alike."""
    return render("judge", task_description=task.description or task.name,
                  answer_format=task.answer_format or "as in the examples", input=text, output=answer)


def grade_messages(task: TaskConfig, text: str, answer: str) -> tuple[dict[str, str], ...]:
    """The judge grades an answer under a judge-scored task's rubric: its check and quality
    control alike."""
    return render("judge_confirm", rubric=task.scorer.rubric or "", input=text, prediction=answer)


def student_messages(task: TaskConfig, text: str, system: str | None = None,
                     context: Sequence[Turn] = ()) -> tuple[dict[str, str], ...]:
    """The student's prompt (a TaskConfig's system prompt, a conversation's earlier turns, then
    the item), identical in training, evaluation and export."""
    system = system if system is not None else task.system_prompt
    head = () if system is None else ({"role": "system", "content": system},)
    turns = tuple({"role": role, "content": content} for role, content in context)
    return (*head, *turns, {"role": "user", "content": text})


def conversation_text(text: str, context: Sequence[Turn] = ()) -> str:
    """An item as one text for a teacher prompt: a single turn as it is, a conversation with each
    turn labelled ("User: ...", "Assistant: ..."), so the teacher sees what the student saw."""
    if not context:
        return text
    return "\n".join(f"{role.capitalize()}: {content}" for role, content in [*context, ("user", text)])
