"""Pure logic of the stages: elbow, budget split, job planning, leakage guard."""

from __future__ import annotations

import numpy as np

from pada_local.leakage import REDACTED, LeakGuard
from pada_local.records import EvalRow, Example, Pattern
from pada_local.stages.analyze import cluster, elbow, sample_failures
from pada_local.stages.generate import plan_jobs, split_budget, strip_label


def test_elbow_finds_the_knee():
    assert elbow({1: 100.0, 2: 40.0, 3: 10.0, 4: 8.0, 5: 7.0, 6: 6.5}) == 3
    assert elbow({1: 10.0, 2: 5.0}) == 2


def test_cluster_recovers_separated_groups():
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:3] * 10
    x = np.vstack([c + rng.normal(0, 0.1, (6, 8)) for c in centres])
    result = cluster(x, k_max=6, seed=0)
    assert result.k == 3
    assert len({tuple(result.labels[i:i + 6]) for i in (0, 6, 12)}) == 3
    assert cluster(x[:3], k_max=6, seed=0).k == 1  # too few for k >= 2


def test_split_budget_is_proportional_and_exact():
    assert split_budget(10, [5, 3, 2]) == [5, 3, 2]
    assert sum(split_budget(7, [1, 1, 1])) == 7
    assert split_budget(0, [3]) == [0]


def _ex(i: int) -> Example:
    return Example(f"t{i}", f"question {i}", str(i))


def test_plan_jobs_per_strategy():
    train = [_ex(i) for i in range(10)]
    fails = [EvalRow(f"t{i}", "train", f"question {i}", str(i), "x", 0.0) for i in range(3)]
    pats = [Pattern(0, "a", "d", 4, ""), Pattern(1, "b", "d", 2, "")]
    pada = plan_jobs("pada", 1, 12, pats, fails, train, seed=0)
    assert len(pada) == 12 and sum(j.source == "error" for j in pada) == 3
    assert [sum(j.pattern is p for j in pada) for p in pats] == [6, 3]
    llm2llm = plan_jobs("llm2llm", 1, 12, [], fails, train, seed=0)
    assert len(llm2llm) == 12 and {j.source for j in llm2llm} == {"error"}
    para = plan_jobs("paraphrase", 1, 12, [], [], train, seed=0)
    assert len(para) == 12 and {j.source for j in para} == {"paraphrase"}
    assert [j.key for j in plan_jobs("pada", 1, 12, pats, fails, train, seed=0)] == [j.key for j in pada]
    assert len({j.key for j in pada}) == 12


def test_sample_failures_is_reproducible():
    rows = [EvalRow(f"v{i}", "validation", "q", "a", "b", 0.0) for i in range(50)]
    assert sample_failures(rows, 10, 3) == sample_failures(rows, 10, 3)
    assert len(sample_failures(rows, 10, 3)) == 10


def test_strip_label():
    assert strip_label("Question: What is 2 plus 2?") == "What is 2 plus 2?"
    assert strip_label("Answer: 4") == "4"
    assert strip_label("a-b") == "a-b"


def test_leak_guard_finds_and_scrubs():
    held = [Example("v1", "What is the capital city of France?", "Paris", split="validation")]
    guard = LeakGuard(held)
    assert [l.how for l in guard.find("The student failed on: what is the capital city of France")] == ["exact"]
    assert guard.find("Questions about capital cities of countries") == []
    near = guard.find("what is the capital city of france today?")
    assert near and near[0].item_id == "v1"
    scrubbed = guard.scrub("Pattern: confuses What is the capital  city of France? with others")
    assert REDACTED in scrubbed and guard.find(scrubbed) == []


def test_quality_reasons_are_counted_by_kind() -> None:
    from pada_local.records import Reason, Verdict
    from pada_local.stages.quality import reason_counts

    verdicts = [Verdict("a", Reason.DUPLICATE, "duplicate of train item sst2-191 (1.00)"),
                Verdict("b", Reason.DUPLICATE, "duplicate of sample x/3 (0.97)"),
                Verdict("c", Reason.NOT_CONFIRMED, "answer not confirmed: teacher solved 53%"),
                Verdict("d", Reason.ACCEPTED, "accepted: the teacher's re-solve agrees"),
                Verdict("e", Reason.JUDGE_LOW, "judge score 2 < 3: vague"),
                Verdict("f", Reason.JUDGE_LOW, "judge score 1 < 3: off-task")]
    assert reason_counts(verdicts) == {"duplicate": 2, "answer not confirmed": 1, "accepted": 1,
                                       "judge score too low": 2}  # one kind, whatever the score
