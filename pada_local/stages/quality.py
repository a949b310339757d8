"""Quality Control Agent: a verdict and a reason for every candidate. The teacher is not
trusted: cheap deterministic checks run first, then answer confirmation and the judge.

Order: unparseable (or copies the prompt) -> wrong format -> contamination (near-duplicate of a
validation/test item) -> duplicate (of D_train or the accepted pool) -> answer not confirmed -> judge
score.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import ChatRequest, Completion, Embedder, Generator
from ..config import QualityConfig, TaskConfig
from ..events import Reporter, StageProgress, silent
from ..leakage import LeakGuard
from ..prompts import (
    GradeReply,
    JudgeReply,
    SolveReply,
    grade_messages,
    judge_messages,
    solve_messages,
    student_messages,
)
from ..records import Candidate, Example, Job, Reason, Trust, Verdict
from ..scoring import Scorer, offered_letters
from ..textsim import NgramIndex
from .arith import ArithError, integer_answers, solve
from .balance import LabelMix, keep_label_mix

# Words of the generation prompts (prompts/generate_*.txt) a weak teacher copies into a sample's
# input, e.g. "Calculate 226512 / 726 = (correct answer: 312; the student said: 226512)".
PROMPT_ECHOES = ("the student said", "the student answered", "correct answer:", "write one new example",
                 "its correct answer must be", "the student has this weakness")


@dataclass
class _Reference:
    """Texts a candidate is compared with: lexical index plus embeddings."""

    index: NgramIndex[str]
    embeddings: Any
    labels: list[str] = field(default_factory=list)

    def nearest(self, text: str, vector: Any, cfg: QualityConfig) -> tuple[str, float] | None:
        key, score = self.index.best(text)
        if key is not None and score >= cfg.dup_ngram:
            return key, score
        if self.embeddings is None or len(self.labels) == 0:
            return None
        sims = self.embeddings @ vector
        best = int(sims.argmax())
        return (self.labels[best], float(sims[best])) if sims[best] >= cfg.dup_cosine else None

    def add(self, label: str, text: str, vector: Any) -> None:
        import numpy as np

        self.index.add(label, text)
        self.labels.append(label)
        self.embeddings = vector[None, :] if self.embeddings is None else np.vstack([self.embeddings, vector])


def _reference(embedder: Embedder, items: Sequence[tuple[str, str]]) -> _Reference:
    labels = [label for label, _ in items]
    vectors = embedder.embed([text for _, text in items]) if items else None
    return _Reference(NgramIndex(items), vectors, labels)


class QualityControl:
    def __init__(self, *, teacher: Generator, judge: Generator, embedder: Embedder, scorer: Scorer,
                 task: TaskConfig, cfg: QualityConfig, train: Sequence[Example], held_out: Sequence[Example],
                 pool: Sequence[tuple[str, str]], verifier: Callable[[str], str | None] | None,
                 guard: LeakGuard | None = None, trust: Trust | None = None,
                 student_p: Mapping[str, float] | None = None) -> None:
        self.teacher, self.judge, self.embedder = teacher, judge, embedder
        self.student_p = student_p or {}  # candidate key -> the student's share for its chosen label
        self.scorer, self.task, self.cfg, self.verifier = scorer, task, cfg, verifier
        self.trust = trust if trust is not None else Trust()
        self._replies: dict[tuple[str, str], Completion] = {}  # asked ahead (see _prefetch)
        self.integers = integer_answers([ex.output for ex in train])
        # (an echo the task's own inputs also contain is the task's wording, not a copy)
        self.echoes = [e for e in PROMPT_ECHOES if not any(e in ex.input.lower() for ex in train)]
        self.options_needed = _options_laid_out(task, scorer, train)
        self.guard = guard if guard is not None else LeakGuard(held_out, near=cfg.dup_ngram)
        self.held_out = _reference(embedder, [(f"{ex.split} item {ex.id}", ex.input) for ex in held_out])
        self.known = _reference(embedder, [(f"train item {ex.id}", ex.input) for ex in train]
                                + [(f"sample {key}", text) for key, text in pool])

    def review(self, candidates: Sequence[Candidate], *, report: Reporter = silent,
               round_: int | None = None) -> list[Verdict]:
        progress = StageProgress(report, "quality", round_, len(candidates))
        vectors = self.embedder.embed([c.input or " " for c in candidates])
        self._prefetch(candidates, vectors)
        verdicts = []
        for cand, vector in zip(candidates, vectors, strict=True):  # one vector per candidate
            verdict = self._review_one(cand, vector)
            if verdict.accepted:
                self.known.add(f"sample {cand.key}", cand.input, vector)  # later duplicates are rejected
            verdicts.append(verdict)
            progress.step()
        progress.end()
        return verdicts

    # -- a server answers many requests at once: ask them all first, decide in order after

    def _prefetch(self, candidates: Sequence[Candidate], vectors: Any) -> None:
        """With a teacher (or judge) behind a server, send every re-solve, then every judge request,
        that the ordered review could need, in one batch each. The review then decides in key
        order from these replies, exactly as it would asking one by one; a candidate the ordered
        pass rejects first (a duplicate of a sample accepted before it) wastes its request."""
        self._replies.clear()
        if not _parallel(self.teacher) and not _parallel(self.judge):
            return
        needs = [c for c, v in zip(candidates, vectors, strict=True)
                 if self._cheap_checks(c, v) is None and self._asks_teacher(c)]
        first = "grade" if self.task.scorer.kind == "judge" else "solve"
        self._ask_all(first, needs)
        if first == "solve" and self.cfg.judge and self.trust.judge:
            agreed = [c for c in needs if self._agrees(self._replies[("solve", c.key)], c)]
            self._ask_all("judge", agreed)

    def _asks_teacher(self, cand: Candidate) -> bool:
        return self.cfg.confirm_answer and self.trust.teacher and not self._answer_decided(cand)

    def _answer_decided(self, cand: Candidate) -> bool:
        """The task verifier or the arithmetic evaluator decides this sample's answer."""
        if cand.expression is not None:
            return True
        return self.verifier is not None and self.verifier(cand.input) is not None

    def _ask_all(self, kind: str, cands: Sequence[Candidate]) -> None:
        gen = self.teacher if kind == "solve" else self.judge
        if cands and _parallel(gen):
            replies = gen.generate([self._request(kind, c) for c in cands])
            self._replies.update({(kind, c.key): r for c, r in zip(cands, replies, strict=True)})

    def _ask(self, kind: str, cand: Candidate) -> Completion:
        found = self._replies.pop((kind, cand.key), None)
        if found is not None:
            return found
        gen = self.teacher if kind == "solve" else self.judge
        return gen.generate([self._request(kind, cand)])[0]

    def _request(self, kind: str, cand: Candidate) -> ChatRequest:
        # The same prompts the teacher check measures the teacher (and judge) with.
        if kind == "solve":
            return ChatRequest(solve_messages(self.task, cand.input), schema=SolveReply, temperature=0.0,
                               max_tokens=96)
        if kind == "grade":
            return ChatRequest(grade_messages(self.task, cand.input, cand.output), schema=GradeReply,
                               temperature=0.0, max_tokens=120)
        return ChatRequest(judge_messages(self.task, cand.input, cand.output), schema=JudgeReply,
                           temperature=0.0, max_tokens=120)

    def _agrees(self, reply: Completion, cand: Candidate) -> bool:
        return reply.ok and reply.data is not None and \
            self.scorer.score(reply.data.answer, cand.output) > 0  # type: ignore[attr-defined]

    # -- one candidate

    def _review_one(self, cand: Candidate, vector: Any) -> Verdict:
        cheap = self._cheap_checks(cand, vector)
        if cheap is not None:
            return Verdict(cand.key, *cheap)
        confirm = self._confirm(cand)
        # The verifier's (and the evaluator's) word is final; the judge is for the rest, and only
        # when its check showed it can tell a right answer from a wrong one.
        final = self._answer_decided(cand)
        if not confirm.accepted or not self.cfg.judge or final or not self.trust.judge:
            return confirm
        return self._judge(cand, confirm)

    def _cheap_checks(self, cand: Candidate, vector: Any) -> tuple[Reason, str] | None:
        if cand.parse_error is not None:
            return Reason.UNPARSEABLE, f"unparseable: {cand.parse_error}"
        if not cand.input.strip():  # e.g. the teacher wrote only "Question:", which is stripped
            return Reason.UNPARSEABLE, "unparseable: empty input"
        echo = next((e for e in self.echoes if e in cand.input.lower()), None)
        if echo is not None:
            return Reason.COPIES_PROMPT, f"copies the prompt: the input contains {echo!r}"
        problem = self.scorer.format_problem(cand.output) or self._options_problem(cand)
        if problem is not None:
            return Reason.WRONG_FORMAT, f"wrong format: {problem}"
        hit = self.held_out.nearest(cand.input, vector, self.cfg)
        if hit is not None:
            return Reason.CONTAMINATION, f"contamination: near-duplicate of {hit[0]} ({hit[1]:.2f})"
        leaks = self.guard.find(f"{cand.input}\n{cand.output}")
        if leaks:  # the same test the loop's last line of defence applies
            leak = leaks[0]
            return Reason.CONTAMINATION, f"contamination: contains {leak.split} item {leak.item_id} " \
                f"({leak.how})"
        hit = self.known.nearest(cand.input, vector, self.cfg)
        if hit is not None:
            return Reason.DUPLICATE, f"duplicate of {hit[0]} ({hit[1]:.2f})"
        return None

    def _options_problem(self, cand: Candidate) -> str | None:
        """A choice task whose inputs lay out their options: a sample must offer its own answer."""
        if not self.options_needed:
            return None
        letter = self.scorer.extract(cand.output)
        offered = offered_letters(cand.input, self.task.scorer.choices)
        if letter not in offered:
            return f"the input lays out no option {letter}, its answer"
        if len(offered) < self.options_needed:
            return (f"the input lays out only option{'s' * (len(offered) > 1)} {', '.join(sorted(offered))}; "
                    f"every train item lays out at least {self.options_needed}")
        return None

    def _confirm(self, cand: Candidate) -> Verdict:
        """A task verifier decides when it can read the input; else the teacher re-solves it."""
        expected = self.verifier(cand.input) if self.verifier is not None else None
        if expected is not None:
            if self.scorer.score(cand.output, expected) > 0:
                return _accept(cand, "accepted: task verifier confirms the answer")
            if self.cfg.verifier_fixes_answer:
                return _accept(cand, f"accepted: task verifier corrected the answer "
                               f"(teacher wrote {cand.output[:40]!r})", output=expected)
            return _not_confirmed(cand, f"answer not confirmed: the verifier expects {expected!r}")
        if cand.expression is not None:
            return self._computed(cand)
        if not self.cfg.confirm_answer:
            return _accept(cand, "accepted")
        if not self.trust.teacher:
            return self._unconfirmed(cand)
        return self._teacher_confirms(cand)

    def _computed(self, cand: Candidate) -> Verdict:
        """Numeric samples: the answer is what the teacher's expression computes."""
        try:
            done = solve(cand.expression or "", cand.input, self.integers)
        except ArithError as err:
            return _reject(cand, Reason.NOT_COMPUTED, f"answer not computed: {err}")
        if self.scorer.score(cand.output, done.answer) > 0:
            return _accept(cand, f"accepted: computed answer {done.answer} = {done.expression}",
                           output=done.answer)
        if self.cfg.verifier_fixes_answer:
            return _accept(cand, f"accepted: computed answer {done.answer} = {done.expression} "
                           f"(teacher wrote {cand.output[:40]!r})", output=done.answer)
        return _not_confirmed(cand, f"answer not confirmed: {done.expression} = {done.answer}, "
                       f"the teacher wrote {cand.output[:40]!r}")

    def _unconfirmed(self, cand: Candidate) -> Verdict:
        """The teacher failed its check: its re-solve decides nothing. A label the job chose
        first stands as written (quality.unconfirmed = keep), or when the previous round's student
        finds it likely enough (= student); any other answer is rejected."""
        if cand.target is not None and self.cfg.unconfirmed == "keep":
            return _accept(cand, "accepted: label chosen first (unconfirmed: the teacher is "
                           "not checked better than the student)")
        if cand.target is not None and self.cfg.unconfirmed == "student":
            return self._student_agrees(cand, cand.target)
        why = self.trust.why or "the teacher check failed"
        return _not_confirmed(cand, f"answer not confirmed: {why}")

    def _student_agrees(self, cand: Candidate, label: str) -> Verdict:
        """ZeroGen/SuperGen-style filter: keep a sample whose chosen label the student itself
        already finds likely; it adds consistent data, not a label the student cannot check."""
        p, least = self.student_p.get(cand.key), self.cfg.student_confidence
        if p is None:
            return _not_confirmed(cand, "answer not confirmed: the student did not score it")
        if p >= least:
            return _accept(cand, f"accepted: label chosen first, the student agrees "
                           f"(p({label}) {p:.2f} >= {least:g})")
        doubt = f"student doubts the label: p({label}) {p:.2f} < {least:g}"
        return _reject(cand, Reason.STUDENT_DOUBTS, doubt)

    def _teacher_confirms(self, cand: Candidate) -> Verdict:
        if self.task.scorer.kind == "judge":  # no extractable answer to compare: the judge grades it
            return self._judge_confirms(cand)
        reply = self._ask("solve", cand)
        if not reply.ok or reply.data is None:
            invalid = "answer not confirmed: the teacher's re-solve was invalid"
            return _not_confirmed(cand, invalid, None, (reply,))
        answer = reply.data.answer  # type: ignore[attr-defined]
        if self.scorer.score(answer, cand.output) > 0:
            return _accept(cand, "accepted: the teacher's re-solve agrees", None, (reply,))
        why = f"answer not confirmed: the teacher re-solved it as {answer[:60]!r}"
        return _not_confirmed(cand, why, None, (reply,))

    def _judge_confirms(self, cand: Candidate) -> Verdict:
        """For judge-scored tasks: the judge grades the candidate's answer under the task's rubric."""
        reply = self._ask("grade", cand)
        if not reply.ok or not isinstance(reply.data, GradeReply):
            return _not_confirmed(cand, "answer not confirmed: the judge's grade was invalid", None, (reply,))
        if reply.data.correct:
            return _accept(cand, "accepted: the judge grades the answer correct", None, (reply,))
        why = f"answer not confirmed: the judge grades it wrong: {reply.data.reason[:100]}"
        return _not_confirmed(cand, why, None, (reply,))

    def _judge(self, cand: Candidate, confirmed: Verdict) -> Verdict:
        reply = self._ask("judge", cand)
        spent = confirmed.completions + (reply,)
        if not reply.ok or reply.data is None:
            return _reject(cand, Reason.JUDGE_INVALID, "judge reply invalid", None, spent)
        score, why = reply.data.score, reply.data.reason  # type: ignore[attr-defined]
        if score < self.cfg.judge_threshold:
            low = f"judge score {score} < {self.cfg.judge_threshold}: {why[:120]}"
            return _reject(cand, Reason.JUDGE_LOW, low, score, spent)
        return _accept(cand, f"{confirmed.reason}; judge score {score}", score, spent)


def unconfirmable(cfg: QualityConfig, trust: Trust, has_verifier: bool, jobs: Sequence[Job]) -> str | None:
    """Why no sample these jobs make could be accepted, or None when one could: a teacher that
    failed its check, no task verifier, no computed answers, and `quality.unconfirmed: reject`
    (or jobs that chose no label) leave nothing that can confirm an answer."""
    if trust.teacher or has_verifier or not cfg.confirm_answer or any(j.computed for j in jobs):
        return None
    if cfg.unconfirmed != "reject" and any(j.target is not None for j in jobs):
        return None
    return (f"{trust.why or 'the teacher check failed'}; no task verifier and no computed answers, and "
            f"quality.unconfirmed is {cfg.unconfirmed}")


def review_round(qc: QualityControl, candidates: Sequence[Candidate], mix: LabelMix | None, *,
                 report: Reporter = silent, round_: int | None = None
                 ) -> tuple[list[Verdict], dict[str, Any]]:
    """A round's verdicts (in the order given) with the label mix kept, and what to record of
    them: counts, rejections by kind, the label mix."""
    verdicts = qc.review(candidates, report=report, round_=round_)
    detail: dict[str, Any] = {}
    if mix is not None:
        outputs = {c.key: c.output for c in candidates}
        verdicts, detail = keep_label_mix(verdicts, outputs, mix, report=report, round_=round_)
    n_ok = sum(v.accepted for v in verdicts)
    return verdicts, {"accepted": n_ok, "rejected": len(verdicts) - n_ok, "reasons": reason_counts(verdicts),
                      **detail}


def reason_counts(verdicts: Sequence[Verdict]) -> dict[str, int]:
    """Verdicts counted by kind (every duplicate is a duplicate, whatever it duplicates)."""
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.kind.value] = counts.get(v.kind.value, 0) + 1
    return counts


def _accept(cand: Candidate, why: str, *args: Any, **kwargs: Any) -> Verdict:
    return Verdict(cand.key, Reason.ACCEPTED, why, *args, **kwargs)


def _not_confirmed(cand: Candidate, why: str, *args: Any, **kwargs: Any) -> Verdict:
    return Verdict(cand.key, Reason.NOT_CONFIRMED, why, *args, **kwargs)


def _reject(cand: Candidate, kind: Reason, why: str, *args: Any, **kwargs: Any) -> Verdict:
    return Verdict(cand.key, kind, why, *args, **kwargs)


def _options_laid_out(task: TaskConfig, scorer: Scorer, train: Sequence[Example]) -> int:
    """For a choice task whose D_train inputs lay out lettered options, the answer's among them
    (nine in ten at least), the fewest options one lays out; else 0: no check. A weak teacher
    often writes a bare statement for a letter ("The SI unit of mass is the kilogram." as C)."""
    if task.scorer.kind != "choice" or not train:
        return 0
    counts = [len(offered) for ex in train
              if scorer.extract(ex.output) in (offered := offered_letters(ex.input, task.scorer.choices))]
    return min(counts) if len(counts) >= 0.9 * len(train) else 0


def _parallel(gen: Generator) -> bool:
    """A generator that answers several requests at once (a server with concurrency > 1)."""
    return int(getattr(gen, "concurrency", 1)) > 1


def student_confidence(student: Any, task: TaskConfig, scorer: Scorer, candidates: Sequence[Candidate],
                       options: Sequence[str], *, report: Reporter = silent,
                       round_: int | None = None) -> dict[str, float]:
    """Per label-first candidate: the share of probability the student gives its chosen label
    among the task's options (per-token log-likelihood, as evaluation weighs options, renormalised)."""
    todo = [c for c in candidates if c.target is not None and c.parse_error is None and c.input.strip()]
    if not todo:
        return {}
    requests = [ChatRequest(student_messages(task, c.input), max_tokens=1) for c in todo]
    progress = StageProgress(report, "quality (student confidence)", round_, len(todo))
    found = student.score_options(requests, options, on_item=lambda *_: progress.step())
    progress.end()
    out = {}
    for c, got in zip(todo, found, strict=True):
        top = max(got.per_token)  # shifted before exp: log-probabilities of long labels underflow
        weights: dict[str | None, float] = {}
        for option, value in zip(got.options, got.per_token, strict=True):
            weights[scorer.extract(option)] = math.exp(value - top)
        out[c.key] = weights.get(scorer.extract(c.target or ""), 0.0) / sum(weights.values())
    return out
