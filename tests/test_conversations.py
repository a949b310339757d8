"""Multi-turn `messages` records stay whole: every earlier turn is context, rendered the same way
in training and evaluation, and shown to the teacher in analysis; synthetic samples stay
single-turn (no models: fake generators record the requests they are given)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from pada_local.backends.base import ChatRequest, Completion, OnItem
from pada_local.config import FieldMap, ScorerConfig, TaskConfig
from pada_local.data.shapes import load_split
from pada_local.errors import DataError
from pada_local.prompts import AnalysisReply, conversation_text, student_messages
from pada_local.records import EvalRow, Example
from pada_local.scoring import Scorer
from pada_local.stages.analyze import analyze_failures
from pada_local.stages.evaluate import evaluate
from pada_local.stages.train import training_examples

TASK = TaskConfig(name="chat", system_prompt="Default system.", scorer=ScorerConfig(kind="exact"))
CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "My name is Ada."},
    {"role": "assistant", "content": "Hello Ada."},
    {"role": "user", "content": "What is my name?"},
    {"role": "assistant", "content": "Ada"},
]


class Recorder:
    """A Generator that answers every request with `reply` and keeps the requests."""

    supports_schema = True

    def __init__(self, reply: Completion) -> None:
        self.reply = reply
        self.requests: list[ChatRequest] = []

    def generate(self, requests: Sequence[ChatRequest], on_item: OnItem | None = None) -> list[Completion]:
        self.requests += requests
        for i in range(len(requests)):
            if on_item is not None:
                on_item(i, self.reply)
        return [self.reply] * len(requests)


def _load(tmp_path: Path, records: list[dict], split: str = "validation") -> list[Example]:
    path = tmp_path / f"{split}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return load_split(path, FieldMap(), split)


def _chat(tmp_path: Path) -> Example:
    return _load(tmp_path, [{"id": "c1", "messages": CHAT}])[0]


def test_earlier_turns_are_kept_as_context(tmp_path: Path) -> None:
    ex = _chat(tmp_path)
    assert (ex.system, ex.input, ex.output) == ("Be brief.", "What is my name?", "Ada")
    assert ex.context == (("user", "My name is Ada."), ("assistant", "Hello Ada."))
    assert hash(ex) == hash(_chat(tmp_path))  # frozen and hashable: the context is a tuple of pairs


def test_single_turn_records_have_no_context(tmp_path: Path) -> None:
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("prompt,completion\n2+2?,4\n")
    (row,) = load_split(csv_path, FieldMap(), "train")
    (pair,) = _load(tmp_path, [{"prompt": "2+2?", "completion": "4"}])
    (short_chat,) = _load(tmp_path, [{"messages": CHAT[1:3]}])
    assert row.context == pair.context == short_chat.context == ()


def test_student_prompt_is_system_then_context_then_last_user_turn(tmp_path: Path) -> None:
    ex = _chat(tmp_path)
    assert student_messages(TASK, ex.input, ex.system, ex.context) == (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "What is my name?"},
    )
    assert student_messages(TASK, "hi") == ({"role": "system", "content": "Default system."},
                                            {"role": "user", "content": "hi"})


def test_training_and_evaluation_render_the_same_conversation(tmp_path: Path) -> None:
    ex = _chat(tmp_path)
    real, made = training_examples(TASK, [ex], [("A new question?", "yes")])
    expected = student_messages(TASK, ex.input, ex.system, ex.context)
    assert real.prompt_messages == expected and real.answer == "Ada"
    assert [m["role"] for m in made.prompt_messages] == ["system", "user"]  # synthetic: single-turn

    student = Recorder(Completion("Ada"))
    (row,) = evaluate(student, [ex], TASK, Scorer(TASK.scorer))
    assert student.requests[0].messages == expected
    assert row.score == 1.0 and row.input == "What is my name?"


def test_judge_sees_the_whole_conversation(tmp_path: Path) -> None:
    from pada_local.prompts import GradeReply

    ex = _chat(tmp_path)
    task = TaskConfig(name="chat", scorer=ScorerConfig(kind="judge", rubric="the name"))
    judge = Recorder(Completion("{}", data=GradeReply(correct=True, reason="ok")))
    evaluate(Recorder(Completion("Ada")), [ex], task, Scorer(task.scorer), judge=judge)
    assert "User: My name is Ada.\nAssistant: Hello Ada.\nUser: What is my name?" in \
        judge.requests[0].messages[-1]["content"]


def test_teacher_sees_the_whole_conversation_in_analysis(tmp_path: Path) -> None:
    ex = _chat(tmp_path)
    single = Example("s1", "What is 2 plus 2?", "4", split="validation")
    failures = [EvalRow(ex.id, "validation", ex.input, ex.output, "Bob", 0.0),
                EvalRow(single.id, "validation", single.input, single.output, "5", 0.0)]
    reply = Completion("{}", data=AnalysisReply(root_cause="forgot the name", error_scenario="recall"))
    teacher = Recorder(reply)
    analyze_failures(teacher, failures, TASK, seed=0, items=[ex, single])
    chat_prompt, single_prompt = (r.messages[-1]["content"] for r in teacher.requests)
    whole = "User: My name is Ada.\nAssistant: Hello Ada.\nUser: What is my name?"
    assert whole in chat_prompt
    assert "What is 2 plus 2?" in single_prompt and "User:" not in single_prompt
    assert conversation_text("hi") == "hi"


@pytest.mark.parametrize("messages, field, where", [
    (CHAT + [{"role": "user", "content": "And my age?"}], "messages[5]", "after the final assistant"),
    (CHAT[:4] + [{"role": "assistant", "content": "Hmm."}, CHAT[4]], "messages[4]", "between the last user"),
    ([*CHAT[:3], {"role": "system", "content": "Be kind."}, *CHAT[3:]], "messages[3]", "second system"),
])
def test_turns_that_would_be_lost_are_errors(tmp_path: Path, messages: list[dict], field: str,
                                             where: str) -> None:
    with pytest.raises(DataError) as info:
        _load(tmp_path, [{"messages": messages}])
    assert f"validation.jsonl:1: field '{field}'" in str(info.value) and where in str(info.value)
