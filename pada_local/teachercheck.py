"""Teacher check: is the teacher good enough at this task for its word to decide a sample?

Quality control trusts the teacher in one place that matters: a synthetic sample is kept when
the teacher's own re-solve agrees with the teacher's own answer. A teacher no better than the
student cannot confirm anything, so before round 1's generation the teacher solves a seeded
sample of D_train items under the task's scorer. Its accuracy is set beside the round-0
student's *validation* accuracy (the student was trained on D_train, so its D_train score would
flatter it). A separate judge is checked on its own: it grades D_train items once with their
reference and once with a wrong answer, and must rate the reference higher.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .backends.base import ChatRequest, Generator
from .config import Config, TaskConfig
from .data import Example
from .events import Reporter, StageProgress, silent
from .prompts import JudgeReply, SolveReply, render
from .scoring import Scorer


@dataclass(frozen=True)
class CheckResult:
    role: str  # "teacher" (solves items) or "judge" (tells a reference from a wrong answer)
    accuracy: float  # share solved / share told apart
    baseline: float  # the student's validation accuracy, or 0.5 (chance) for the judge
    margin: float  # points the accuracy must clear the baseline by
    n: int
    items: list[dict[str, Any]] = field(default_factory=list)
    against: str = "student {:.0f}% on validation after round 0"  # how the baseline reads

    @property
    def trusted(self) -> bool:
        return self.n > 0 and 100 * self.accuracy >= 100 * self.baseline + self.margin

    def line(self) -> str:
        """One plain sentence for the log, `runs show` and the TUI."""
        if self.role == "judge":
            what = f"judge told the reference from a wrong answer on {100 * self.accuracy:.0f}% of {self.n}"
            against = "chance 50%"
        else:
            what = f"teacher solved {100 * self.accuracy:.0f}% of {self.n} train items"
            against = self.against.format(100 * self.baseline)
        if self.trusted:
            return f"{what} ({against}): its {self._word()} can confirm samples"
        return (f"{what} ({against}), not {self.margin:g} points better: its {self._word()} will not "
                "decide any sample")

    def _word(self) -> str:
        return "grades" if self.role == "judge" else "re-solves and grades"

    def stats(self) -> dict[str, Any]:
        return {"role": self.role, "accuracy": self.accuracy, "baseline": self.baseline,
                "margin": self.margin, "n": self.n, "trusted": self.trusted, "line": self.line(),
                "against": self.against, "items": self.items}


def from_stats(detail: dict[str, Any]) -> CheckResult:
    return CheckResult(detail["role"], detail["accuracy"], detail["baseline"], detail["margin"],
                       detail["n"], detail.get("items", []), detail.get("against", CheckResult.against))


def pick(train: Sequence[Example], n: int, seed: int) -> list[Example]:
    return random.Random(seed).sample(list(train), min(n, len(train)))


def check_teacher(teacher: Generator, items: Sequence[Example], task: TaskConfig, scorer: Scorer, *,
                  baseline: float, margin: float, report: Reporter = silent, round_: int | None = None,
                  against: str = CheckResult.against) -> CheckResult:
    """The teacher answers each item with the same prompt quality control's re-solve uses."""
    progress = StageProgress(report, "teacher check", round_, len(items))
    requests = [ChatRequest(solve_messages(task, ex.input), schema=SolveReply, temperature=0.0, max_tokens=96)
                for ex in items]
    replies = teacher.generate(requests, on_item=lambda i, c: progress.step())
    progress.end()
    rows: list[dict[str, Any]] = []
    for ex, reply in zip(items, replies, strict=True):
        answer = reply.data.answer if reply.ok and reply.data is not None else ""  # type: ignore[attr-defined]
        rows.append({"item_id": ex.id, "reference": ex.output, "answer": answer,
                     "score": scorer.score(answer, ex.output) if answer else 0.0})
    accuracy = sum(r["score"] for r in rows) / len(rows) if rows else 0.0
    return CheckResult("teacher", accuracy, baseline, margin, len(rows), rows, against)


def solve_messages(task: TaskConfig, text: str) -> tuple[dict[str, str], ...]:
    return render("solve", task_description=task.description or task.name,
                  answer_format=task.answer_format or "as in the examples", input=text)


def check_judge(judge: Generator, items: Sequence[Example], task: TaskConfig, scorer: Scorer,
                train: Sequence[Example], *, margin: float, seed: int, report: Reporter = silent,
                round_: int | None = None) -> CheckResult:
    """Each item graded with its reference and with a wrong answer; told apart when the
    reference scores strictly higher (a judge that gives everything 5 tells nothing apart)."""
    rng = random.Random(seed)
    maybe = [(ex, wrong_answer(ex, scorer, train, rng)) for ex in items]
    pairs = [(ex, w) for ex, w in maybe if w is not None]
    progress = StageProgress(report, "judge check", round_, 2 * len(pairs))
    requests = [ChatRequest(judge_messages(task, ex.input, answer), schema=JudgeReply, temperature=0.0,
                            max_tokens=120)
                for ex, wrong in pairs for answer in (ex.output, wrong)]
    replies = judge.generate(requests, on_item=lambda i, c: progress.step())
    progress.end()
    rows: list[dict[str, Any]] = []
    for i, (ex, wrong) in enumerate(pairs):
        good, bad = (_score(replies[2 * i]), _score(replies[2 * i + 1]))
        rows.append({"item_id": ex.id, "wrong": wrong, "score_reference": good, "score_wrong": bad,
                     "told_apart": good is not None and bad is not None and good > bad})
    accuracy = sum(r["told_apart"] for r in rows) / len(rows) if rows else 0.0
    return CheckResult("judge", accuracy, 0.5, margin, len(rows), rows)


def judge_messages(task: TaskConfig, text: str, answer: str) -> tuple[dict[str, str], ...]:
    return render("judge", task_description=task.description or task.name,
                  answer_format=task.answer_format or "as in the examples", input=text, output=answer)


def _score(reply: Any) -> int | None:
    return int(reply.data.score) if reply.ok and reply.data is not None else None


def wrong_answer(ex: Example, scorer: Scorer, train: Sequence[Example], rng: random.Random) -> str | None:
    """A plausible wrong answer: another label or letter, a shifted number, or another item's
    reference that the scorer does not count as right."""
    kind = scorer.cfg.kind
    if kind == "numeric":
        from .scoring import last_number

        value = last_number(ex.output)
        if value is None:
            return None
        shifted = value + rng.choice([-1, 1]) * max(1, round(abs(value) * 0.5))
        return f"{shifted:g}"
    others = [o.output for o in train if o.id != ex.id]
    if kind in ("label", "choice"):
        options = scorer.options([o.output for o in train])
        others = options + others
    rng.shuffle(others)
    for other in others:
        if kind == "judge" or scorer.score(other, ex.output) == 0:
            return other
    return None


def standalone(cfg: Config, *, report: Reporter = silent, baseline: float | None = None) -> list[CheckResult]:
    """`pada teacher check CONFIG`: the same items and prompts a run's check uses. Without a
    run's round-0 score to set beside it, the baseline is the untrained student on validation
    (lower than a trained one: a teacher that passes here may still fail inside a run)."""
    from .engines import Engines
    from .evaluate import accuracy, evaluate
    from .loop import preflight
    from .seeds import derive

    p = preflight(cfg)
    engines = Engines(cfg, p.trainer, report)
    try:
        against = "the student {:.0f}% on validation (given)"
        if baseline is None:
            against = "the untrained student {:.0f}% on validation; a run compares with its round-0 model"
            rows = evaluate(engines.student(None), p.splits.validation, cfg.task, p.scorer, options=p.options,
                            report=report, stage="eval validation (zero-shot)")
            baseline = accuracy(rows) or 0.0
        seed = derive(cfg.loop.seed, "teacher_check", 0)  # the items a run's check uses
        items = pick(p.splits.train, cfg.quality.teacher_check or 32, seed)
        checks = [check_teacher(engines.teacher(), items, cfg.task, p.scorer, baseline=baseline,
                                margin=cfg.quality.teacher_margin, report=report, against=against)]
        if cfg.models.judge is not None:
            checks.append(check_judge(engines.judge(), items, cfg.task, p.scorer, p.splits.train,
                                      margin=cfg.quality.teacher_margin,
                                      seed=derive(cfg.loop.seed, "judge_check", 0), report=report))
        return checks
    finally:
        engines.close()
