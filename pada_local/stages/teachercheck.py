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

from ..backends.base import ChatRequest, Generator
from ..config import TaskConfig
from ..events import Reporter, StageProgress, silent
from ..prompts import GradeReply, JudgeReply, SolveReply, grade_messages, judge_messages, solve_messages
from ..records import Example, Trust
from ..scoring import Scorer
from ..seeds import derive


@dataclass(frozen=True)
class CheckResult:
    role: str  # "teacher" (solves items) or "judge" (tells a reference from a wrong answer)
    accuracy: float  # share solved / share told apart
    baseline: float  # the student's validation accuracy, or 0.5 (chance) for the judge
    margin: float  # points the accuracy must clear the baseline by
    n: int
    items: list[dict[str, Any]] = field(default_factory=list)
    against: str = "student {:.0f}% on validation after round 0"  # how the baseline reads

    sound: float | None = None  # an accuracy (%) that passes whatever the baseline

    @property
    def required(self) -> float:
        """Points to reach: the margin above the baseline, or `sound` where that is lower. With a
        student at 97% no teacher can be 5 points better, yet one right on 31 of 32 items is a
        sound re-solver: the check exists to stop weak teachers, not to stop strong students."""
        wanted = 100 * self.baseline + self.margin
        return wanted if self.sound is None else min(wanted, self.sound)

    @property
    def trusted(self) -> bool:
        return self.n > 0 and 100 * self.accuracy >= self.required

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
                "margin": self.margin, "sound": self.sound, "n": self.n, "trusted": self.trusted,
                "line": self.line(), "against": self.against, "items": self.items}


def run_checks(teacher: Generator, judge: Generator | None, train: Sequence[Example], task: TaskConfig,
               scorer: Scorer, *, n: int, seed: int, baseline: float, margin: float,
               sound: float | None = None, against: str = "student {:.0f}% on validation after round 0",
               report: Reporter = silent, round_: int | None = None) -> list[CheckResult]:
    """The teacher check (and a separate judge's), as a run and `pada teacher check` both run it:
    the same seeded train items (purpose "teacher_check"), prompts and scorer."""
    items = pick(train, n, derive(seed, "teacher_check", 0))
    if task.scorer.kind == "judge":  # no answer to solve for: the grader is what decides, check it
        return [check_grader(judge or teacher, items, task, scorer, train, margin=margin,
                             seed=derive(seed, "judge_check", 0), report=report, round_=round_)]
    checks = [check_teacher(teacher, items, task, scorer, baseline=baseline, margin=margin, sound=sound,
                            report=report, round_=round_, against=against)]
    if judge is not None:
        checks.append(check_judge(judge, items, task, scorer, train, margin=margin,
                                  seed=derive(seed, "judge_check", 0), report=report, round_=round_))
    return checks


def trust_of(detail: dict[str, Any]) -> Trust:
    """What a stored check allows (a judge without its own check is the teacher; on a judge-scored
    task the judge's grades are all that confirms, so its check stands for both)."""
    judge = from_stats(detail["judge"]) if "judge" in detail else None
    teacher = from_stats(detail["teacher"]) if "teacher" in detail else judge
    assert teacher is not None, "a stored teacher check has a teacher or a judge"
    judge = judge or teacher
    return Trust(teacher.trusted, judge.trusted, teacher.line())


def from_stats(detail: dict[str, Any]) -> CheckResult:
    return CheckResult(detail["role"], detail["accuracy"], detail["baseline"], detail["margin"],
                       detail["n"], detail.get("items", []), detail.get("against", CheckResult.against),
                       detail.get("sound"))


def pick(train: Sequence[Example], n: int, seed: int) -> list[Example]:
    return random.Random(seed).sample(list(train), min(n, len(train)))


def check_teacher(teacher: Generator, items: Sequence[Example], task: TaskConfig, scorer: Scorer, *,
                  baseline: float, margin: float, sound: float | None = None, report: Reporter = silent,
                  round_: int | None = None, against: str = CheckResult.against) -> CheckResult:
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
    return CheckResult("teacher", accuracy, baseline, margin, len(rows), rows, against, sound)


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


def check_grader(judge: Generator, items: Sequence[Example], task: TaskConfig, scorer: Scorer,
                 train: Sequence[Example], *, margin: float, seed: int, report: Reporter = silent,
                 round_: int | None = None) -> CheckResult:
    """A judge-scored task's grader: each item graded under the rubric with its own reference
    (known right) and with another item's reference (known wrong); told apart when it calls the
    first correct and the second not. Its grades confirm samples only when it tells them apart
    clearly more often than chance."""
    rng = random.Random(seed)
    maybe = [(ex, wrong_answer(ex, scorer, train, rng)) for ex in items]
    pairs = [(ex, w) for ex, w in maybe if w is not None]
    progress = StageProgress(report, "judge check", round_, 2 * len(pairs))
    requests = [ChatRequest(grade_messages(task, ex.input, answer), schema=GradeReply, temperature=0.0,
                            max_tokens=120) for ex, wrong in pairs for answer in (ex.output, wrong)]
    replies = judge.generate(requests, on_item=lambda i, c: progress.step())
    progress.end()
    rows: list[dict[str, Any]] = []
    for i, (ex, wrong) in enumerate(pairs):
        right, wrong_ok = _correct(replies[2 * i]), _correct(replies[2 * i + 1])
        rows.append({"item_id": ex.id, "wrong": wrong, "reference_correct": right, "wrong_correct": wrong_ok,
                     "told_apart": right is True and wrong_ok is False})
    accuracy = sum(r["told_apart"] for r in rows) / len(rows) if rows else 0.0
    return CheckResult("judge", accuracy, 0.5, margin, len(rows), rows)


def _correct(reply: Any) -> bool | None:
    return bool(reply.data.correct) if reply.ok and isinstance(reply.data, GradeReply) else None


def _score(reply: Any) -> int | None:
    return int(reply.data.score) if reply.ok and reply.data is not None else None


def wrong_answer(ex: Example, scorer: Scorer, train: Sequence[Example], rng: random.Random) -> str | None:
    """A plausible wrong answer: another label or letter, a shifted number, or another item's
    reference that the scorer does not count as right."""
    kind = scorer.cfg.kind
    if kind == "numeric":
        from ..scoring import last_number

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
