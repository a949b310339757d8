"""Pattern Analysis Agent: sample-level error analysis, clustering into patterns, strategies.

Validation items reach only the analysis prompt (which the teacher needs to explain the
failure). Pattern and strategy prompts see the analyses, not the items; strategies see train
exemplars. Nothing from validation goes further (the leakage guard).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..backends.base import ChatRequest, Completion, Embedder, Generator
from ..config import TaskConfig
from ..events import Event, Reporter, StageProgress, silent
from ..leakage import LeakGuard
from ..prompts import AnalysisReply, PatternReply, StrategyReply, conversation_text, render
from ..records import Analysis, Clustering, EvalRow, Example, Pattern
from ..seeds import derive
from .keywords import group_texts, readable_strategy, with_keywords

STRATEGY_FALLBACK = "Write new questions like the training examples that exercise: {}."


def sample_failures(failures: Sequence[EvalRow], cap: int, seed: int) -> list[EvalRow]:
    """Up to `cap` failures, sampled reproducibly (same seed, same subset)."""
    if len(failures) <= cap:
        return list(failures)
    rng = random.Random(seed)
    return sorted(rng.sample(list(failures), cap), key=lambda r: r.item_id)


def analyze_failures(teacher: Generator, failures: Sequence[EvalRow], task: TaskConfig, *, seed: int,
                     report: Reporter = silent, round_: int | None = None,
                     items: Sequence[Example] = ()) -> list[Analysis]:
    """The teacher's analysis of each failure. `items` are the examples the failures were scored
    on: a conversation's earlier turns come from there (the stored row keeps its last turn only)."""
    progress = StageProgress(report, "analyze", round_, len(failures))
    context = {(ex.split, ex.id): ex.context for ex in items}
    requests = [
        ChatRequest(render("analysis", task_description=task.description or task.name,
                           answer_format=task.answer_format or "as in the examples",
                           input=conversation_text(f.input, context.get((f.split, f.item_id), ())),
                           reference=f.reference, prediction=f.prediction or "(empty)", score=f.score),
                    schema=AnalysisReply, seed=derive(seed, "analysis", round_ or 0, i))
        for i, f in enumerate(failures)
    ]
    replies = teacher.generate(requests, on_item=lambda i, c: progress.step())
    progress.end()
    return [_analysis(f.item_id, c) for f, c in zip(failures, replies, strict=True)]


def _analysis(item_id: str, c: Completion) -> Analysis:
    if not c.ok or c.data is None:
        return Analysis(item_id, "", "", c.text, False, c)
    data: Any = c.data
    return Analysis(item_id, data.root_cause.strip(), data.error_scenario.strip(), c.text, True, c)


# ---------------------------------------------------------------- clustering


def cluster(embeddings: Any, k_max: int, seed: int) -> Clustering:
    """k-means for k = 2..min(k_max, n//2); k chosen at the elbow of the inertia curve."""
    n = len(embeddings)
    top = min(k_max, n // 2)
    if top < 2:
        return Clustering([0] * n, 1, {1: 0.0})
    fits = {k: _kmeans(embeddings, k, seed) for k in range(1, top + 1)}
    inertias = {k: float(fit.inertia_) for k, fit in fits.items()}
    k = elbow(inertias)
    return Clustering([int(x) for x in fits[k].labels_], k, inertias)


def _kmeans(x: Any, k: int, seed: int) -> Any:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x)


def elbow(inertias: dict[int, float]) -> int:
    """The k (>= 2) farthest below the straight line from the first to the last point
    (the "kneedle" reading of the elbow)."""
    ks = sorted(inertias)
    if len(ks) <= 2:
        return max(ks)
    (x0, y0), (x1, y1) = (ks[0], inertias[ks[0]]), (ks[-1], inertias[ks[-1]])

    def gap(k: int) -> float:
        line = y0 + (y1 - y0) * (k - x0) / (x1 - x0)
        return line - inertias[k]

    return max((k for k in ks if k >= 2), key=lambda k: (round(gap(k), 9), -k))


# ---------------------------------------------------------------- patterns and strategies


def name_patterns(teacher: Generator, analyses: Sequence[Analysis], labels: Sequence[int],
                  task: TaskConfig, *, seed: int, report: Reporter = silent,
                  round_: int | None = None) -> list[Pattern]:
    groups = _groups(analyses, labels)
    progress = StageProgress(report, "patterns", round_, len(groups))
    requests = [
        ChatRequest(render("pattern", task_description=task.description or task.name, size=len(members),
                           analyses=_bullets(members)),
                    schema=PatternReply, seed=derive(seed, "pattern_name", round_ or 0, c))
        for c, members in groups.items()
    ]
    replies = teacher.generate(requests, on_item=lambda i, c: progress.step())
    progress.end()
    return [_pattern(c, len(groups[c]), reply) for c, reply in zip(groups, replies, strict=True)]


def describe_patterns(teacher: Generator, analyses: Sequence[Analysis], labels: Sequence[int],
                      task: TaskConfig, guard: LeakGuard, *, seed: int, report: Reporter = silent,
                      round_: int = 0) -> list[Pattern]:
    """Each cluster's pattern as a reader will see it: the teacher's name and description with any
    held-out item removed, and keywords computed from its analyses (which replace a name that is
    not made of words or shares nothing with its cluster; a keyword that is a held-out item is
    dropped)."""
    found = [] if not analyses else name_patterns(teacher, analyses, labels, task, seed=seed, report=report,
                                                  round_=round_)
    safe = [replace(p, name=guard.safe(p.name, f"pattern {p.cluster}"),
                    description=guard.safe(p.description, "(withheld: it quoted a held-out item)"))
            for p in found]
    return with_keywords(safe, group_texts([a.text for a in analyses], labels), allowed=guard.allows)


def cluster_analyses(embedder: Embedder, analyses: Sequence[Analysis], k_max: int, seed: int) -> Clustering:
    """The usable analyses embedded and clustered (none: no clusters)."""
    if not analyses:
        return Clustering([], 0, {})
    return cluster(embedder.embed([a.text for a in analyses]), k_max, seed)


def _groups(analyses: Sequence[Analysis], labels: Sequence[int]) -> dict[int, list[Analysis]]:
    groups: dict[int, list[Analysis]] = {}
    # The caller builds `labels` from `analyses`, one per item.
    for a, label in zip(analyses, labels, strict=True):
        groups.setdefault(label, []).append(a)
    return dict(sorted(groups.items()))


def _bullets(members: Sequence[Analysis], cap: int = 8) -> str:
    return "\n".join(f"- {a.root_cause} ({a.error_scenario})" for a in members[:cap])


def _pattern(cluster_id: int, size: int, c: Completion) -> Pattern:
    if not c.ok or c.data is None:
        # An unusable name still leaves a real cluster; keep it under a neutral name.
        return Pattern(cluster_id, f"pattern {cluster_id}", "(the teacher's description was invalid)",
                       size, c.text)
    data: Any = c.data
    return Pattern(cluster_id, data.name.strip(), data.description.strip(), size, c.text)


def draft_strategies(teacher: Generator, patterns: Sequence[Pattern], task: TaskConfig,
                     train: Sequence[Example], n_exemplars: int, guard: LeakGuard, *, seed: int,
                     report: Reporter = silent, round_: int = 0) -> tuple[list[Pattern], dict[int, str]]:
    """A strategy per pattern, drafted from the pattern and a seeded draw of train exemplars; a
    strategy that quotes a held-out item loses the quote (or, if a near copy stays, is replaced),
    and one that does not read as a plan for its pattern is replaced by a plain one. Also gives
    the teacher's replaced texts, by cluster (recorded with the step, so nothing is lost)."""
    rng = random.Random(derive(seed, "strategy_exemplars", round_))
    exemplars = rng.sample(list(train), min(n_exemplars, len(train)))
    progress = StageProgress(report, "strategies", round_, len(patterns))
    requests = [
        ChatRequest(render("strategy", task_description=task.description or task.name,
                           answer_format=task.answer_format or "as in the examples", pattern_name=p.name,
                           pattern_description=p.description, exemplars=format_exemplars(exemplars)),
                    schema=StrategyReply, seed=derive(seed, "strategy", round_, p.cluster))
        for p in patterns
    ]
    replies = teacher.generate(requests, on_item=lambda i, c: progress.step())
    progress.end()
    drafted = [_with_strategy(p, c) for p, c in zip(patterns, replies, strict=True)]
    safe = [replace(p, strategy=guard.safe(p.strategy, STRATEGY_FALLBACK.format(p.name))) for p in drafted]
    replaced = {p.cluster: p.strategy for p in safe if not readable_strategy(p.strategy, p.name, p.keywords)}
    if replaced:
        report(Event("log", "strategies", round_, message=f"{len(replaced)} of {len(safe)} strategies did "
                     "not read as a plan for their pattern; each replaced by a plain one"))
    return [replace(p, strategy=STRATEGY_FALLBACK.format(p.name)) if p.cluster in replaced else p
            for p in safe], replaced


def _with_strategy(p: Pattern, c: Completion) -> Pattern:
    text = c.data.strategy.strip() if c.ok and c.data is not None else (  # type: ignore[attr-defined]
        STRATEGY_FALLBACK.format(p.name))
    return replace(p, strategy=text)  # keeps every other field, keywords included


def format_exemplars(exemplars: Sequence[Example]) -> str:
    return "\n".join(f"Question: {ex.input}\nAnswer: {ex.output}" for ex in exemplars) or "(none)"
