"""A weak teacher cannot spoil the data: computed answers, label-first jobs, the label balance,
and the teacher check that decides whether a teacher's re-solve or grade may confirm a sample.

The rules around the teacher are tested with scripted replies (what the rule does with a reply
is the point); the real llama.cpp teacher runs them end to end in the slow test at the bottom.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pada_local.backends.base import ChatRequest, Completion
from pada_local.config import QualityConfig, ScorerConfig, TaskConfig
from pada_local.ledger.runs import Ledger
from pada_local.prompts import ComputedReply, InputReply, JudgeReply, SampleReply, SolveReply
from pada_local.records import Candidate, EvalRow, Example, Job, Pattern, Trust
from pada_local.scoring import Scorer
from pada_local.stages.arith import ArithError, compute, foreign_numbers, integer_answers, solve
from pada_local.stages.balance import LabelMix, distribution, plan_targets, rebalance, tv_distance
from pada_local.stages.generate import Answers, _candidate, job_messages, plan_jobs, reply_schema
from pada_local.stages.quality import QualityControl
from pada_local.stages.teachercheck import CheckResult, check_judge, check_teacher, from_stats, wrong_answer

LABEL_TASK = TaskConfig(name="sentiment", description="Decide whether a review is positive or negative.",
                        answer_format="positive or negative",
                        scorer=ScorerConfig(kind="label", labels=["positive", "negative"]))
NUMERIC_TASK = TaskConfig(name="math", description="Word problems.", answer_format="a number",
                          scorer=ScorerConfig(kind="numeric", tolerance=1e-6))


# ---------------------------------------------------------------- computed answers


@pytest.mark.parametrize("expr, value", [("(12 + 30) * 2", 84), ("7 // 2", 3), ("2 ** 10", 1024),
                                         ("-3 + 5 % 3", -1), ("1.5 * 4", 6), ("10 \u00f7 4", 2.5)])
def test_compute_evaluates_arithmetic(expr: str, value: float) -> None:
    assert compute(expr) == pytest.approx(value)


@pytest.mark.parametrize("expr, why", [
    ("__import__('os').system('true')", "not allowed"), ("x + 1", "not allowed"),
    ("1 / 0", "division by zero"),
    ("5 % 0", "division by zero"), ("9 ** 9 ** 9", "exponent"), ("10 ** 13", "out of bounds"),
    ("(1, 2)", "not allowed"), ("1 +", "not arithmetic"), ("", "empty"), ("True + 1", "not allowed"),
    ("[1][0]", "not allowed"), ("1" * 300, "longer than"),
])
def test_compute_refuses_what_is_not_bounded_arithmetic(expr: str, why: str) -> None:
    with pytest.raises(ArithError, match=why):
        compute(expr)


def test_expression_numbers_must_come_from_the_question() -> None:
    question = "Ann has 1,200 stamps and gives away 40% of them, then buys 35 more."
    assert foreign_numbers("1200 - 1200 * 0.4 + 35", question) == []
    assert foreign_numbers("1200 * 40 / 100 + 35", question) == []  # 100: a unit constant
    assert foreign_numbers("1200 + 17", question) == [17.0]
    with pytest.raises(ArithError, match="17"):
        solve("1200 + 17", question, integers=True)


def test_what_teachers_write_around_an_expression_is_tidied() -> None:
    question = "Tom pays $1,200 for 3 chairs. How much is one chair?"
    assert solve("$1,200 / 3 = 400.", question, integers=True).answer == "400"
    assert solve("1200 / 3.", question, integers=True).answer == "400"
    with pytest.raises(ArithError, match="not '300'"):
        solve("1200 / 3 = 300", question, integers=True)  # its own result disagrees
    with pytest.raises(ArithError, match="not arithmetic"):
        solve(");", question, integers=True)


def test_an_expression_must_compute_something_from_the_question() -> None:
    question = "Calculate 3674471 / 11 ="
    with pytest.raises(ArithError, match="computes nothing"):
        solve("3674471", question, integers=False)  # seen: the question's number as "the answer"
    with pytest.raises(ArithError, match="computes nothing"):
        solve("(3674471)", question, integers=False)
    with pytest.raises(ArithError, match="leaves out 11"):
        solve("3674471 / 1", question, integers=False)
    with pytest.raises(ArithError, match="leaves out 312"):
        solve("226512 / 726", "Calculate 226512 / 726 = (correct answer: 312)", integers=True)
    with pytest.raises(ArithError, match="only a number"):
        solve("50 * 2", "50", integers=True)
    assert solve("3 * 60", "How many minutes are in 3 hours?", integers=True).answer == "180"
    assert solve("-3674471 / 11", question, integers=False).answer.startswith("-334042.8")
    assert solve("1200 * 0.4", "What is 40% of 1,200?", integers=True).answer == "480"


def test_the_answer_takes_the_references_form() -> None:
    assert integer_answers(["42", "7", "1,000"]) and not integer_answers(["2.5", "3"])
    assert solve("12 / 4", "12 apples in 4 bags", integers=True).answer == "3"
    with pytest.raises(ArithError, match="whole number"):
        solve("10 / 4", "10 apples in 4 bags", integers=True)
    assert solve("10 / 4", "10 apples in 4 bags", integers=False).answer == "2.5"


# ---------------------------------------------------------------- the label balance


def test_rebalance_drops_surplus_until_within_the_bound() -> None:
    train = ["pos"] * 50 + ["neg"] * 50
    new = [(f"p{i}", "pos") for i in range(40)] + [("n0", "neg")]
    found = rebalance(train, [], new, 0.1, seed=3)
    assert found.before > 0.1 >= found.after
    assert set(found.dropped.values()) == {"pos"}  # only the surplus label loses samples
    kept = Counter(["pos"] * 50 + ["neg"] * 50 + [lab for k, lab in new if k not in found.dropped])
    assert tv_distance(distribution(list(kept.elements())), distribution(train)) == pytest.approx(found.after)
    # The fewest drops: one fewer would break the bound.
    assert len(found.dropped) == len(rebalance(train, [], new, 0.1, seed=9).dropped)
    assert found.dropped != rebalance(train, [], new, 0.1, seed=9).dropped  # the seed picks which
    assert found.dropped == rebalance(train, [], new, 0.1, seed=3).dropped


def test_rebalance_keeps_earlier_rounds_and_a_balanced_round() -> None:
    train = ["a"] * 30 + ["b"] * 30
    balanced = [(f"a{i}", "a") for i in range(10)] + [(f"b{i}", "b") for i in range(10)]
    assert rebalance(train, [], balanced, 0.1, seed=0).dropped == {}
    # Earlier rounds tilted the set: this round can only drop its own samples.
    found = rebalance(train, ["a"] * 40, [("x", "a"), ("y", "b")], 0.1, seed=0)
    assert set(found.dropped) == {"x"} and found.after > 0.1


def test_plan_targets_moves_what_the_balance_would_drop_to_the_labels_under_their_share() -> None:
    train = ["a"] * 25 + ["b"] * 25 + ["c"] * 25 + ["d"] * 25
    planned = [(f"j{i}", "a", "b" if i % 2 else None) for i in range(40)] + [("k0", "c", None)]
    moved = plan_targets(train, [], planned, 0.1, seed=3)
    dropped = rebalance(train, [], [(k, lab) for k, lab, _ in planned], 0.1, seed=3).dropped
    assert set(moved) == set(dropped)  # exactly the jobs the balance would have dropped move
    mix = Counter(train + [moved.get(k, lab) for k, lab, _ in planned])
    assert tv_distance(distribution(list(mix.elements())), distribution(train)) <= 0.1
    # Each label under its share is filled up to it (b and d from 25 of 141 to 35.25).
    assert Counter(moved.values()) == {"b": 11, "d": 7, "c": 7}
    # A moved error job takes the student's wrong answer while that is under its share, even
    # where another label is further under.
    prefer_c = [(f"j{i}", "a", "c") for i in range(40)]
    assert Counter(plan_targets(train, [], prefer_c, 0.1, seed=3).values())["c"] == 10  # 25 -> 35 of 140
    assert moved == plan_targets(train, [], planned, 0.1, seed=3)
    assert plan_targets(train, [], [("x", "a", None), ("y", "b", None)], 0.1, seed=0) == {}


def test_planned_label_mix_moves_pattern_targets_before_generation() -> None:
    train = _train()  # 5 positive, 5 negative
    patterns = [Pattern(0, "sarcasm", "misses sarcasm", 4, "")]
    behind = {0: ["negative"] * 4}
    labels = [ex.output for ex in train]
    mix = LabelMix(tuple(labels), (), _label_of, 0.1, seed=1)
    tilted = plan_jobs("pada", 1, 10, patterns, [], train, seed=5, answers=Answers("label", _label_of, behind))
    planned = plan_jobs("pada", 1, 10, patterns, [], train, seed=5,
                        answers=Answers("label", _label_of, behind, mix))
    assert Counter(j.target for j in tilted) == {"negative": 10}
    share = Counter(j.target for j in planned)
    assert share["positive"] >= 3  # 10 negatives on 5/5 would be TV 0.25; the plan stays within 0.1
    assert [j.key for j in planned] == [j.key for j in tilted]  # the same jobs, only labels moved


# ---------------------------------------------------------------- label-first jobs


def _train() -> list[Example]:
    return [Example(f"t{i}", f"review number {i} was {'great' if i % 2 else 'awful'}",
                    "positive" if i % 2 else "negative") for i in range(10)]


def _label_of(ref: str) -> str | None:
    return ref.strip().lower() if ref.strip().lower() in ("positive", "negative") else None


def test_label_first_jobs_take_the_labels_behind_their_pattern() -> None:
    train = _train()
    patterns = [Pattern(0, "sarcasm", "misses sarcasm", 4, ""), Pattern(1, "negation", "misses not", 2, "")]
    failures = [EvalRow("t1", "train", train[1].input, "positive", "negative", 0.0)]
    behind = {0: ["negative", "negative", "negative", "positive"], 1: ["positive", "positive"]}
    jobs = plan_jobs("pada", 1, 9, patterns, failures, train, seed=5,
                     answers=Answers("label", _label_of, behind))
    error = [j for j in jobs if j.source == "error"]
    assert error and all(j.target == "positive" for j in error)  # the origin item's label
    by_pattern = {c: Counter(j.target for j in jobs if j.pattern is not None and j.pattern.cluster == c)
                  for c in (0, 1)}
    assert by_pattern[1] == Counter({"positive": by_pattern[1].total()})
    assert by_pattern[0]["negative"] > by_pattern[0]["positive"]  # in proportion: 3 to 1
    again = plan_jobs("pada", 1, 9, patterns, failures, train, seed=5,
                      answers=Answers("label", _label_of, behind))
    assert [j.target for j in again] == [j.target for j in jobs]


def test_computed_mode_marks_every_job_but_paraphrase() -> None:
    train = _train()
    jobs = plan_jobs("paraphrase", 1, 3, [], [], train, seed=1, answers=Answers("computed"))
    assert not any(j.computed for j in jobs)
    failures = [EvalRow("t2", "train", train[2].input, "negative", "positive", 0.0)]
    jobs = plan_jobs("llm2llm", 1, 3, [], failures, train, seed=1, answers=Answers("computed"))
    assert all(j.computed for j in jobs) and reply_schema(jobs[0]) is ComputedReply


def test_the_label_first_prompt_asks_for_an_input_with_the_chosen_label() -> None:
    train = _train()
    job = Job("k", "error", 1, origin=train[2], prediction="positive", target="negative")
    messages = job_messages(job, LABEL_TASK, train, n_exemplars=2)
    assert reply_schema(job) is InputReply
    assert messages[-1]["content"].endswith("Its correct answer must be: negative")
    shots = [m for m in messages[1:-1]]
    for ask, reply in zip(shots[::2], shots[1::2], strict=True):
        shown = json.loads(reply["content"])
        assert set(shown) == {"input"}  # the shot's answer is asked for, as the real request's is
        label = next(ex.output for ex in train if ex.input == shown["input"])
        assert ask["content"].endswith(f"correct answer is: {label}")


def test_the_teacher_text_never_decides_the_label() -> None:
    job = Job("k", "pattern", 1, pattern=Pattern(0, "p", "d", 1, ""), target="negative")
    reply = InputReply(input="Loved every minute of it!")
    cand = _candidate(job, ({"role": "user", "content": "x"},), Completion(reply.model_dump_json(), reply))
    assert cand.output == "negative" and cand.target == "negative"
    # A teacher that answers anyway (a free-form schema) is overruled too.
    job = Job("k2", "paraphrase", 1, origin=_train()[1], target="positive")
    both = SampleReply(input="Great stuff", output="negative")
    cand = _candidate(job, (), Completion(both.model_dump_json(), both))
    assert cand.output == "positive"


# ---------------------------------------------------------------- quality control and trust


class HashEmbedder:
    """Distinct unit vectors per text: duplicate detection is not what these tests are about."""

    def embed(self, texts: list[str]) -> Any:
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest(), dtype=np.uint8).astype(float) - 127.5
                for t in texts]
        out = np.array(rows).reshape(len(texts), 32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class Scripted:
    """Replies as scripted, and counts calls: the point is whether the rule asks at all."""

    supports_schema = True

    def __init__(self, replies: list[Any]) -> None:
        self.replies, self.calls = list(replies), 0

    def generate(self, requests: list[ChatRequest], on_item: Any = None) -> list[Completion]:
        out = []
        for i, _ in enumerate(requests):
            self.calls += 1
            data = self.replies.pop(0)
            out.append(Completion(data.model_dump_json(), data))
            if on_item is not None:
                on_item(i, out[-1])
        return out


def _qc(task: TaskConfig, teacher: Scripted, trust: Trust, train: list[Example],
        **quality: Any) -> QualityControl:
    return QualityControl(teacher=teacher, judge=teacher, embedder=HashEmbedder(),
                          scorer=Scorer(task.scorer), task=task, cfg=QualityConfig(**quality),
                          train=train, held_out=[], pool=[],
                          verifier=None, trust=trust)


def _cand(key: str, text: str, output: str, target: str | None = None,
          expression: str | None = None) -> Candidate:
    return Candidate(key, "pattern", 0, None, text, output, "", None, "", target=target,
                     expression=expression)


def test_an_untrusted_teacher_decides_nothing() -> None:
    teacher = Scripted([])  # any call would fail: pop from an empty list
    qc = _qc(LABEL_TASK, teacher, Trust(False, False, "teacher solved 40%"), _train(), unconfirmed="keep")
    verdicts = qc.review([_cand("a", "An utterly boring film.", "negative", target="negative"),
                          _cand("b", "I adored the cast.", "positive")])
    assert teacher.calls == 0
    assert verdicts[0].accepted and "label chosen first" in verdicts[0].reason
    assert not verdicts[1].accepted and "teacher solved 40%" in verdicts[1].reason
    strict = _qc(LABEL_TASK, teacher, Trust(False, False, "teacher solved 40%"), _train())  # the default
    rejected = strict.review([_cand("c", "Dull and slow.", "negative", target="negative")])[0]
    assert not rejected.accepted and "teacher solved 40%" in rejected.reason


def test_the_student_keeps_only_labels_it_finds_likely() -> None:
    teacher = Scripted([])
    qc = _qc(LABEL_TASK, teacher, Trust(False, False, "teacher solved 40%"), _train(),
             unconfirmed="student", student_confidence=0.6)
    qc.student_p = {"a": 0.9, "b": 0.55}
    sure, doubtful, unscored, free = qc.review([
        _cand("a", "An utterly boring film.", "negative", target="negative"),
        _cand("b", "I adored the cast.", "positive", target="positive"),
        _cand("c", "A fine, quiet drama.", "positive", target="positive"),
        _cand("d", "Loud and long.", "negative")])  # the teacher wrote this label: nothing confirms it
    assert teacher.calls == 0
    assert sure.accepted and "student agrees (p(negative) 0.90 >= 0.6)" in sure.reason
    assert not doubtful.accepted and doubtful.reason.startswith("student doubts the label: p(positive) 0.55")
    assert not unscored.accepted and "did not score" in unscored.reason
    assert not free.accepted and "teacher solved 40%" in free.reason


def test_student_confidence_renormalises_over_the_labels() -> None:
    from pada_local.backends.hf import OptionScores
    from pada_local.stages.quality import student_confidence

    class Weighing:  # stands in for the student's log-likelihoods: the arithmetic is the point
        def score_options(self, requests: list[ChatRequest], options: list[str],
                          on_item: Any = None) -> list[OptionScores]:
            assert options == ["negative", "positive"] and len(requests) == 2
            assert requests[0].messages[-1]["content"] == "Dull."
            rows = [(-0.1, -2.4), (-1500.0, -1501.0)]  # the second would underflow without shifting
            return [OptionScores(tuple(options), lp, (1, 1), (True, False)) for lp in rows]

    cands = [_cand("a", "Dull.", "negative", target="negative"),
             _cand("b", "Grand.", "positive", target="positive"),
             _cand("c", "Teacher-labelled.", "positive")]  # no label chosen first: not weighed
    got = student_confidence(Weighing(), LABEL_TASK, Scorer(LABEL_TASK.scorer), cands,
                             ["negative", "positive"])
    assert set(got) == {"a", "b"}
    assert got["a"] == pytest.approx(1 / (1 + np.exp(-2.3)))
    assert got["b"] == pytest.approx(1 / (1 + np.exp(1.0)))


def test_an_input_that_copies_the_prompt_is_rejected_unless_the_task_writes_so() -> None:
    leaked = _cand("a", "Calculate 226512 / 726 = (correct answer: 312; the student said: 0)", "312",
                   expression="226512 / 726")
    qc = _qc(NUMERIC_TASK, Scripted([]), Trust(True, True), [Example("t0", "Calculate 3 * 4 =", "12")])
    verdict = qc.review([leaked])[0]
    assert not verdict.accepted and verdict.reason.startswith("copies the prompt: the input contains")
    grading = [Example("t0", "Question: 3 * 4. Correct answer: 12. Student: 13. Right?", "no")]
    qc = _qc(LABEL_TASK, Scripted([]), Trust(False, False, "weak"), grading, unconfirmed="keep")
    kept = qc.review([_cand("b", "Question: 2 + 2. Correct answer: 4. Student: 4. Right?", "positive",
                            target="positive")])[0]
    assert kept.accepted  # the task's own inputs say "correct answer:": not a copy of the prompt


CHOICE_TASK = TaskConfig(name="science", description="Pick the right option.", answer_format="A, B, C or D",
                         scorer=ScorerConfig(kind="choice", choices="ABCD"))


def test_a_choice_sample_must_lay_out_its_answer_when_the_task_does() -> None:
    train = [Example(f"t{i}", f"Question {i}?\nA. one\nB. two\nC. three\nD. four", "ABCD"[i % 4])
             for i in range(9)] + [Example("t9", "Question 9? (A) one (B) two (C) three", "B")]
    qc = _qc(CHOICE_TASK, Scripted([]), Trust(False, False, "weak"), train, unconfirmed="keep")
    assert qc.options_needed == 3  # the fewest a train item lays out
    bare, short, wrong, fine = qc.review([
        _cand("a", "The SI unit of mass is a kilogram.", "C", target="C"),
        _cand("b", "Which is a gas?\nA. helium\nB. iron", "B", target="B"),
        _cand("c", "Which is a gas?\nA. helium\nB. iron\nC. salt", "D", target="D"),
        _cand("d", "Which is a metal?\nA) helium\nB) iron\nC) salt\nD) water", "B", target="B")])
    assert bare.reason == "wrong format: the input lays out no option C, its answer"
    assert short.reason == ("wrong format: the input lays out only options A, B; "
                            "every train item lays out at least 3")
    assert wrong.reason == "wrong format: the input lays out no option D, its answer"
    assert fine.accepted, fine.reason
    # A choice task whose inputs do not lay out options (the letters name fixed meanings) has no such rule.
    plain = [Example(f"t{i}", f"Statement {i}.", "AB"[i % 2]) for i in range(10)]
    qc = _qc(CHOICE_TASK, Scripted([]), Trust(False, False, "weak"), plain, unconfirmed="keep")
    assert qc.options_needed == 0
    assert qc.review([_cand("a", "Another statement.", "A", target="A")])[0].accepted


def test_a_trusted_teacher_confirms_a_chosen_label_by_re_solving() -> None:
    teacher = Scripted([SolveReply(answer="positive"), JudgeReply(score=4, reason="fine"),
                        SolveReply(answer="positive")])
    qc = _qc(LABEL_TASK, teacher, Trust(True, True), _train())
    ok, wrong = qc.review([_cand("a", "A joy from start to end.", "positive", target="positive"),
                           _cand("b", "Two hours I will never get back.", "negative", target="negative")])
    assert ok.accepted and "judge score 4" in ok.reason
    assert not wrong.accepted and "re-solved it as 'positive'" in wrong.reason


def test_computed_answers_are_checked_by_the_evaluator_not_the_teacher() -> None:
    teacher = Scripted([])
    train = [Example("t0", "3 boxes of 4 pens", "12")]
    qc = _qc(NUMERIC_TASK, teacher, Trust(True, True), train)
    good, disagrees, foreign, broken = qc.review([
        _cand("a", "Tom has 6 bags with 7 apples each. How many apples?", "42", expression="6 * 7"),
        _cand("b", "Sue reads 12 pages a day for 5 days. How many pages?", "50", expression="12 * 5"),
        _cand("c", "A car goes 30 miles. How far in total?", "47", expression="30 + 17"),
        _cand("d", "Split 9 sweets among 0 kids.", "0", expression="9 / 0"),
    ])
    assert teacher.calls == 0
    assert good.accepted and good.output == "42" and "6 * 7" in good.reason
    assert not disagrees.accepted and "12 * 5 = 60" in disagrees.reason
    assert not foreign.accepted and "17" in foreign.reason
    assert not broken.accepted and "division by zero" in broken.reason
    fixing = _qc(NUMERIC_TASK, teacher, Trust(True, True), train, verifier_fixes_answer=True)
    fixed = fixing.review([_cand("e", "Sue reads 12 pages a day for 5 days.", "50", expression="12 * 5")])[0]
    assert fixed.accepted and fixed.output == "60"


# ---------------------------------------------------------------- the teacher check


def test_the_teacher_check_compares_with_the_students_validation_score() -> None:
    train = _train()[:4]
    teacher = Scripted([SolveReply(answer=ex.output) for ex in train[:3]] + [SolveReply(answer="maybe")])
    found = check_teacher(teacher, train, LABEL_TASK, Scorer(LABEL_TASK.scorer), baseline=0.7, margin=5)
    assert found.accuracy == 0.75 and found.trusted and "75%" in found.line()
    assert not CheckResult("teacher", 0.74, 0.7, 5, 4).trusted  # 4 points better is not 5
    assert "will not decide" in CheckResult("teacher", 0.5, 0.7, 5, 4).line()


def test_a_near_perfect_teacher_passes_even_when_the_student_is_within_the_margin_of_100() -> None:
    def check(accuracy: float, student: float, sound: float | None = 95.0) -> CheckResult:
        return CheckResult("teacher", accuracy, student, 5, 32, sound=sound)

    assert check(31 / 32, 0.97).trusted and check(1.0, 0.99).trusted  # 97% + 5 is out of reach
    assert not check(30 / 32, 0.97).trusted  # 93.75%: neither 95% nor 5 points better
    assert not check(0.9, 0.88).trusted and check(0.94, 0.88).trusted  # below 95% the margin rules
    assert not check(1.0, 0.99, sound=None).trusted  # teacher_pass: null, the margin alone
    assert from_stats(check(31 / 32, 0.97).stats()).trusted  # a stored check reads the same


def test_a_judge_that_likes_everything_tells_nothing_apart() -> None:
    train = _train()[:4]
    scorer = Scorer(LABEL_TASK.scorer)
    lenient = Scripted([JudgeReply(score=5, reason="ok")] * 8)
    assert not check_judge(lenient, train, LABEL_TASK, scorer, train, margin=5, seed=0).trusted
    sharp = Scripted([JudgeReply(score=s, reason="") for _ in train for s in (5, 1)])
    found = check_judge(sharp, train, LABEL_TASK, scorer, train, margin=5, seed=0)
    assert found.accuracy == 1.0 and found.trusted


def test_a_wrong_answer_is_wrong_under_the_scorer() -> None:
    import random

    rng = random.Random(0)
    for ex in _train():
        wrong = wrong_answer(ex, Scorer(LABEL_TASK.scorer), _train(), rng)
        assert wrong is not None and Scorer(LABEL_TASK.scorer).score(wrong, ex.output) == 0
    num = Example("n", "2 + 2", "4")
    wrong = wrong_answer(num, Scorer(NUMERIC_TASK.scorer), [num], rng)
    assert wrong is not None and Scorer(NUMERIC_TASK.scorer).score(wrong, "4") == 0


# ---------------------------------------------------------------- end to end, real teacher


@pytest.mark.slow
def test_label_first_run_with_the_real_teacher(tmp_path: Path) -> None:
    """The embedded llama.cpp teacher on a small label task: the teacher check is stored with its
    line, every sample carries the label its job chose, the round-0 student weighs each label
    (quality.unconfirmed: student), and the round's label mix is recorded within the bound."""
    import yaml

    from pada_local.config import load
    from pada_local.run import loop

    src = Path(__file__).resolve().parents[1] / "examples" / "own-task"
    raw = yaml.safe_load((src.parent / "own-task.yaml").read_text())
    raw["models"] = {}
    raw["data"] = {k: str(src / f"{k}.jsonl") for k in ("train", "validation", "test")}
    raw["data"]["fields"] = {"input": "review", "output": "label", "id": "id"}
    raw["teacher"] = {"n_ctx": 1024, "max_tokens": 96}
    raw["train"] = {"max_steps": 2, "batch_size": 4, "rank": 4, "alpha": 8, "max_length": 96,
                    "backend": "peft"}
    raw["loop"] = {"rounds": 1, "budget": 8, "analysis_cap": 4, "k_max": 2, "exemplars": 2}
    # A margin no teacher clears: nothing it says decides, and the trained student weighs the labels.
    raw["quality"] = {"teacher_check": 6, "judge": False, "teacher_margin": 100, "teacher_pass": None,
                      "unconfirmed": "student"}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load(path, [f"store={tmp_path / 'runs.db'}", f"workdir={tmp_path / 'work'}"])
    run_id = loop.start(cfg)
    with Ledger.open(cfg.store) as ledger:
        check = ledger.for_run(run_id).stage_detail(1, "teacher_check")
        assert check is not None and check["teacher"]["n"] == 6 and check["teacher"]["line"]
        cands = ledger.for_run(run_id).candidate_rows(1)
        quality = ledger.for_run(run_id).stage_detail(1, "quality")
    parsed = [c for c in cands
              if c["target"] is not None and not (c["reason"] or "").startswith("unparseable")]
    assert parsed and all(c["output"] == c["target"] for c in parsed)
    assert all(c["target"] in ("positive", "negative") for c in cands)
    assert quality is not None and quality["label_tv"] <= 0.1 + 1e-9
    assert set(quality["label_mix_train"]) == {"positive", "negative"}
    weighed = [c["reason"] for c in parsed if "student" in (c["reason"] or "")]
    assert weighed and all("p(" in why for why in weighed)
    assert not any("re-solve" in (c["reason"] or "") for c in cands)


def test_runs_show_and_the_tui_say_the_check_and_the_label_mix() -> None:
    from pada_local.ledger.report import stage_notes

    check = CheckResult("teacher", 0.5, 0.8, 5, 32)
    stages = [{"stage": "teacher_check", "detail": {"teacher": check.stats()}},
              {"stage": "quality", "detail": {"label_mix": {"negative": 0.45, "positive": 0.55},
                                              "label_mix_train": {"negative": 0.5, "positive": 0.5},
                                              "label_tv": 0.05, "dropped_for_balance": 3}}]
    notes = stage_notes(stages)
    assert notes[0] == check.line() and "will not decide" in notes[0]
    assert notes[1] == ("label mix negative 45%, positive 55% (D_train negative 50%, positive 50%; "
                        "distance 0.05, 3 dropped for balance)")


def test_the_samples_view_shows_who_decided_the_answer() -> None:
    from rich.console import Console

    from tui.screens.samples import sample_detail

    row = {"id": 7, "round": 1, "source": "pattern", "key": "k", "verdict": "accepted", "human_verdict": None,
           "effective": "accepted", "reason": "accepted: computed answer 42 = 6 * 7", "judge_score": None,
           "pattern": "multiplication", "origin_item_id": None, "input": "6 bags of 7", "output": "42",
           "raw": "{}", "prompt": "p", "target": None, "expression": "6 * 7"}
    console = Console(width=120, record=True)
    console.print(sample_detail(row))
    text = console.export_text()
    assert "computed from: 6 * 7" in text and "label chosen first" not in text


def test_an_empty_input_is_rejected_before_anything_else() -> None:
    teacher = Scripted([])
    qc = _qc(LABEL_TASK, teacher, Trust(False, False), _train())
    verdict = qc.review([_cand("a", "  ", "negative", target="negative")])[0]
    assert not verdict.accepted and verdict.reason == "unparseable: empty input" and teacher.calls == 0


class Oracle:
    """Answers by reading the request (so order cannot matter) and records each batch's size."""

    supports_schema = True

    def __init__(self, concurrency: int) -> None:
        self.concurrency, self.batches = concurrency, []

    def generate(self, requests: list[ChatRequest], on_item: Any = None) -> list[Completion]:
        self.batches.append(len(requests))
        out = []
        for r in requests:
            text = r.messages[-1]["content"]
            data: Any = (SolveReply(answer="positive" if "great" in text else "negative")
                         if r.schema is SolveReply
                         else JudgeReply(score=2 if "meh" in text else 4, reason="r"))
            out.append(Completion(data.model_dump_json(), data))
        return out


def test_quality_control_asks_a_server_in_batches_and_decides_the_same() -> None:
    cands = [_cand("r1:pattern:0:0", "A great film with a great cast.", "positive", target="positive"),
             # a near copy of the first: the ordered pass rejects it even though it was asked ahead
             _cand("r1:pattern:0:1", "A great film with a great cast!", "positive", target="positive"),
             _cand("r1:pattern:0:2", "Dull, slow and far too long.", "positive", target="positive"),
             _cand("r1:pattern:0:3", "meh, great in parts", "positive", target="positive")]
    one, many = Oracle(1), Oracle(3)
    alone = _qc(LABEL_TASK, one, Trust(True, True), _train()).review(cands)
    batched = _qc(LABEL_TASK, many, Trust(True, True), _train()).review(cands)
    assert [(v.accepted, v.reason) for v in alone] == [(v.accepted, v.reason) for v in batched]
    assert [v.accepted for v in batched] == [True, False, False, False]
    assert "duplicate" in batched[1].reason and "re-solved" in batched[2].reason
    assert "judge score 2" in batched[3].reason
    assert max(one.batches) == 1 and max(many.batches) > 1


def test_generation_is_skipped_only_when_nothing_could_accept_a_sample() -> None:
    from pada_local.config import QualityConfig
    from pada_local.records import Job
    from pada_local.stages.quality import unconfirmable

    weak, strong = Trust(False, False, "teacher solved 31% of 32 train items"), Trust(True, True)
    labelled = [Job("r1:error:t0:0", "error", 1, target="positive")]
    free = [Job("r1:error:t0:0", "error", 1)]
    computed = [Job("r1:error:t0:0", "error", 1, computed=True)]
    reject = QualityConfig()
    why = unconfirmable(reject, weak, False, labelled)
    assert why is not None and "teacher solved 31%" in why and "unconfirmed is reject" in why
    assert unconfirmable(reject, strong, False, labelled) is None  # the teacher's re-solve confirms
    assert unconfirmable(reject, weak, True, labelled) is None  # a task verifier confirms
    assert unconfirmable(reject, weak, False, computed) is None  # the evaluator computes the answer
    assert unconfirmable(QualityConfig(unconfirmed="student"), weak, False, labelled) is None
    assert unconfirmable(QualityConfig(unconfirmed="keep"), weak, False, free) is not None  # no label chosen
    assert unconfirmable(QualityConfig(confirm_answer=False), weak, False, free) is None
