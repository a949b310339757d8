"""Records that cross stage boundaries: frozen dataclasses (and the reason kinds of a verdict).

Stages produce and consume these; the run ledger (ledger/runs.py) maps them to and from stored
rows. Keeping them here is what lets stages import records instead of each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from .backends.base import Completion, StepInfo

Turn = tuple[str, str]  # (role, content): a pair, not a dict, so an Example stays hashable


@dataclass(frozen=True)
class Example:
    """One labelled item of a split, as the data readers make it and every stage sees it."""

    id: str
    input: str  # the (last) user turn
    output: str  # the answer to it: the final assistant turn
    system: str | None = None
    split: str = "train"
    source: str = ""  # "file:line" (or "folder[row]"), for messages that point at the record
    # A conversation's turns before `input` (user and assistant, no system): the student sees
    # them in training and evaluation, the teacher in analysis. Empty for single-turn items.
    context: tuple[Turn, ...] = ()

    def full_input(self) -> str:
        """Every input turn's text (earlier turns, then the last user turn), for comparisons."""
        return "\n".join([*(content for _, content in self.context), self.input])


@dataclass(frozen=True)
class EvalRow:
    """The student's answer to one held-out (or train) item and its score."""

    item_id: str
    split: str
    input: str
    reference: str
    prediction: str
    score: float
    completion_tokens: int = 0
    prompt_tokens: int = 0
    logprobs: dict[str, float] | None = None  # per option, in log-likelihood mode

    @property
    def failed(self) -> bool:
        """The method's failure criterion, Fail(x, y, y^): a score of 0."""
        return self.score == 0


@dataclass(frozen=True)
class Analysis:
    """The teacher's account of one validation failure; `cluster` is set once clustered."""

    item_id: str
    root_cause: str
    error_scenario: str
    raw: str
    ok: bool
    completion: Completion | None = None

    @property
    def text(self) -> str:
        return f"{self.root_cause} {self.error_scenario}".strip()


@dataclass(frozen=True)
class Clustering:
    labels: list[int]
    k: int
    inertias: dict[int, float]


@dataclass(frozen=True)
class Pattern:
    """A failure pattern: a cluster of analyses, its name, and (later) its data strategy."""

    cluster: int
    name: str
    description: str
    size: int
    raw: str
    strategy: str = ""
    keywords: tuple[str, ...] = ()  # c-TF-IDF over its analyses (see keywords.py), best first


@dataclass(frozen=True)
class Job:
    """One synthetic sample to make: a stable key and its own seed (resume regenerates the same)."""

    key: str
    source: str  # pattern | error | paraphrase
    seed: int
    pattern: Pattern | None = None
    origin: Example | None = None
    prediction: str = ""
    pool: tuple[Example, ...] = ()  # train items to draw exemplars from (pattern jobs)
    target: str | None = None  # label-first: the answer chosen before the teacher writes the input
    computed: bool = False  # numeric tasks: the teacher writes the computation, not the answer
    exemplar_seed: int | None = None  # draws the exemplars (loop.exemplar_sets); None: `seed` does


@dataclass(frozen=True)
class Candidate:
    """A synthetic sample as the teacher wrote it, before quality control."""

    key: str
    source: str
    pattern_cluster: int | None
    origin_item_id: str | None
    input: str
    output: str
    raw: str
    parse_error: str | None
    prompt: str
    completion: Completion | None = None
    target: str | None = None  # the label the job chose (label-first); the output is this label
    expression: str | None = None  # the teacher's computation (computed answers)


class Reason(str, Enum):
    """What kind of decision a verdict is: counted by kind, so nobody parses a reason's text."""

    ACCEPTED = "accepted"
    UNPARSEABLE = "unparseable"
    COPIES_PROMPT = "copies the prompt"
    WRONG_FORMAT = "wrong format"
    CONTAMINATION = "contamination"
    DUPLICATE = "duplicate"
    NOT_CONFIRMED = "answer not confirmed"
    NOT_COMPUTED = "answer not computed"
    STUDENT_DOUBTS = "student doubts the label"
    JUDGE_LOW = "judge score too low"
    JUDGE_INVALID = "judge reply invalid"
    LABEL_BALANCE = "label balance"


@dataclass(frozen=True)
class Verdict:
    """Quality control's decision on one candidate: its kind, and the reason in words."""

    key: str
    kind: Reason
    reason: str
    judge_score: float | None = None
    completions: tuple[Completion, ...] = ()
    output: str | None = None  # set when the task verifier corrected the answer

    @property
    def accepted(self) -> bool:
        return self.kind is Reason.ACCEPTED


@dataclass(frozen=True)
class Trust:
    """What the teacher check allows: may the teacher's re-solve, and the judge's score, decide?"""

    teacher: bool = True
    judge: bool = True
    why: str = ""  # the check's plain line, quoted in a rejection


@dataclass(frozen=True)
class Artifact:
    """A file a stage made (an adapter, a training set), with its checksum and size."""

    kind: str
    path: Path
    sha256: str
    bytes: int
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    """What the train stage made: the adapter, its training history and the files to record."""

    adapter: Path
    n_train: int  # the examples the trainer kept
    history: tuple[StepInfo, ...]  # one per logged step
    artifacts: tuple[Artifact, ...]


@dataclass(frozen=True)
class Sample:
    """An accepted synthetic sample as training sees it (a human verdict already applied)."""

    id: int
    key: str
    input: str
    output: str


@dataclass(frozen=True)
class ExportedFile:
    """One file of an export, as recorded in the run's artifacts."""

    path: Path  # absolute, under the export folder
    sha256: str
    bytes: int
    role: str  # model | adapter | lora | tokenizer | card | modelfile | config | manifest


@dataclass(frozen=True)
class Check:
    """One exported model, loaded and tried: what worked and what it scored."""

    target: str  # file or folder name in the export, e.g. "x-q8_0.gguf"
    engine: str  # "llama.cpp" or "transformers"
    loads: bool
    template_ok: bool
    stops: bool
    score: float | None  # share of slice items right (0..1)
    agreement: float | None  # share of slice items predicted exactly as the in-memory model did
    n_items: int
    seconds: float
    problems: tuple[str, ...] = ()
    chat_format: str | None = None  # what llama-cpp-python chose for this file

    def drop(self, reference: float) -> float | None:
        """Points lost against the in-memory model's score."""
        return None if self.score is None else 100 * (reference - self.score)

    def passes(self, reference: float, max_drop: float) -> bool:
        drop = self.drop(reference)
        # One item flipping is noise on a small slice (1 of 7 is 14 points): a failure needs more.
        tolerated = max(max_drop, 100 / self.n_items if self.n_items else 0.0)
        broken = any(p.startswith("config") for p in self.problems)  # e.g. a leaked quantization_config
        return (self.loads and self.template_ok and self.stops and not broken
                and drop is not None and drop <= tolerated)


@dataclass(frozen=True)
class Verification:
    """An export's checks next to the in-memory model (base + adapter) on one validation slice."""

    reference_score: float  # in-memory model (base + adapter, transformers) on the slice
    n_items: int
    max_drop: float
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(c.passes(self.reference_score, self.max_drop) for c in self.checks)


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: the folder, its files with checksums, and the verification."""

    run_id: str
    round: int
    format: str
    quant: str | None
    out_dir: Path  # the final folder, or `<out>.unverified` when verification failed
    files: tuple[ExportedFile, ...]
    verification: Verification | None  # None with verify=False
    seconds: float

    @property
    def ok(self) -> bool:
        return self.verification is None or self.verification.passed
