"""Data Generation Agent: plan the round's synthetic budget into jobs, then run them.

A job has a stable key and its own seed, so a run interrupted mid-generation and resumed
regenerates exactly the missing jobs and gets the same samples (no duplicates, same count).
Generation prompts see pattern/strategy text and *train* items only (the leakage guard).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel

from ..backends.base import ChatRequest, Completion, Embedder, Generator
from ..config import LoopConfig, TaskConfig
from ..events import Reporter, StageProgress, silent
from ..prompts import ComputedReply, InputReply, SampleReply, render
from ..records import Candidate, EvalRow, Example, Job, Pattern
from ..scoring import Scorer
from ..seeds import derive
from ..textsim import jaccard, shingles
from .balance import LabelMix, plan_targets


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


@dataclass(frozen=True)
class Answers:
    """Who decides a sample's answer. `teacher`: the teacher writes it (quality control must
    confirm it); `label`: the job picks a label first; `computed`: the teacher writes an
    arithmetic expression and the evaluator computes the answer."""

    mode: Literal["teacher", "label", "computed"] = "teacher"
    label_of: Callable[[str], str | None] = lambda ref: None  # a reference -> its label as trained
    pattern_labels: dict[int, list[str]] = field(default_factory=dict)  # cluster -> failures' labels
    mix: LabelMix | None = None  # plan the labels within this bound (loop.plan_label_mix)


def answers_for(task: TaskConfig, loop: LoopConfig, scorer: Scorer, has_verifier: bool,
                train: Sequence[Example], validation: Sequence[EvalRow],
                clusters: Mapping[str, int], mix: LabelMix | None = None) -> Answers:
    """Who decides a sample's answer: a label picked first (label and choice tasks), an evaluated
    expression (numeric tasks), else the teacher. Pattern jobs take the labels of the validation
    failures behind their pattern (the references only: no validation text reaches a prompt);
    with `mix` (loop.plan_label_mix) the labels are then planned within its bound."""
    kind = task.scorer.kind
    if kind == "numeric" and loop.computed_answers and not has_verifier:
        return Answers("computed")  # (a task verifier knows the answer: it decides instead)
    if kind not in ("label", "choice") or not loop.label_first:
        return Answers()
    refs = {x.item_id: x.reference for x in validation}
    behind: dict[int, list[str]] = {}
    for item_id, c in clusters.items():
        if item_id in refs:
            behind.setdefault(c, []).append(refs[item_id])
    return Answers("label", scorer.spelling([ex.output for ex in train]), behind,
                   mix if loop.plan_label_mix else None)


def pattern_pools(embedder: Embedder, patterns: Sequence[Pattern], validation: Sequence[EvalRow],
                  clusters: Mapping[str, int], train: Sequence[Example],
                  size: int = 8) -> dict[int, tuple[Example, ...]]:
    """Per pattern, the train items nearest (by embedding) to the validation failures behind it.
    Only train items reach the prompt; validation only steers which ones."""
    import numpy as np

    inputs = {x.item_id: x.input for x in validation}
    members: dict[int, list[str]] = {}
    for item_id, c in clusters.items():
        if item_id in inputs:
            members.setdefault(c, []).append(inputs[item_id])
    train_vecs = embedder.embed([ex.input for ex in train])
    pools = {}
    for p in patterns:
        if members.get(p.cluster):
            centre = embedder.embed(members[p.cluster]).mean(axis=0)
            order = np.argsort(-(train_vecs @ centre), kind="stable")[:size]
            pools[p.cluster] = tuple(train[int(i)] for i in order)
    return pools


def plan_round(loop: LoopConfig, round_: int, patterns: Sequence[Pattern], train_failures: Sequence[EvalRow],
               train: Sequence[Example], pools: dict[int, tuple[Example, ...]], answers: Answers,
               scope: str) -> list[Job]:
    """A round's jobs under the loop's settings (budget: |D_train| unless set), each key scoped
    by `scope` (the run id: candidate keys are unique across the whole store)."""
    budget = loop.budget if loop.budget is not None else len(train)
    jobs = plan_jobs(loop.strategy, round_, budget, patterns, train_failures, train, loop.seed, pools,
                     answers, exemplar_sets=loop.exemplar_sets)
    return [replace(j, key=f"{scope}/{j.key}") for j in jobs]


def plan_jobs(strategy: str, round_: int, budget: int, patterns: Sequence[Pattern],
              train_failures: Sequence[EvalRow], train: Sequence[Example], seed: int,
              pattern_pools: dict[int, tuple[Example, ...]] | None = None,
              answers: Answers | None = None, exemplar_sets: int | None = None) -> list[Job]:
    """The round's jobs. `pada`: error-correcting jobs (one per failed train item, at most half
    the budget) plus pattern jobs in proportion to cluster size; `llm2llm`: error jobs only;
    `paraphrase`: rephrasings of random train items; all with the same budget. `seed` is the
    run's seed: each job's own seed is derived from it by purpose, round and index."""
    jobs = _plan(strategy, round_, budget, patterns, train_failures, train, seed, pattern_pools or {})
    if exemplar_sets is not None:  # the i-th job of a pattern takes its draw i mod sets
        jobs = [replace(j, exemplar_seed=derive(seed, f"exemplar_set/{j.pattern.cluster}", round_,
                                                int(j.key.rsplit(":", 1)[1]) % exemplar_sets))
                if j.pattern is not None else j for j in jobs]
    return _decide_answers(jobs, answers or Answers(), seed, round_)


def _decide_answers(jobs: list[Job], answers: Answers, seed: int, round_: int) -> list[Job]:
    if answers.mode == "computed":  # a paraphrase keeps its origin's numbers and answer
        return [replace(j, computed=j.source != "paraphrase") for j in jobs]
    if answers.mode != "label":
        return jobs
    out = [replace(j, target=answers.label_of(j.origin.output)) if j.origin is not None else j for j in jobs]
    by_cluster: dict[int, list[int]] = {}
    for i, j in enumerate(out):
        if j.pattern is not None:
            by_cluster.setdefault(j.pattern.cluster, []).append(i)
    for cluster_id, idx in by_cluster.items():
        labels = [x for x in (answers.label_of(r) for r in answers.pattern_labels.get(cluster_id, [])) if x]
        for i, label in zip(idx, _spread(labels, len(idx), derive(seed, "targets", round_, cluster_id)),
                            strict=False):
            out[i] = replace(out[i], target=label)
    return _within_mix(out, answers) if answers.mix is not None else out


def _within_mix(jobs: list[Job], answers: Answers) -> list[Job]:
    """The targets moved where the label balance would drop them (see balance.plan_targets)."""
    mix = answers.mix
    assert mix is not None

    def label(text: str | None) -> str | None:
        return (mix.label_of(text) if text else None) or None

    def labels(texts: Sequence[str]) -> list[str]:  # an unreadable reference is no label to aim at
        return [x for x in map(label, texts) if x]

    planned = [(j.key, j.target, label(j.prediction)) for j in jobs if j.target is not None]
    seed = derive(mix.seed, "plan")
    moved = plan_targets(labels(mix.train), labels(mix.earlier), planned, mix.max_tv, seed)
    return [replace(j, target=moved[j.key]) if j.key in moved else j for j in jobs]


def _spread(labels: Sequence[str], n: int, seed: int) -> list[str]:
    """n labels in the proportions of `labels`, in a seeded order."""
    kinds = sorted(set(labels))
    picked = [k for k, share in zip(kinds, split_budget(n, [labels.count(k) for k in kinds]), strict=True)
              for _ in range(share)]
    random.Random(seed).shuffle(picked)
    return picked


def _plan(strategy: str, round_: int, budget: int, patterns: Sequence[Pattern],
          train_failures: Sequence[EvalRow], train: Sequence[Example], seed: int,
          pattern_pools: dict[int, tuple[Example, ...]]) -> list[Job]:
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
        jobs += _pattern_jobs(round_, patterns, budget - len(jobs), seed, pattern_pools)
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
    draw = rng if job.exemplar_seed is None else random.Random(job.exemplar_seed)
    if job.pool:
        return draw.sample(list(job.pool), min(n, len(job.pool)))
    if job.origin is None or n == 0:
        return draw.sample(list(train), min(n, len(train)))
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
    extra: dict[str, Any] = {} if job.target is None else {"label": job.target}
    suffix = "_label" if job.target is not None else ("_computed" if job.computed else "")
    if job.source == "pattern":
        assert job.pattern is not None
        return render(f"generate_pattern{suffix}", shots=shots, pattern_name=job.pattern.name,
                      pattern_description=job.pattern.description, strategy=job.pattern.strategy,
                      **common, **extra)
    assert job.origin is not None
    if job.source == "error":
        return render(f"generate_error{suffix}", shots=shots, input=job.origin.input,
                      reference=job.origin.output, prediction=job.prediction or "(empty)", **common, **extra)
    return render("paraphrase", input=job.origin.input, reference=job.origin.output, **common)


def reply_schema(job: Job) -> type[BaseModel]:
    if job.target is not None and job.source != "paraphrase":
        return InputReply
    return ComputedReply if job.computed else SampleReply


def run_jobs(teacher: Generator, jobs: Sequence[Job], task: TaskConfig, train: Sequence[Example],
             n_exemplars: int, *, on_candidate: Callable[[Candidate], None], have: Set[str] = frozenset(),
             report: Reporter = silent, round_: int | None = None) -> None:
    """Generate every job whose key is not in `have` (made before a resume) and hand each
    candidate over at once (the caller stores it), so a crash loses at most what is in flight.

    A teacher that decodes requests together (`batch_chunk`: the in-process llama.cpp teacher)
    gets them in fixed chunks of the plan, and a chunk with a missing job is made again whole:
    its replies depend on the requests decoded beside them, so a resumed run samples exactly
    what the first one would have; the replies already stored are not handed over twice."""
    progress = StageProgress(report, "generate", round_, len(jobs))
    done = sum(j.key in have for j in jobs)
    if done:
        progress.step(done, "resumed")
    chunk = int(getattr(teacher, "batch_chunk", 0) or 0)
    groups = [list(jobs[i : i + chunk]) for i in range(0, len(jobs), chunk)] if chunk > 1 else [list(jobs)]
    for group in (g for g in groups if any(j.key not in have for j in g)):
        todo = group if chunk > 1 else [j for j in group if j.key not in have]
        _run(teacher, todo, task, train, n_exemplars, have, on_candidate, progress)
    progress.end()


def _run(teacher: Generator, jobs: list[Job], task: TaskConfig, train: Sequence[Example], n_exemplars: int,
         have: Set[str], on_candidate: Callable[[Candidate], None], progress: StageProgress) -> None:
    prompts = [job_messages(job, task, train, n_exemplars) for job in jobs]
    requests = [ChatRequest(m, schema=reply_schema(job), seed=job.seed)
                for job, m in zip(jobs, prompts, strict=True)]

    def arrived(i: int, reply: Completion) -> None:  # in arrival order when a server runs several
        if jobs[i].key not in have:
            on_candidate(_candidate(jobs[i], prompts[i], reply))
            progress.step()

    teacher.generate(requests, on_item=arrived)


_SOURCES = {"error": 0, "pattern": 1, "paraphrase": 2}


def job_order(key: str) -> tuple[int, int, int]:
    """A candidate key's place in the round's plan (errors, then patterns by cluster, then
    paraphrases; each by index): quality control reviews in this order whatever order a server
    answered in, because its duplicate check keeps the first of two near-copies."""
    parts = key.split(":")  # [run/]r1:source:...:index (an item id may hold ':' or '/')
    try:
        cluster = int(parts[2]) if parts[1] == "pattern" else 0
        return _SOURCES.get(parts[1], 3), cluster, int(parts[-1])
    except (IndexError, ValueError):
        return 3, 0, 0


def _candidate(job: Job, messages: tuple[dict[str, str], ...], c: Completion) -> Candidate:
    data: Any = c.data
    prompt = "\n\n".join(m["content"] for m in messages)
    cluster = None if job.pattern is None else job.pattern.cluster
    origin = None if job.origin is None else job.origin.id
    if not c.ok or data is None:
        return Candidate(job.key, job.source, cluster, origin, "", "", c.text, c.error or "unparseable",
                         prompt, c, target=job.target)
    # Label-first: the job's label is the answer, whatever the teacher wrote (a paraphrase too).
    output = job.target if job.target is not None else strip_label(data.output)
    expression = getattr(data, "expression", None) if job.computed else None
    return Candidate(job.key, job.source, cluster, origin, strip_label(data.input), output, c.text, None,
                     prompt, c, target=job.target, expression=expression)


_LABEL = re.compile(r"^\s*(?:question|input|q|answer|output|a)\s*:\s*", re.IGNORECASE)


def strip_label(text: str) -> str:
    """Small teachers often prefix "Question:" / "Answer:" inside the field; drop the label."""
    return _LABEL.sub("", text.strip(), count=1).strip()
