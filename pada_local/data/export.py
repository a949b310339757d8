"""`pada data export`: a run's curated data as a dataset other tools read.

Two selections: a round's recorded training set (the checksummed train.jsonl the trainer read:
the original training items plus the accepted synthetic samples of rounds 1..N, verdicts as they
were when it trained), or the synthetic samples alone (accepted by their effective verdict, a
person's verdict overriding quality control's, rounds 1..N). Every record keeps its provenance:
source (original / error / pattern / paraphrase), pattern name and description, verdict and
reason, human verdict, round.

Formats: `messages` (OpenAI / Hugging Face chat JSONL), `alpaca` (instruction/input/output JSONL;
single-turn records only), `sharegpt` (conversations of from/value JSONL) and `hf` (a
`save_to_disk` folder that `datasets.load_from_disk` opens). Each export is a folder with the
data, a dataset card (README.md) and export.json, written under a temporary name and renamed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError, PadaError
from ..files import now, sha256_file, write_jsonl
from ..ledger.report import pattern_keywords
from ..ledger.runs import Ledger, Row

FORMATS = ("messages", "alpaca", "sharegpt", "hf")
DATA_FILE = "train.jsonl"
MANIFEST = "export.json"
KIND = "pada-local dataset export"
SHAREGPT_FROM = {"system": "system", "user": "human", "assistant": "gpt"}
PROVENANCE = ("source", "round", "pattern", "pattern_description", "pattern_keywords", "verdict", "reason",
              "human_verdict", "judge_score", "candidate_id", "origin_item_id")


@dataclass(frozen=True)
class Exported:
    out: Path
    fmt: str
    rows: int
    round: int
    synthetic_only: bool
    counts: dict[str, int]  # records per source
    selection: str | None = None  # a chosen set of samples (the TUI's filters), described


# ---------------------------------------------------------------- selecting the records


def _provenance(c: Mapping[str, Any] | None, patterns: Mapping[int, Row]) -> dict[str, Any]:
    if c is None:
        return {"source": "original", "round": 0, "pattern": None, "pattern_description": None,
                "pattern_keywords": None, "verdict": None, "reason": None, "human_verdict": None,
                "judge_score": None, "candidate_id": None, "origin_item_id": None}
    pattern = patterns.get(c["pattern_id"]) if c.get("pattern_id") is not None else None
    return {"source": c["source"], "round": c["round"],
            "pattern": None if pattern is None else pattern["name"],
            "pattern_description": None if pattern is None else pattern["description"],
            "pattern_keywords": None if pattern is None else pattern_keywords(pattern),
            "verdict": c.get("verdict"), "reason": c.get("reason"), "human_verdict": c.get("human_verdict"),
            "judge_score": c.get("judge_score"), "candidate_id": c["id"],
            "origin_item_id": c.get("origin_item_id")}


def _train_set_file(ledger: Ledger, run_id: str, round_: int) -> Path:
    found = [a for a in ledger.for_run(run_id).artifacts(kind="train_set") if a["round"] == round_]
    if not found:
        have = sorted({a["round"] for a in ledger.for_run(run_id).artifacts(kind="train_set")})
        raise PadaError(f"run {run_id}: round {round_} has no recorded training set",
                        hint=f"rounds with one: {', '.join(map(str, have)) or 'none (no round trained)'}")
    art = found[-1]
    path = Path(art["path"])
    if not path.is_file():
        raise PadaError(f"{path}: the round's training set is gone (run {run_id}, round {round_})")
    if art["sha256"] and sha256_file(path) != art["sha256"]:
        raise PadaError(f"{path}: changed since round {round_} trained on it (checksum differs)",
                        hint="export --synthetic-only, or restore the file")
    return path


def _messages_of(line: str, path: Path, lineno: int) -> list[dict[str, str]]:
    try:
        record = json.loads(line)
        messages = record["messages"]
        assert isinstance(messages, list) and messages and messages[-1]["role"] == "assistant"
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
    except (ValueError, KeyError, TypeError, AssertionError):
        raise DataError(f"{path}:{lineno}: not a chat record of the training set") from None


def training_set(ledger: Ledger, run_id: str, round_: int) -> list[dict[str, Any]]:
    """The round's recorded training set, each chat with its provenance. A synthetic sample is
    recognised by its (input, answer) among the candidates of rounds 1..N."""
    path = _train_set_file(ledger, run_id, round_)
    patterns = {p["id"]: p for p in ledger.for_run(run_id).pattern_rows()}
    made: dict[tuple[str, str], Row] = {}
    rows = [c for c in ledger.for_run(run_id).candidate_rows() if 1 <= c["round"] <= round_]
    # Accepted ones first: a verdict changed after training still names the sample it was.
    for c in sorted(rows, key=lambda c: c["effective"] != "accepted"):
        made.setdefault((c["input"], c["output"]), c)
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if not line.strip():
            continue
        messages = _messages_of(line, path, lineno)
        user = next((m["content"] for m in reversed(messages[:-1]) if m["role"] == "user"), "")
        found = made.get((user, messages[-1]["content"]))
        out.append({"messages": messages, **_provenance(found, patterns)})
    return out


def synthetic_set(ledger: Ledger, run_id: str, round_: int) -> list[dict[str, Any]]:
    """The accepted synthetic samples of rounds 1..N (effective verdict), rendered as the student
    is trained on them: the task's system prompt, then the sample's input."""
    system = (ledger.for_run(run_id).config().get("task") or {}).get("system_prompt")
    head = [] if system is None else [{"role": "system", "content": system}]
    patterns = {p["id"]: p for p in ledger.for_run(run_id).pattern_rows()}
    out = []
    for c in ledger.for_run(run_id).candidate_rows():
        if 1 <= c["round"] <= round_ and c["effective"] == "accepted":
            messages = [*head, {"role": "user", "content": c["input"]},
                        {"role": "assistant", "content": c["output"]}]
            out.append({"messages": messages, **_provenance(c, patterns)})
    return out


def selected_set(ledger: Ledger, run_id: str, ids: Sequence[int]) -> list[dict[str, Any]]:
    """Chosen candidates (any verdict: the TUI's filters decide), in the order given, rendered as
    the student would be trained on them, with provenance."""
    system = (ledger.for_run(run_id).config().get("task") or {}).get("system_prompt")
    head = [] if system is None else [{"role": "system", "content": system}]
    patterns = {p["id"]: p for p in ledger.for_run(run_id).pattern_rows()}
    by_id = {c["id"]: c for c in ledger.for_run(run_id).candidate_rows()}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise PadaError(f"run {run_id}: no sample {missing[0]}", hint="refresh the list and try again")
    return [{"messages": [*head, {"role": "user", "content": by_id[i]["input"]},
                          {"role": "assistant", "content": by_id[i]["output"]}],
             **_provenance(by_id[i], patterns)} for i in ids]


# ---------------------------------------------------------------- formats


def _alpaca(record: dict[str, Any], n: int) -> dict[str, Any]:
    messages = record["messages"]
    system = [m["content"] for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    if len(turns) != 2 or len(system) > 1:
        raise DataError(f"record {n} is a conversation of {len(turns)} turns; Alpaca holds one "
                        "instruction and its answer", hint="use --format messages or --format sharegpt")
    prov = {k: record[k] for k in PROVENANCE}
    head = {"system": system[0]} if system else {}
    return {"instruction": turns[0]["content"], "input": "", "output": turns[1]["content"], **head, **prov}


def _sharegpt(record: dict[str, Any]) -> dict[str, Any]:
    convo = [{"from": SHAREGPT_FROM[m["role"]], "value": m["content"]} for m in record["messages"]]
    return {"conversations": convo, **{k: record[k] for k in PROVENANCE}}


def convert(records: Sequence[dict[str, Any]], fmt: str) -> list[dict[str, Any]]:
    if fmt == "alpaca":
        return [_alpaca(r, n) for n, r in enumerate(records, 1)]
    if fmt == "sharegpt":
        return [_sharegpt(r) for r in records]
    if fmt in ("messages", "hf"):
        return [dict(r) for r in records]
    raise PadaError(f"unknown dataset format '{fmt}'", hint=f"one of {', '.join(FORMATS)}")


# ---------------------------------------------------------------- writing


def _card(run: Row, cfg: Mapping[str, Any], ex: Exported, source_file: Path | None) -> str:
    task = cfg.get("task") or {}
    what = ex.selection or ("the accepted synthetic samples" if ex.synthetic_only
                            else "the training set the student was trained on")
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(ex.counts.items()))
    load = {"hf": f'datasets.load_from_disk("{ex.out.name}")',
            }.get(ex.fmt, f'datasets.load_dataset("json", data_files="{ex.out.name}/{DATA_FILE}")')
    made = (f"the file the trainer read, `{source_file}`" if source_file is not None
            else "the run store's candidates whose effective verdict is accepted (a person's verdict "
                 "overrides quality control's)")
    return f"""# {task.get('name') or run.get('task') or 'task'}: {what}, round {ex.round}

Exported by pada-local from run `{run['id']}` ({run.get('name')}, strategy `{run.get('strategy')}`,
student `{run.get('student')}`, teacher `{run.get('teacher')}`) on {now()}.

{task.get('description') or ''}

- format: `{ex.fmt}`; {ex.rows} records
- selection: {what}, rounds 1..{ex.round} of synthetic data; made from {made}
- system prompt: {json.dumps(task.get('system_prompt'))}

| source | records |
|---|---|
{rows}

Sources: `original` (the user's training data), `error` (a corrected variant of a training item
the student got wrong, LLM2LLM-style), `pattern` (written for a failure pattern found on the
validation split), `paraphrase` (a rephrased training item). Each record carries its provenance:
`source`, `round`, `pattern`, `pattern_description`, `pattern_keywords`, `verdict`, `reason`,
`human_verdict`, `judge_score`, `candidate_id`, `origin_item_id`.

{_qc_line(ex)}

Load it with `{load}`.
"""


def _qc_line(ex: Exported) -> str:
    if ex.selection is not None:  # the person chose these: rejected samples may be among them
        return ("Synthetic samples were written by a local teacher model; each record's `verdict`, "
                "`reason` and `human_verdict` say whether quality control (and you) accepted it.")
    return ("Synthetic samples were written by a local teacher model and passed quality control (format,\n"
            "answer confirmation, judge score, near-duplicates, contamination against validation and test).\n"
            "No validation or test item is in this data.")


def _replaceable(out: Path) -> bool:
    """An existing folder is replaced only when it is an earlier export of this kind."""
    try:
        return json.loads((out / MANIFEST).read_text()).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        return False


def _write(tmp: Path, rows: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "hf":
        try:
            from datasets import Dataset
        except ImportError:
            raise PadaError("the hf format needs `datasets`", hint="install the `datasets` package") from None
        Dataset.from_list(rows).save_to_disk(str(tmp))
    else:
        tmp.mkdir(parents=True)
        write_jsonl(tmp / DATA_FILE, rows)


def default_out(ledger: Ledger, run_id: str, round_: int, fmt: str, synthetic_only: bool) -> Path:
    workdir = Path(ledger.for_run(run_id).config().get("workdir") or "runs")
    kind = "synthetic" if synthetic_only else "train"
    return workdir / run_id / f"dataset-{kind}-r{round_}-{fmt}"


def _default_round(ledger: Ledger, run_id: str, synthetic_only: bool) -> int:
    if synthetic_only:
        return max((c["round"] for c in ledger.for_run(run_id).candidate_rows()), default=0)
    best = ledger.run(run_id).get("best_round")
    if best is not None:
        return int(best)
    rounds = [a["round"] for a in ledger.for_run(run_id).artifacts(kind="train_set")]
    if not rounds:
        raise PadaError(f"run {run_id} has no recorded training set yet",
                        hint="export --synthetic-only, or finish a round first")
    return max(rounds)


def export_dataset(ledger: Ledger, run_id: str, *, fmt: str, round_: int | None = None,
                   synthetic_only: bool = False, out: Path | None = None) -> Exported:
    """Write the selection in `fmt` to `out` (default <workdir>/<run>/dataset-...)."""
    if fmt not in FORMATS:
        raise PadaError(f"unknown dataset format '{fmt}'", hint=f"one of {', '.join(FORMATS)}")
    run_id = ledger.resolve(run_id)
    r = _default_round(ledger, run_id, synthetic_only) if round_ is None else round_
    source_file = None if synthetic_only else _train_set_file(ledger, run_id, r)
    records = synthetic_set(ledger, run_id, r) if synthetic_only else training_set(ledger, run_id, r)
    if not records:
        raise PadaError(f"run {run_id}: nothing to export for round {r}"
                        + (" (no accepted synthetic sample)" if synthetic_only else ""))
    rows = convert(records, fmt)
    out = Path(out) if out is not None else default_out(ledger, run_id, r, fmt, synthetic_only)
    if out.exists() and not _replaceable(out):
        raise PadaError(f"{out}: already exists and is not an earlier dataset export",
                        hint="choose another --out, or remove it")
    counts = dict(Counter(str(x["source"]) for x in records))
    ex = Exported(out.resolve(), fmt, len(rows), r, synthetic_only, counts)
    return _write_export(ledger, run_id, ex, rows, source_file)


def export_selection(ledger: Ledger, run_id: str, ids: Sequence[int], *, fmt: str, described: str,
                     out: Path | None = None) -> Exported:
    """The TUI's samples screen: exactly the samples its filters show (`described` says which),
    in the same formats and with the same card and manifest as `pada data export`."""
    if fmt not in FORMATS:
        raise PadaError(f"unknown dataset format '{fmt}'", hint=f"one of {', '.join(FORMATS)}")
    run_id = ledger.resolve(run_id)
    if not ids:
        raise PadaError("no samples to export: the filters show none")
    records = selected_set(ledger, run_id, ids)
    rows = convert(records, fmt)
    r = max(int(x["round"]) for x in records)
    workdir = Path(ledger.for_run(run_id).config().get("workdir") or "runs")
    out = Path(out) if out is not None else workdir / run_id / f"dataset-selection-{fmt}"
    if out.exists() and not _replaceable(out):
        raise PadaError(f"{out}: already exists and is not an earlier dataset export",
                        hint="choose another folder, or remove it")
    counts = dict(Counter(str(x["source"]) for x in records))
    ex = Exported(out.resolve(), fmt, len(rows), r, True, counts, selection=described)
    return _write_export(ledger, run_id, ex, rows, None)


def _write_export(ledger: Ledger, run_id: str, ex: Exported, rows: list[dict[str, Any]],
                  source_file: Path | None) -> Exported:
    """Write into a temporary folder, then swap it in: an interrupted export leaves nothing."""
    out, fmt, r, synthetic_only = ex.out, ex.fmt, ex.round, ex.synthetic_only
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write(tmp, rows, fmt)
        run, cfg = ledger.run(run_id), ledger.for_run(run_id).config()
        (tmp / "README.md").write_text(_card(run, cfg, ex, source_file), encoding="utf-8")
        manifest = {"kind": KIND, "run_id": run_id, "round": r, "format": fmt, "rows": len(rows),
                    "synthetic_only": synthetic_only, "counts": ex.counts, "created_at": now(),
                    "selection": ex.selection,
                    "source": None if source_file is None else {"path": str(source_file),
                                                                "sha256": sha256_file(source_file)}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ex
