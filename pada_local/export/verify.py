"""Verification of an export before it is moved into place: each exported model loaded through
the backends' own generators (llama.cpp for GGUF, transformers otherwise), its chat template
compared with the one the student was trained with, generation checked to stop at the end-of-turn
token, and a slice of the validation set scored next to the in-memory model (base + adapter)."""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backends import get_generator
from ..backends.base import ChatRequest, Completion
from ..errors import DataError, PadaError
from ..events import Reporter, StageProgress
from ..files import sha256_file
from ..ledger.runs import Ledger
from ..prompts import student_messages
from ..records import Check, Verification
from .converter import Converter
from .formats import base_gguf, lora_gguf_path, quiet_loading
from .plan import Plan
from .template import turn_suffix

MAX_DROP = 15.0  # points of the validation slice: more is a failed export
SLICE = 20  # validation items scored through the exported model
PROBES = ("What is 2 plus 2?", "Say hello.")  # short prompts any instruct model ends quickly
PROBE_TOKENS = 64


@dataclass(frozen=True)
class _Item:
    input: str
    reference: str
    system: str | None = None
    context: tuple[tuple[str, str], ...] = ()  # earlier turns of a conversation


@dataclass(frozen=True)
class _Target:
    """One exported model to try: how to load it, and what to inspect once loaded."""

    name: str  # file or folder name in the export, e.g. "x-q8_0.gguf"
    engine: str  # "llama.cpp" or "transformers"
    load: Callable[[], Any]  # the generator
    inspect: Callable[[Any], tuple[list[str], str | None]]  # (template/config problems, chat format)


def verify_export(plan: Plan, conv: Converter | None, tmp: Path, scratch: Path, main: Path,
                  report: Reporter) -> Verification:
    """The exported model(s) next to the in-memory model, on the same validation slice."""
    items = _slice(plan)
    n_models = 1 + 1 + int(plan.lora_gguf)
    progress = StageProgress(report, "verify", plan.round, total=n_models * len(items))
    ref_preds, ref_score = _reference(plan, items, progress)
    checks = [_check(plan, _main_target(plan, main, items), items, ref_preds, progress)]
    if plan.lora_gguf:
        assert conv is not None, "a GGUF LoRA export always has its converter"
        lora = lora_gguf_path(plan, tmp)
        target = _gguf_target(plan, lora.name, base_gguf(plan, conv, scratch), lora, items)
        checks.append(_check(plan, target, items, ref_preds, progress))
    progress.end()
    return Verification(ref_score, len(items), MAX_DROP, tuple(checks))


# ---------------------------------------------------------------- the slice and the reference


def _slice(plan: Plan) -> list[_Item]:
    """Up to SLICE validation items spread over the split (data files are often grouped by
    kind): from the data file (exact prompts), else from the run's stored evaluation."""
    from ..data.shapes import load_split

    data = plan.cfg.data
    try:
        examples = load_split(data.validation, data.fields, "validation", data.limit)
        return _spread([_Item(ex.input, ex.output, ex.system, ex.context) for ex in examples], SLICE)
    except (DataError, OSError):
        pass
    with Ledger.open(plan.store) as ledger:
        rows = ledger.for_run(plan.run_id).eval_items(plan.round, "validation")
    if not rows:
        raise PadaError("no validation items to verify the export on",
                        hint="use --no-verify to skip verification")
    return _spread([_Item(r["input"], r["reference"]) for r in rows], SLICE)


def _spread(items: list[_Item], k: int) -> list[_Item]:
    """k items at even steps through the list (all of them when there are fewer)."""
    if len(items) <= k:
        return items
    return [items[i * len(items) // k] for i in range(k)]


_REFERENCE: dict[tuple[Any, ...], tuple[list[str], float]] = {}


def _reference(plan: Plan, items: list[_Item], progress: StageProgress) -> tuple[list[str], float]:
    """The in-memory model's predictions (base + adapter, transformers, greedy); cached per
    process because several exports of one round share them."""
    key = (str(plan.spec.hf_dir), sha256_file(plan.adapter / "adapter_model.safetensors"), tuple(items),
           plan.cfg.task.model_dump_json())
    if key not in _REFERENCE:
        progress.log("scoring the in-memory model (base + adapter) on the validation slice")
        gen = _hf_generator(plan, plan.spec.hf_dir, plan.adapter)
        preds = [c.text for c in gen.generate(_requests(plan, items))]
        del gen
        gc.collect()
        _REFERENCE[key] = (preds, _score(plan, items, preds, preds))
    progress.step(len(items))
    return _REFERENCE[key]


def _messages(plan: Plan, item: _Item) -> tuple[dict[str, str], ...]:
    return student_messages(plan.cfg.task, item.input, item.system, item.context)


def _requests(plan: Plan, items: list[_Item], max_tokens: int | None = None) -> list[ChatRequest]:
    cap = plan.cfg.task.max_new_tokens if max_tokens is None else max_tokens
    return [ChatRequest(_messages(plan, it), max_tokens=cap, temperature=0.0, seed=0) for it in items]


def _score(plan: Plan, items: list[_Item], preds: list[str], ref_preds: list[str]) -> float:
    """The task's scorer; a judge-scored task counts agreement with the in-memory model
    instead (a judge would need the teacher, and the export must not change answers)."""
    from ..scoring import Scorer

    if not items:
        return 0.0
    if plan.cfg.task.scorer.kind == "judge":
        return _agreement(preds, ref_preds)
    scorer = Scorer(plan.cfg.task.scorer)
    return sum(scorer.score(p, it.reference) for p, it in zip(preds, items, strict=True)) / len(items)


def _agreement(preds: Sequence[str], ref_preds: Sequence[str]) -> float:
    same = sum(p.strip() == r.strip() for p, r in zip(preds, ref_preds, strict=True))
    return same / len(preds) if preds else 0.0


# ---------------------------------------------------------------- trying one exported model


def _check(plan: Plan, target: _Target, items: list[_Item], ref_preds: list[str],
           progress: StageProgress) -> Check:
    """Load it, inspect its template, probe the stop, score the slice."""
    start = time.perf_counter()
    try:
        gen = target.load()
    except Exception as err:  # a broken export fails in many ways; report it, do not crash
        progress.step(len(items))
        return Check(target.name, target.engine, False, False, False, None, None, len(items), 0.0,
                     (f"load failed: {err}",))
    try:
        problems, chat_format = target.inspect(gen)
        stops = _stops(plan, gen, items)
        done = gen.generate(_requests(plan, items), on_item=lambda i, _: progress.step())
        preds = [c.text.strip() for c in done]
    finally:
        _release(gen)
        del gen
        gc.collect()
    if not stops:
        problems.append("generation did not stop at the end-of-turn token on the probe prompts")
    return Check(target.name, target.engine, True, not any(p.startswith("template") for p in problems), stops,
                 _score(plan, items, preds, ref_preds), _agreement(preds, ref_preds), len(items),
                 time.perf_counter() - start, tuple(problems), chat_format)


def _release(gen: Any) -> None:
    close = getattr(gen, "close", None)
    if close is not None:
        close()


def _stops(plan: Plan, gen: Any, items: list[_Item]) -> bool:
    """On a short prompt, generation must end at the end-of-turn token, not run to the token
    cap: the 'babbles after export' failure. One probe at a time: the first that stops settles it."""
    for text in (*PROBES, *(it.input for it in items[:2])):
        if _stopped(gen.generate(_requests(plan, [_Item(text, "")], max_tokens=PROBE_TOKENS))[0]):
            return True
    return False


def _stopped(done: Completion) -> bool:
    # llama.cpp says why it stopped; transformers does not, but it stops only at an end-of-turn
    # id, so fewer tokens than the cap means it did.
    if done.finish_reason is not None:
        return done.finish_reason == "stop"
    return done.completion_tokens < PROBE_TOKENS


def _main_target(plan: Plan, main: Path, items: list[_Item]) -> _Target:
    if plan.fmt == "gguf":
        return _gguf_target(plan, main.name, main, None, items)
    if plan.fmt == "merged":
        return _hf_target(plan, plan.out.name, main, None, items)
    return _hf_target(plan, plan.out.name, plan.spec.hf_dir, main, items)


# ---------------------------------------------------------------- llama.cpp


def _gguf_target(plan: Plan, name: str, model: Path, lora: Path | None, items: list[_Item]) -> _Target:
    def inspect(gen: Any) -> tuple[list[str], str | None]:
        return _gguf_template_problems(plan, gen.llm, items), gen.llm.chat_format

    return _Target(name, "llama.cpp", lambda: get_generator("llama_cpp", model, lora_path=lora), inspect)


def _gguf_template_problems(plan: Plan, llm: Any, items: list[_Item]) -> list[str]:
    """The GGUF must carry the chat template the student was trained with, ending a turn with
    the token llama.cpp stops on."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from ..backends.hf import load_tokenizer, render_prompt

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return ["template: the GGUF has no tokenizer.chat_template "
                "(llama.cpp would fall back to another format)"]
    eos, bos = _token_text(llm, llm.token_eos()), _token_text(llm, llm.token_bos())
    msgs = list(_messages(plan, items[0] if items else _Item(PROBES[0], "")))
    # Any: llama-cpp-python types messages as TypedDicts; ours are plain dicts of the same shape.
    render: Any = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
    got = render(messages=msgs).prompt
    tokenizer = load_tokenizer(plan.spec.hf_dir)
    problems = []
    if got != render_prompt(tokenizer, msgs):
        problems.append("template: the GGUF's chat template renders a different prompt than the student's")
    if eos not in turn_suffix(tokenizer):
        problems.append(f"template: the GGUF's end token {eos!r} does not end an assistant turn")
    return problems


def _token_text(llm: Any, token: int) -> str:
    return "" if token == -1 else str(llm.detokenize([token], special=True).decode(errors="replace"))


# ---------------------------------------------------------------- transformers


def _hf_generator(plan: Plan, model_dir: Path, adapter: Path | None) -> Any:
    with quiet_loading():
        return get_generator("hf", model_dir, adapter=adapter, max_new_tokens=plan.cfg.task.max_new_tokens)


def _hf_target(plan: Plan, name: str, model_dir: Path, adapter: Path | None, items: list[_Item]) -> _Target:
    folder = adapter or model_dir  # where the exported tokenizer and config are

    def inspect(_: Any) -> tuple[list[str], str | None]:
        return _hf_template_problems(plan, folder, items), None

    return _Target(name, "transformers", lambda: _hf_generator(plan, model_dir, adapter), inspect)


def _hf_template_problems(plan: Plan, folder: Path, items: list[_Item]) -> list[str]:
    from ..backends.hf import load_tokenizer, render_prompt

    msgs = list(_messages(plan, items[0] if items else _Item(PROBES[0], "")))
    try:
        exported = load_tokenizer(folder)
    except Exception as err:
        return [f"template: the exported tokenizer does not load ({err})"]
    if render_prompt(exported, msgs) != render_prompt(load_tokenizer(plan.spec.hf_dir), msgs):
        return ["template: the exported chat template renders a different prompt than the student's"]
    config = folder / "config.json"
    if config.is_file() and "quantization_config" in json.loads(config.read_text()):
        return ["config: config.json still carries a quantization_config"]
    return []
