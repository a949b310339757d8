"""Stage: evaluate the student on a split, item by item (greedy, fixed token cap), and score a round."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..backends.base import ChatRequest, Generator
from ..config import TaskConfig
from ..errors import PadaError
from ..events import Reporter, StageProgress, silent
from ..prompts import GradeReply, conversation_text, render, student_messages
from ..records import EvalRow, Example
from ..scoring import Scorer

SCORED = ("validation", "test", "train")  # the splits a trained round is scored on

def evaluate(
    student: Generator,
    examples: Sequence[Example],
    task: TaskConfig,
    scorer: Scorer,
    *,
    judge: Generator | None = None,
    options: Sequence[str] | None = None,
    report: Reporter = silent,
    stage: str = "eval",
    round_: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[EvalRow]:
    """Score the student on `examples`: greedy generation read by the scorer, or (with
    `options`, log-likelihood mode) the option the student finds most likely."""
    progress = StageProgress(report, stage, round_, len(examples))
    requests = [ChatRequest(student_messages(task, ex.input, ex.system, ex.context),
                            max_tokens=task.max_new_tokens) for ex in examples]

    def on_item(i: int, _: object) -> None:
        progress.step()
        if should_stop is not None and should_stop():
            from ..errors import Cancelled

            raise Cancelled("stopped during evaluation")

    if options is not None:
        rows = _loglik_rows(student, requests, options, examples, scorer, on_item)
    else:
        rows = _generated_rows(student, requests, examples, task, scorer, judge, on_item)
    progress.end()
    return rows


def _generated_rows(student: Generator, requests: Sequence[ChatRequest], examples: Sequence[Example],
                    task: TaskConfig, scorer: Scorer, judge: Generator | None,
                    on_item: Callable[[int, object], None]) -> list[EvalRow]:
    outputs = student.generate(requests, on_item=on_item)
    preds = [o.text for o in outputs]
    scores = _judge_scores(judge, task, examples, preds) if task.scorer.kind == "judge" else \
        [scorer.score(p, ex.output) for p, ex in zip(preds, examples, strict=True)]
    rows = zip(examples, preds, scores, outputs, strict=True)
    return [EvalRow(ex.id, ex.split, ex.input, ex.output, p, s, o.completion_tokens,
                    prompt_tokens=o.prompt_tokens) for ex, p, s, o in rows]


def _loglik_rows(student: Generator, requests: Sequence[ChatRequest], options: Sequence[str],
                 examples: Sequence[Example], scorer: Scorer,
                 on_item: Callable[[int, object], None]) -> list[EvalRow]:
    """The prediction is the most likely option, per token (options may differ in length);
    every option's summed log-probability is kept with the row."""
    score_options = getattr(student, "score_options", None)
    if score_options is None:
        raise PadaError("this student backend cannot score options by log-likelihood",
                        hint="set task.scorer.mode: generate")
    found = score_options(requests, options, on_item=on_item)
    rows = []
    for ex, got in zip(examples, found, strict=True):
        pred = got.best(normalize=True)
        logprobs = dict(zip(got.options, got.logprobs, strict=True))
        rows.append(EvalRow(ex.id, ex.split, ex.input, ex.output, pred, scorer.score(pred, ex.output),
                            prompt_tokens=got.prompt_tokens, logprobs=logprobs))
    return rows


def _judge_scores(judge: Generator | None, task: TaskConfig, examples: Sequence[Example],
                  preds: Sequence[str]) -> list[float]:
    """LLM-judge scoring: the judge grades each prediction against the reference and rubric."""
    if judge is None:
        raise ValueError("judge scoring needs a judge model")
    requests = [
        ChatRequest(render("judge_score", rubric=task.scorer.rubric, reference=ex.output, prediction=p,
                           input=conversation_text(ex.input, ex.context)),  # the whole conversation
                    schema=GradeReply, temperature=0.0, max_tokens=120)
        for ex, p in zip(examples, preds, strict=True)
    ]
    return [float(bool(c.ok and isinstance(c.data, GradeReply) and c.data.correct))
            for c in judge.generate(requests)]


def evaluate_splits(student: Generator, parts: Sequence[tuple[str, Sequence[Example]]], task: TaskConfig,
                    scorer: Scorer, *, judge: Generator | None = None, options: Sequence[str] | None = None,
                    model: str = "trained", report: Reporter = silent, round_: int | None = None,
                    should_stop: Callable[[], bool] | None = None) -> list[EvalRow]:
    """The student on each (split, items) in turn; an empty split is skipped."""
    rows: list[EvalRow] = []
    for split, items in parts:
        if items:
            rows += evaluate(student, items, task, scorer, judge=judge, options=options, report=report,
                             stage=f"eval {split} ({model})", round_=round_, should_stop=should_stop)
    return rows


def accuracy(rows: Sequence[EvalRow]) -> float | None:
    return None if not rows else sum(r.score for r in rows) / len(rows)


def split_scores(rows: Sequence[EvalRow], splits: Sequence[str] = SCORED) -> dict[str, float | None]:
    """Accuracy per split (None for a split with no rows)."""
    return {split: accuracy([x for x in rows if x.split == split]) for split in splits}


def round_metrics(rows: Sequence[EvalRow], clusters: Mapping[str, int],
                  pattern_ids: Mapping[int, int]) -> list[dict[str, Any]]:
    """A trained round's metrics: accuracy per split, and per pattern the share of the validation
    failures behind it that this round fixed."""
    out: list[dict[str, Any]] = [{"name": "accuracy", "split": split, "value": value}
                                 for split, value in split_scores(rows).items() if value is not None]
    now_ = {x.item_id: x.score for x in rows if x.split == "validation"}
    by_cluster: dict[int, list[str]] = {}
    for item_id, c in clusters.items():
        by_cluster.setdefault(c, []).append(item_id)
    for cluster_id, pattern_id in pattern_ids.items():
        items = by_cluster.get(cluster_id, [])
        if items:
            fixed = sum(now_.get(i, 0.0) for i in items) / len(items)
            out.append({"name": "pattern_fixed", "split": "validation", "pattern_id": pattern_id,
                        "value": fixed})
    return out
