"""Stage: evaluate the student on a split, item by item (greedy, fixed token cap)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .backends.base import ChatRequest, Generator
from .config import TaskConfig
from .data import Example
from .events import Reporter, StageProgress, silent
from .prompts import GradeReply, render, student_messages
from .records import EvalRow
from .scoring import Scorer


def evaluate(
    student: Generator,
    examples: Sequence[Example],
    task: TaskConfig,
    scorer: Scorer,
    *,
    judge: Generator | None = None,
    report: Reporter = silent,
    stage: str = "eval",
    round_: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[EvalRow]:
    progress = StageProgress(report, stage, round_, len(examples))
    requests = [ChatRequest(student_messages(task, ex.input, ex.system), max_tokens=task.max_new_tokens)
                for ex in examples]

    def on_item(i: int, _: object) -> None:
        progress.step()
        if should_stop is not None and should_stop():
            from .errors import Cancelled

            raise Cancelled("stopped during evaluation")

    outputs = student.generate(requests, on_item=on_item)
    preds = [o.text for o in outputs]
    scores = _judge_scores(judge, task, examples, preds) if task.scorer.kind == "judge" else \
        [scorer.score(p, ex.output) for p, ex in zip(preds, examples)]
    progress.end()
    return [EvalRow(ex.id, ex.split, ex.input, ex.output, p, s, o.completion_tokens)
            for ex, p, s, o in zip(examples, preds, scores, outputs)]


def _judge_scores(judge: Generator | None, task: TaskConfig, examples: Sequence[Example],
                  preds: Sequence[str]) -> list[float]:
    """LLM-judge scoring: the judge grades each prediction against the reference and rubric."""
    if judge is None:
        raise ValueError("judge scoring needs a judge model")
    requests = [
        ChatRequest(render("judge_score", rubric=task.scorer.rubric, input=ex.input, reference=ex.output,
                           prediction=p), schema=GradeReply, temperature=0.0, max_tokens=120)
        for ex, p in zip(examples, preds)
    ]
    return [float(bool(c.ok and c.data is not None and c.data.correct)) for c in judge.generate(requests)]


def accuracy(rows: Sequence[EvalRow]) -> float | None:
    return None if not rows else sum(r.score for r in rows) / len(rows)
