"""One typed configuration for a run: a YAML file plus `--set key=value` overrides.

Unknown keys are errors (extra="forbid"), so a typo never silently falls back to a default.
Relative paths are resolved against the config file's folder, so a config can travel with
its data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


ENDPOINT_PREFIX = "openai:"


class EndpointConfig(_Section):
    base_url: str = Field(..., description="The server's OpenAI API root, e.g. http://127.0.0.1:8080/v1.")
    model: str = Field(..., min_length=1, description="The model's name as the server lists it (/models).")
    api_key_env: str | None = Field(
        None, description="Environment variable holding the API key (the key itself is never saved); "
        "None = no key.")
    timeout: float = Field(300.0, gt=0, description="Seconds to wait for one reply.")
    retries: int = Field(3, ge=0, description="Retries after a connection error, time-out or server error.")

    @field_validator("base_url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"'{url}' is not an http:// or https:// URL")
        return url

    @property
    def compact(self) -> str:
        return f"{ENDPOINT_PREFIX}{self.base_url}#{self.model}"


def parse_endpoint(text: str) -> dict[str, str]:
    """`openai:BASE_URL#MODEL` (the `openai:` prefix optional) as base_url and model."""
    url, sep, model = text.removeprefix(ENDPOINT_PREFIX).rpartition("#")
    if not sep or not url or not model:
        raise ValueError(f"'{text}' is not of the form openai:BASE_URL#MODEL")
    return {"base_url": url, "model": model}


class ModelsConfig(_Section):
    teacher: str = Field("smollm2-135m", description="Teacher: a catalogue name, a path to a GGUF file, or "
                         "openai:BASE_URL#MODEL for a model behind an OpenAI-compatible server.")
    student: str = Field(
        "smollm2-135m",
        description="Student: a catalogue name, a Hugging Face model directory, or a GGUF file.",
    )
    judge: str | None = Field(
        None, description="Judge GGUF (catalogue name or path) or openai:BASE_URL#MODEL; None = the teacher.")
    embedder: str = Field(
        "all-minilm-l6-v2", description="Sentence-transformers model: catalogue name or directory."
    )
    teacher_endpoint: EndpointConfig | None = Field(
        None, description="The teacher behind an OpenAI-compatible server (Ollama, LM Studio, llama-server, "
        "vLLM); `teacher` then reads openai:BASE_URL#MODEL. Also takes that compact form.")
    judge_endpoint: EndpointConfig | None = Field(
        None, description="The judge behind an OpenAI-compatible server, as teacher_endpoint.")

    @field_validator("teacher_endpoint", "judge_endpoint", mode="before")
    @classmethod
    def _compact_endpoint(cls, value: Any) -> Any:
        return parse_endpoint(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _endpoints(self) -> ModelsConfig:
        """`teacher: openai:URL#MODEL` and `teacher_endpoint` are one setting in two forms: either
        fills in the other (so run history names the server), and they must agree."""
        for role in ("teacher", "judge"):
            name, endpoint = getattr(self, role), getattr(self, f"{role}_endpoint")
            compact = name is not None and name.startswith(ENDPOINT_PREFIX)
            if endpoint is None:
                if compact:
                    setattr(self, f"{role}_endpoint", EndpointConfig.model_validate(parse_endpoint(name)))
                continue
            if compact:
                given = parse_endpoint(name)
                if (given["base_url"], given["model"]) != (endpoint.base_url, endpoint.model):
                    raise ValueError(f"{role} '{name}' and {role}_endpoint name different servers or models")
            elif role in self.model_fields_set and name is not None:
                raise ValueError(f"set {role} or {role}_endpoint, not both")
            if name != endpoint.compact:
                setattr(self, role, endpoint.compact)
        return self


class TeacherConfig(_Section):
    n_ctx: int = Field(2048, ge=256, description="llama.cpp context size in tokens.")
    n_threads: int | None = Field(None, ge=1, description="CPU threads for llama.cpp; None = all cores.")
    n_gpu_layers: int = Field(0, ge=-1, description="Layers offloaded to the GPU (-1 = all).")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature for generation.")
    max_tokens: int = Field(256, ge=8, description="Cap on tokens per teacher reply.")
    concurrency: int = Field(
        4, ge=1, le=64, description="Requests in flight at once to a teacher behind a server (halved "
        "after an error or time-out); the in-process teacher's is teacher.parallel.")
    parallel: int | None = Field(
        None, ge=1, le=64, description="Sequences the in-process llama.cpp teacher decodes together in one "
        "batch (each its own sampler and stops; a shared prompt opening computed once). Its KV cache is "
        "parallel x n_ctx cells, checked against free memory before it is made (fewer, said in one line, "
        "if they do not fit). None = 8 where they fit; 1 = one request at a time.")
    seed: int | None = Field(
        None, ge=0,
        description="Sampling seed for requests without their own; None = derived from loop.seed.")


class FieldMap(_Section):
    input: str = Field("prompt", description="Field holding the user input (ignored for `messages`).")
    output: str = Field("completion", description="Field holding the reference answer.")
    id: str | None = Field("id", description="Field holding a unique id; missing ids are numbered.")


class DataConfig(_Section):
    train: Path = Field(..., description="Training split: JSONL, CSV, or a `save_to_disk` folder.")
    validation: Path = Field(..., description="Validation split (drives patterns and round choice).")
    test: Path | None = Field(None, description="Sealed test split: reported, never used to decide.")
    fields: FieldMap = Field(default_factory=FieldMap, description="Names of the fields to read.")
    limit: int | None = Field(None, ge=1, description="Use only the first N items of each split.")
    dir: Path | None = Field(
        None, description="An mlx-lm style folder holding train.jsonl, valid.jsonl and (optionally) "
        "test.jsonl, instead of data.train / data.validation / data.test.")

    @model_validator(mode="before")
    @classmethod
    def _from_dir(cls, raw: Any) -> Any:
        """data.dir names the split files; it cannot be combined with other split paths (a saved
        config, whose split paths are the folder's own files, validates again)."""
        if not isinstance(raw, dict) or raw.get("dir") is None:
            return raw
        folder, raw = Path(raw["dir"]), dict(raw)
        for split, name in (("train", "train.jsonl"), ("validation", "valid.jsonl"), ("test", "test.jsonl")):
            given = raw.get(split)
            if given is not None and Path(given) != folder / name:
                raise ValueError(f"data.dir cannot be combined with data.{split}: "
                                 "give the folder or the split files, not both")
            if split != "test":  # an optional test.jsonl is looked for once the path is resolved
                raw[split] = folder / name
        return raw


ScorerKind = Literal["exact", "numeric", "label", "regex", "choice", "judge"]


class ScorerConfig(_Section):
    kind: ScorerKind = Field("exact", description="How a prediction is scored (0/1).")
    labels: list[str] | None = Field(None, description="Label set for `label`.")
    pattern: str | None = Field(None, description="Regex with one group for `regex`.")
    tolerance: float = Field(1e-6, ge=0, description="Absolute tolerance for `numeric`.")
    choices: str = Field("ABCDE", description="Allowed letters for `choice`.")
    rubric: str | None = Field(None, description="Rubric the judge applies for `judge`.")
    mode: Literal["generate", "loglik"] | None = Field(
        None, description="How the student is scored: `generate` (greedy text, then the extractor) or "
        "`loglik` (the most likely label after the prompt, as lm-eval-harness scores multiple choice). "
        "Default: loglik for `label` and `choice`, generate otherwise.")

    @model_validator(mode="after")
    def _needs(self) -> ScorerConfig:
        need = {"label": "labels", "regex": "pattern", "judge": "rubric"}.get(self.kind)
        if need is not None and getattr(self, need) is None:
            raise ValueError(f"scorer kind '{self.kind}' needs '{need}'")
        if self.mode == "loglik" and self.kind not in ("label", "choice"):
            raise ValueError(f"scorer mode 'loglik' needs a fixed answer set: kind label or choice, "
                             f"not '{self.kind}'")
        return self

    @property
    def effective_mode(self) -> str:
        if self.mode is not None:
            return self.mode
        return "loglik" if self.kind in ("label", "choice") else "generate"


class TaskConfig(_Section):
    name: str = Field("task", description="Short name of the task.")
    description: str = Field("", description="What the task is, in a sentence, for the teacher.")
    system_prompt: str | None = Field(None, description="System prompt given to the student.")
    answer_format: str = Field("", description="How an answer must look (told to the teacher).")
    scorer: ScorerConfig = Field(default_factory=ScorerConfig, description="Failure criterion.")
    max_new_tokens: int = Field(32, ge=1, description="Greedy decoding cap for evaluation.")
    verifier: str | None = Field(
        None, description="Name of a built-in verifier that computes the right answer for an input."
    )


class TrainConfig(_Section):
    backend: Literal["auto", "peft", "unsloth", "mlx"] = Field("auto", description="Trainer backend.")
    rank: int = Field(8, ge=1, description="LoRA rank r.")
    alpha: int = Field(16, ge=1, description="LoRA alpha.")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="Module names LoRA adapts.",
    )
    epochs: float = Field(2.0, gt=0, description="Passes over the training set.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many steps (overrides epochs).")
    lr: float = Field(2e-4, gt=0, description="Peak learning rate.")
    batch_size: int = Field(8, ge=1, description="Sequences per optimizer step (per device).")
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps.")
    max_length: int = Field(256, ge=16, description="Longest training example in tokens (prompt + answer, "
                            "the student's chat template); a longer one is left out and named, never cut.")
    precision: Literal["auto", "fp32"] = Field(
        "auto", description="auto = the device's fastest type (bf16 on CUDA 8.0+ and on CPUs with native "
        "bf16, fp16 on older GPUs and Macs); fp32 = the same numbers on every CPU (peft only; slower where "
        "bf16 is native).")
    seed: int | None = Field(
        None, ge=0, description="Training seed (each round derives its own from it); None = derived from "
        "loop.seed, so another loop.seed trains another way.")


class LoopConfig(_Section):
    strategy: Literal["pada", "llm2llm", "paraphrase", "none"] = Field(
        "pada", description="Augmentation strategy (docs/method.md, 'Strategies')."
    )
    rounds: int = Field(3, ge=0, description="Augmentation rounds after round 0.")
    budget: int | None = Field(None, ge=0, description="Synthetic samples per round; None = |D_train|.")
    analysis_cap: int = Field(32, ge=1, description="Most validation failures analysed per round.")
    k_max: int = Field(6, ge=1, description="Largest k tried by k-means.")
    patience: int = Field(2, ge=1, description="Stop after this many rounds without a better D_val score.")
    select: Literal["best_val", "last", "last_unless_worse"] = Field(
        "best_val", description="Which round is the run's result (and a comparison cell's): the best by "
        "validation score, the last, or the last unless an earlier round beats it on the validation "
        "items beyond their noise (one-sided exact McNemar test, 5%). See docs/method.md.")
    seed: int = Field(0, ge=0, description="The run's seed: sampling, clustering, generation, and (unless "
                      "train.seed / teacher.seed are set) training and teacher sampling.")
    fixed_rounds: bool = Field(
        False, description="Run exactly `rounds` rounds, no early stop; a round that accepts nothing "
        "retrains on the previous set with its own seed (how `pada compare` keeps strategies comparable).")
    exemplars: int = Field(3, ge=0, description="Train exemplars shown to the teacher per generation prompt.")
    exemplar_sets: int | None = Field(
        None, ge=1, description="Pattern jobs draw their exemplars from this many fixed draws per pattern, "
        "so jobs that share a draw share the prompt's opening and the in-process llama.cpp teacher "
        "evaluates it once (faster; fewer distinct prompts). None = a fresh draw per job.")
    generate_unconfirmed: Literal["skip", "review"] = Field(
        "skip", description="When nothing could accept a sample (the teacher failed its check, no task "
        "verifier, no computed answers, quality.unconfirmed: reject): `skip` generation and say so, or "
        "generate anyway for a person to `review` in the TUI (rejected unless a person accepts them).")
    label_first: bool = Field(
        True, description="Label and choice tasks: each job picks the answer first (pattern jobs: the "
        "labels of the validation failures behind the pattern; error jobs: the origin item's label) and "
        "the teacher writes an input that has it; the teacher's text never decides the label.")
    plan_label_mix: bool = Field(
        True, description="With label_first: plan the round's labels within quality.max_label_tv of "
        "D_train's mix before generating (a target the balance would drop goes to the student's wrong "
        "answer or the label furthest under its share), so no generation is made only to be dropped "
        "(decided on the simulated-teacher topics comparison; docs/method.md).")
    computed_answers: bool = Field(
        True, description="Numeric tasks: the teacher writes the computation as an arithmetic expression "
        "and a safe evaluator computes the answer.")


class QualityConfig(_Section):
    confirm_answer: bool = Field(True, description="Teacher re-solves each input; keep if it agrees.")
    judge: bool = Field(True, description="Ask the judge for a 1-5 quality score.")
    verifier_fixes_answer: bool = Field(
        False,
        description="With a task verifier: replace a wrong synthetic answer by the verified one "
        "instead of rejecting the sample (the teacher's text stays in the record).",
    )
    judge_threshold: int = Field(3, ge=1, le=5, description="Lowest judge score accepted.")
    teacher_check: int = Field(
        32, ge=0, description="Train items the teacher solves before round 1 (0 = no check: its "
        "re-solves and grades are trusted as they are).")
    teacher_margin: float = Field(
        5.0, ge=0, le=100, description="Points the teacher must beat the round-0 student's validation "
        "accuracy by (a separate judge: chance) before its re-solves or grades decide a sample.")
    teacher_pass: float | None = Field(
        95.0, ge=0, le=100, description="A teacher that solves at least this share (%) of the check's "
        "items passes whatever the student scores (a 97% student leaves no room to be 5 points better); "
        "None = the margin alone decides.")
    unconfirmed: Literal["keep", "reject", "student"] = Field(
        "reject", description="A label-first sample that nothing can confirm (the teacher failed its "
        "check, no verifier): reject it, keep it as written (measured on SST-2 with the embedded "
        "teacher: keeping them cost 3 test points, within noise; see docs/method.md), or keep it when "
        "the previous round's student gives its label at least quality.student_confidence.")
    student_confidence: float = Field(
        0.5, ge=0, le=1, description="With unconfirmed: student, the least share of the label options' "
        "probability (per-token log-likelihood, renormalised) the student must give a sample's label.")
    max_label_tv: float = Field(
        0.1, ge=0, le=1, description="Largest total-variation distance between a round's training-set "
        "label mix and D_train's (label and choice tasks); surplus samples are dropped (1 = off).")
    dup_cosine: float = Field(0.95, gt=0, le=1,
                              description="Embedding cosine at which two inputs are duplicates.")
    dup_ngram: float = Field(0.8, gt=0, le=1,
                             description="Word 3-gram Jaccard at which two inputs are duplicates.")


class Config(_Section):
    name: str = Field("run", description="Name shown in run history.")
    store: Path = Field(
        default_factory=lambda: Path(os.environ.get("PADA_STORE", "runs/pada.db")),
        description="SQLite run store (relative to the working directory; "
                    "default $PADA_STORE or runs/pada.db).",
    )
    workdir: Path = Field(Path("runs"),
                          description="Folder for adapters and exports (relative to the working directory).")
    models: ModelsConfig = Field(default_factory=ModelsConfig, description="Which models to use.")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="Teacher inference settings.")
    data: DataConfig = Field(..., description="Dataset splits.")
    task: TaskConfig = Field(default_factory=TaskConfig, description="Task definition and scorer.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="LoRA training settings.")
    loop: LoopConfig = Field(default_factory=LoopConfig, description="Rounds, budget and stop rules.")
    quality: QualityConfig = Field(default_factory=QualityConfig, description="Quality-control settings.")

    @model_validator(mode="after")
    def _derive_seeds(self) -> Config:
        """loop.seed seeds everything: unset training and teacher seeds are derived from it (and
        saved with the run); an explicit value wins."""
        from .seeds import derive

        if self.train.seed is None:
            self.train.seed = derive(self.loop.seed, "train")
        if self.teacher.seed is None:
            self.teacher.seed = derive(self.loop.seed, "teacher")
        return self


def _coerce(text: str) -> Any:
    import yaml

    return yaml.safe_load(text) if text != "" else ""


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (values parsed as YAML scalars) to a raw config dict."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}' is not KEY=VALUE", hint="e.g. --set loop.rounds=2")
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
        node[leaf] = _coerce(value)
    return raw


def _resolve_paths(cfg: Config, base: Path) -> Config:
    def fix(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else (base / p).resolve())

    # Run outputs follow the user's working directory; data paths follow the config file.
    cfg.store = cfg.store if cfg.store.is_absolute() else (Path.cwd() / cfg.store).resolve()
    cfg.workdir = cfg.workdir if cfg.workdir.is_absolute() else (Path.cwd() / cfg.workdir).resolve()
    if cfg.data.dir is not None:  # all at once: the split paths must stay the folder's files
        folder = fix(cfg.data.dir)
        assert folder is not None
        test = folder / "test.jsonl"
        cfg.data = cfg.data.model_copy(update={
            "dir": folder, "train": folder / "train.jsonl", "validation": folder / "valid.jsonl",
            "test": test if test.is_file() else None})
        return cfg
    for split in ("train", "validation", "test"):
        setattr(cfg.data, split, fix(getattr(cfg.data, split)))
    return cfg


def _format_validation(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def from_dict(raw: dict[str, Any], base: Path, source: str = "config") -> Config:
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation(err, source), hint="see `pada config --schema`") from None
    return _resolve_paths(cfg, base)


def load(path: Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config file, apply overrides, validate; paths relative to the file."""
    return from_dict(load_raw(path, overrides), path.parent.resolve(), str(path))


def load_raw(path: Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """The config file as a dict with the overrides applied, not yet validated (a comparison
    derives one config per strategy and seed from it)."""
    import yaml

    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(_read_text(path)) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return apply_overrides(raw, overrides or [])


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")  # a BOM left by Windows editors is harmless
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text", hint="save the file as UTF-8") from None


def dump(cfg: Config) -> dict[str, Any]:
    """The resolved config as plain JSON-able data, saved with each run."""
    return cfg.model_dump(mode="json")
