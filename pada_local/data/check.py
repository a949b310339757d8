"""`pada data check`: everything about a config's data before any compute.

Per split the detected format and counts, labels, duplicates, overlaps, token lengths under the
student's chat template, what train.max_length drops, and one example as the student sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import DataError, PadaError
from ..records import Example
from ..textsim import normalize
from .splits import PAIRS, SHOWN, SPLITS, Duplicate, Splits, _describe, check_splits, load_splits

PERCENTILES = (50, 90, 99)
LONG_TAIL = 3.0  # the longest example this many times the median is a long tail worth a warning
IMBALANCE = 3.0  # the commonest label this many times the rarest is worth a warning


@dataclass
class DataCheck:
    """What `pada data check` says: (level, text) lines, level info / warning / error."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    rendered: dict[str, str] = field(default_factory=dict)  # "training" / "evaluation" -> the text

    def add(self, level: str, text: str) -> None:
        self.lines.append((level, text))

    @property
    def exit_code(self) -> int:
        levels = {level for level, _ in self.lines}
        return 2 if "error" in levels else 1 if "warning" in levels else 0


def _percentile(values: list[int], q: int) -> int:
    ordered = sorted(values)
    return ordered[max(-(-q * len(ordered) // 100) - 1, 0)]  # nearest rank


def _in_split_duplicates(items: list[Example], split: str) -> str | None:
    first: dict[str, str] = {}
    repeats: list[tuple[str, str]] = []
    for ex in items:
        key = normalize(ex.full_input())
        if key in first:
            repeats.append((ex.id, first[key]))
        else:
            first[key] = ex.id
    if not repeats:
        return None
    shown = "; ".join(f"'{a}' repeats '{b}'" for a, b in repeats[:SHOWN])
    more = "; ..." if len(repeats) > SHOWN else ""
    return f"data.{split}: {len(repeats)} of {len(items)} inputs repeat an earlier one, e.g. {shown}{more}"


def _overlap_lines(dups: list[Duplicate]) -> list[str]:
    """One line per split pair with repeated inputs."""
    out = []
    for a, b in PAIRS:
        first: dict[str, Duplicate] = {}
        for dup in dups:
            if (dup[0], dup[2]) == (a, b):
                first.setdefault(dup[3], dup)
        if first:
            shown = "; ".join(_describe(d) for d in list(first.values())[:SHOWN])
            more = "; ..." if len(first) > SHOWN else ""
            out.append(f"overlap {a}/{b}: {len(first)} {b} items repeat a {a} input, e.g. {shown}{more}")
    return out


def _label_lines(cfg: Any, splits: Splits, check: DataCheck) -> None:
    from ..scoring import normalize as label_norm

    labels = [label_norm(x) for x in cfg.task.scorer.labels or []]
    for split in SPLITS:
        items: list[Example] = getattr(splits, split)
        if not items:
            continue
        counts: dict[str, int] = {}
        for ex in items:
            key = label_norm(ex.output)
            counts[key] = counts.get(key, 0) + 1
        shown = ", ".join(f"{k} {v} ({100 * v / len(items):.0f}%)"
                          for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        check.add("info", f"data.{split} labels: {shown}")
        if split != "train":
            continue
        missing = [x for x in labels if x not in counts]
        if missing:
            check.add("warning", f"data.train has no example of the label(s) {', '.join(missing)}")
        elif len(counts) > 1 and max(counts.values()) >= IMBALANCE * min(counts.values()):
            top = max(counts, key=lambda k: counts[k])
            low = min(counts, key=lambda k: counts[k])
            check.add("warning", f"data.train labels are unbalanced: {top} {counts[top]} vs {low} "
                                 f"{counts[low]} ({counts[top] / counts[low]:.1f}x)")


def _length_lines(cfg: Any, splits: Splits, tokenizer: Any, check: DataCheck) -> None:
    from ..backends.lengths import chat_ids, fit_examples
    from ..prompts import student_messages
    from ..stages.train import training_examples

    examples = training_examples(cfg.task, splits.train, [])
    fit = fit_examples(tokenizer, examples, cfg.train.max_length)
    lengths = list(fit.lengths)
    summary = ", ".join(f"p{q} {_percentile(lengths, q)}" for q in PERCENTILES)
    check.add("info", f"data.train tokens (prompt + answer, the student's chat template): {summary}, "
                      f"max {max(lengths)}")
    median = _percentile(lengths, 50)
    if max(lengths) >= LONG_TAIL * max(median, 1):
        check.add("warning", f"data.train lengths have a long tail: the longest is {max(lengths)} tokens, "
                             f"{max(lengths) / max(median, 1):.1f}x the median ({median})")
    if fit.dropped_ids:
        from ..backends.lengths import dropped_warning, suggest_max_length

        check.add("warning", dropped_warning(fit.dropped_ids, len(examples), cfg.train.max_length)
                  + f"; train.max_length={suggest_max_length(lengths)} keeps 99% of them")
    else:
        check.add("info", f"train.max_length={cfg.train.max_length} keeps every training example")
    for split in ("validation", "test"):
        items: list[Example] = getattr(splits, split)
        if items:
            prompts = [len(chat_ids(tokenizer, student_messages(cfg.task, ex.input, ex.system, ex.context),
                                    generation_prompt=True)) for ex in items]
            shown = ", ".join(f"p{q} {_percentile(prompts, q)}" for q in PERCENTILES)
            check.add("info", f"data.{split} prompt tokens: {shown}, max {max(prompts)}")
    ex = splits.train[0]
    prompt = list(student_messages(cfg.task, ex.input, ex.system, ex.context))
    full = [*prompt, {"role": "assistant", "content": ex.output}]
    check.rendered["training"] = tokenizer.apply_chat_template(full, tokenize=False)
    check.rendered["evaluation"] = tokenizer.apply_chat_template(prompt, tokenize=False,
                                                                 add_generation_prompt=True)
    check.rendered["example"] = f"{ex.id}, {ex.source}"


def _student_tokenizer(cfg: Any) -> Any:
    from .. import models
    from ..backends.lengths import tokenizer_for

    return tokenizer_for(models.tokenizer_source(models.resolve_student(cfg.models.student)))


def data_check(cfg: Any, tokenizer: Any = None) -> DataCheck:
    """Everything `pada data check` reports about a config's data, before any compute: per split
    the detected format and counts, labels, duplicates, overlaps, token lengths under the
    student's chat template, what train.max_length drops, and one example as the student sees it.
    `tokenizer`: the student's (None: read from the config's student, no model weights loaded)."""
    from ..scoring import Scorer

    check = DataCheck()
    try:
        splits = load_splits(cfg.data)
        report = check_splits(splits, threshold=cfg.quality.dup_ngram)
    except DataError as err:
        check.add("error", str(err))
        return check
    for note in report.notes:
        check.add("info", note)
    check.add("info", "counts: " + ", ".join(f"{k} {v}" for k, v in report.counts.items()))
    scorer = Scorer(cfg.task.scorer)
    for split in SPLITS:
        items: list[Example] = getattr(splits, split)
        line = _in_split_duplicates(items, split)
        if line is not None:
            check.add("warning", line)
        try:
            if items:
                scorer.check_references([(ex.id, ex.output) for ex in items], f"data.{split}")
        except PadaError as err:
            check.add("error", str(err))
    overlaps = _overlap_lines(report.duplicates)
    for line in overlaps:
        check.add("warning", line)
    if not overlaps:
        check.add("info", "overlaps: no input repeated across train, validation and test")
    if cfg.task.scorer.kind == "label":
        _label_lines(cfg, splits, check)
    try:
        tokenizer = _student_tokenizer(cfg) if tokenizer is None else tokenizer
    except Exception as err:  # a missing model (PadaError) or a tokenizer transformers cannot read
        check.add("warning", f"token lengths not checked: the student's tokenizer is not readable ({err})")
        return check
    _length_lines(cfg, splits, tokenizer, check)
    return check
