"""Data Generation Agent: plan the round's synthetic budget into jobs, then run them.

A job has a stable key and its own seed, so a run interrupted mid-generation and resumed
regenerates exactly the missing jobs and gets the same samples (no duplicates, same count).
Generation prompts see pattern/strategy text and *train* items only (the leakage guard).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from typing import Any

from .backends.base import ChatRequest, Completion, Generator
from .config import TaskConfig
from .data import Example
from .events import Reporter, StageProgress, silent
from .prompts import SampleReply, render
from .records import Candidate, EvalRow, Job, Pattern
from .seeds import derive
from .textsim import jaccard, shingles


def split_budget(budget: int, weights: Sequence[int]) -> list[int]:
    """Largest-remainder split of `budget` in proportion to `weights` (cluster sizes)."""
    total = sum(weights)
    if total == 0 or budget == 0:
        return [0] * len(weights)
    exact = [budget * w / total for w in weights]
    shares = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in order[: budget - sum(shares)]:
        shares[i] += 1
    return shares


def plan_jobs(strategy: str, round_: int, budget: int, patterns: Sequence[Pattern],
              train_failures: Sequence[EvalRow], train: Sequence[Example], seed: int,
              pattern_pools: dict[int, tuple[Example, ...]] | None = None) -> list[Job]:
    """The round's jobs. `pada`: error-correcting jobs (one per failed train item, at most half
    the budget) plus pattern jobs in proportion to cluster size; `llm2llm`: error jobs only;
    `paraphrase`: rephrasings of random train items; all with the same budget. `seed` is the
    run's seed: each job's own seed is derived from it by purpose, round and index."""
    if strategy == "paraphrase":
        rng = random.Random(derive(seed, "paraphrase_picks", round_))
        picks = [rng.choice(list(train)) for _ in range(budget)]
        return [Job(f"r{round_}:paraphrase:{i}", "paraphrase", derive(seed, "job/paraphrase", round_, i),
                    origin=ex) for i, ex in enumerate(picks)]
    by_id = {ex.id: ex for ex in train}
    errors = [(by_id[f.item_id], f.prediction) for f in train_failures if f.item_id in by_id]
    if strategy == "llm2llm" or not patterns:
        n_error = budget if errors else 0
    else:
        n_error = min(len(errors), budget // 2)
    jobs = _error_jobs(round_, errors, min(n_error, budget), seed)
    if strategy == "pada" and patterns:
        jobs += _pattern_jobs(round_, patterns, budget - len(jobs), seed, pattern_pools or {})
    return jobs


def _error_jobs(round_: int, errors: list[tuple[Example, str]], n: int, seed: int) -> list[Job]:
    # Cycle over the failed train items when the budget exceeds them (LLM2LLM at equal budget).
    if not errors:
        return []
    order = random.Random(derive(seed, "error_order", round_)).sample(errors, len(errors))
    return [Job(f"r{round_}:error:{order[i % len(order)][0].id}:{i}", "error",
                derive(seed, "job/error", round_, i),
                origin=order[i % len(order)][0], prediction=order[i % len(order)][1]) for i in range(n)]


def _pattern_jobs(round_: int, patterns: Sequence[Pattern], n: int, seed: int,
                  pools: dict[int, tuple[Example, ...]]) -> list[Job]:
    jobs = []
    for p, share in zip(patterns, split_budget(n, [p.size for p in patterns]), strict=True):
        purpose = f"job/pattern/{p.cluster}"
        jobs += [Job(f"r{round_}:pattern:{p.cluster}:{i}", "pattern", derive(seed, purpose, round_, i),
                     pattern=p, pool=pools.get(p.cluster, ())) for i in range(share)]
    return jobs


def pick_exemplars(job: Job, train: Sequence[Example], n: int) -> list[Example]:
    """Train items shown to the teacher: for a pattern job, a draw from the train items nearest
    its failures; for an error job, the items most like the failed one (word 3-gram overlap),
    so the teacher sees the question's form several times over; else a seeded random draw."""
    rng = random.Random(job.seed)
    if job.pool:
        return rng.sample(list(job.pool), min(n, len(job.pool)))
    if job.origin is None or n == 0:
        return rng.sample(list(train), min(n, len(train)))
    origin = shingles(job.origin.input)
    others = [ex for ex in train if ex.id != job.origin.id]
    ranked = sorted(others, key=lambda ex: (-jaccard(origin, shingles(ex.input)), rng.random()))
    return ranked[:n]


def job_messages(job: Job, task: TaskConfig, train: Sequence[Example],
                 n_exemplars: int) -> tuple[dict[str, str], ...]:
    shots = [(ex.input, ex.output) for ex in pick_exemplars(job, train, n_exemplars)]
    # Any: spread into render(), whose `override`/`shots` keywords these never name.
    common: dict[str, Any] = {"task_description": task.description or task.name,
              "answer_format": task.answer_format or "as in the examples"}
    if job.source == "pattern":
        assert job.pattern is not None
        return render("generate_pattern", shots=shots, pattern_name=job.pattern.name,
                      pattern_description=job.pattern.description, strategy=job.pattern.strategy, **common)
    assert job.origin is not None
    if job.source == "error":
        return render("generate_error", shots=shots, input=job.origin.input, reference=job.origin.output,
                      prediction=job.prediction or "(empty)", **common)
    return render("paraphrase", input=job.origin.input, reference=job.origin.output, **common)


def run_jobs(teacher: Generator, jobs: Sequence[Job], task: TaskConfig, train: Sequence[Example],
             n_exemplars: int, *, on_candidate: Callable[[Candidate], None], report: Reporter = silent,
             round_: int | None = None, total: int | None = None, done: int = 0) -> None:
    """Generate each job and hand the candidate over at once (the caller stores it), so a
    crash loses at most the sample in flight."""
    progress = StageProgress(report, "generate", round_, total if total is not None else len(jobs))
    if done:
        progress.step(done, "resumed")
    for job in jobs:
        messages = job_messages(job, task, train, n_exemplars)
        reply = teacher.generate([ChatRequest(messages, schema=SampleReply, seed=job.seed)])[0]
        on_candidate(_candidate(job, messages, reply))
        progress.step()
    progress.end()


def _candidate(job: Job, messages: tuple[dict[str, str], ...], c: Completion) -> Candidate:
    data: Any = c.data
    prompt = "\n\n".join(m["content"] for m in messages)
    cluster = None if job.pattern is None else job.pattern.cluster
    origin = None if job.origin is None else job.origin.id
    if not c.ok or data is None:
        return Candidate(job.key, job.source, cluster, origin, "", "", c.text, c.error or "unparseable",
                         prompt, c)
    return Candidate(job.key, job.source, cluster, origin, strip_label(data.input), strip_label(data.output),
                     c.text, None, prompt, c)


_LABEL = re.compile(r"^\s*(?:question|input|q|answer|output|a)\s*:\s*", re.IGNORECASE)


def strip_label(text: str) -> str:
    """Small teachers often prefix "Question:" / "Answer:" inside the field; drop the label."""
    return _LABEL.sub("", text.strip(), count=1).strip()
