"""Nothing silently cut: a training example longer than train.max_length is left out and named,
by one rule for every backend; a teacher prompt longer than teacher.n_ctx is a rejected row."""

from __future__ import annotations

from typing import Any

import pytest

from pada_local.backends.base import ChatRequest, TrainExample, TrainSpec
from pada_local.backends.lengths import example_length, fit_examples, fit_spec, truncation_report
from pada_local.errors import ConfigError

LONG = " ".join(f"word{i}" for i in range(300))


def pair(i: int, words: int = 1, answer: str = "yes") -> TrainExample:
    text = " ".join(f"w{i}-{j}" for j in range(words))
    return TrainExample(({"role": "user", "content": f"Echo {text}"},), answer, f"item-{i}")


@pytest.fixture(scope="module")
def tokenizer(student_dir: Any) -> Any:
    from pada_local.backends.hf import load_tokenizer

    return load_tokenizer(student_dir)


class MlxLikeTokenizer:
    """mlx-lm's TokenizerWrapper as the mlx backend sees it: apply_chat_template forces
    return_dict=False and adds enable_thinking; everything else is forwarded."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    def apply_chat_template(self, *args: Any, tokenize: bool = True, **kwargs: Any) -> Any:
        kwargs.setdefault("enable_thinking", False)
        kwargs["return_dict"] = False
        return self._tokenizer.apply_chat_template(*args, tokenize=tokenize, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


def trl_length(tokenizer: Any, ex: TrainExample) -> tuple[int, int]:
    """Tokens and answer tokens as TRL's SFTTrainer prepares a conversational prompt/completion row."""
    from trl.data_utils import _tokenize, common_prefix_length

    from pada_local.backends.peft_trainer import sft_rows

    row = sft_rows(TrainSpec(tokenizer.name_or_path, (ex,), tokenizer.name_or_path))[0]
    prompt = _tokenize(tokenizer, row["prompt"], add_generation_prompt=True)["input_ids"]
    full = _tokenize(tokenizer, row["prompt"] + row["completion"])["input_ids"]
    return len(full), len(full) - common_prefix_length(prompt, full)


def mlx_length(tokenizer: Any, ex: TrainExample) -> tuple[int, int]:
    """Tokens and answer tokens as mlx-lm's ChatDataset.process(mask_prompt=True) counts them."""
    messages = [*ex.prompt_messages, {"role": "assistant", "content": ex.answer}]
    tokens = tokenizer.apply_chat_template(messages)
    offset = len(tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True))
    return len(tokens), len(tokens) - offset


def test_lengths_are_counted_as_trl_and_mlx_count_them(tokenizer):
    examples = [pair(i, words=w, answer=a) for i, (w, a) in enumerate(
        [(1, "yes"), (5, "no"), (40, "a longer answer of several words"), (120, "x"), (2, "")])]
    mlx = MlxLikeTokenizer(tokenizer)
    for ex in examples:
        assert example_length(tokenizer, ex) == trl_length(tokenizer, ex) == mlx_length(mlx, ex)
        assert example_length(mlx, ex) == example_length(tokenizer, ex)
    cut = sorted(example_length(tokenizer, ex)[0] for ex in examples)[2]  # some fit, some do not
    peft_fit, mlx_fit = fit_examples(tokenizer, examples, cut), fit_examples(mlx, examples, cut)
    assert peft_fit == mlx_fit
    assert [ex.id for ex in peft_fit.kept] == [ex.id for ex in examples
                                               if example_length(tokenizer, ex)[0] <= cut]
    assert peft_fit.dropped_ids and len(peft_fit.kept) + len(peft_fit.dropped_ids) == len(examples)


def test_nothing_fitting_is_a_config_error_with_a_length_to_use(tokenizer, student_dir, tmp_path):
    spec = TrainSpec(student_dir, (pair(1), pair(2)), tmp_path / "adapter", max_length=8)
    with pytest.raises(ConfigError, match="no training example fits") as err:
        fit_spec(spec, tokenizer)
    assert err.value.hint is not None and "raise train.max_length to at least" in err.value.hint


def test_examples_without_an_id_are_named_by_position(tokenizer):
    examples = [TrainExample(({"role": "user", "content": LONG},), "x"), pair(1)]
    assert fit_examples(tokenizer, examples, 64).dropped_ids == ("#0",)


def test_peft_trains_on_the_rest_and_names_the_dropped_example(student_dir, tmp_path, monkeypatch):
    from pada_local.backends import peft_trainer
    from pada_local.stages.train import train_student

    seen: list[int] = []
    rows = peft_trainer.sft_rows
    monkeypatch.setattr(peft_trainer, "sft_rows",
                        lambda spec: (seen.append(len(spec.examples)), rows(spec))[1])
    long_one = TrainExample(({"role": "user", "content": "Repeat this."},), LONG, "too-long")
    examples = (pair(1), pair(2), long_one, pair(3))
    spec = TrainSpec(student_dir, examples, tmp_path / "adapter", max_steps=1, batch_size=2, rank=4, alpha=8,
                     max_length=64)
    events: list[Any] = []
    adapter = train_student(peft_trainer.PeftTrainer(), spec, report=events.append, round_=0)
    assert adapter.dropped_ids == ("too-long",) and adapter.dropped == 1
    assert seen == [3] and adapter.steps == 1
    assert (adapter.path / "adapter_model.safetensors").is_file()
    logs = [e.message for e in events if e.kind == "log" and e.stage == "train"]
    assert len(logs) == 1 and "1 of 4" in logs[0] and "too-long" in logs[0] and "max_length=64" in logs[0]


def test_preflight_report_warns_over_one_percent_and_suggests_a_length(tokenizer, student_dir):
    short = [pair(i, words=3) for i in range(98)]
    longs = [TrainExample(({"role": "user", "content": LONG},), "x", f"long-{i}") for i in range(2)]
    one = truncation_report(tokenizer, short + longs[:1] + [pair(99)], 64)
    assert one.n_dropped == 1 and one.first_ids == ("long-0",)
    assert one.suggested_max_length is None and one.warning is None  # 1% is within tolerance
    two = truncation_report(student_dir, short + longs, 64)  # a model folder works as well
    assert two.n_dropped == 2 and two.first_ids == ("long-0", "long-1")
    assert two.warning is not None and "long-0" in two.warning and "2 of 100" in two.warning
    assert two.suggested_max_length is not None and two.suggested_max_length % 32 == 0
    assert f"train.max_length to {two.suggested_max_length}" in two.warning
    after = truncation_report(tokenizer, short + longs, two.suggested_max_length)
    assert after.n_dropped <= 1 and after.warning is None


def test_preflight_report_reads_an_unprepared_gguf_student(tokenizer, teacher_gguf):
    from pada_local import models

    examples = [pair(1), TrainExample(({"role": "user", "content": LONG},), "x", "long")]
    assert truncation_report(teacher_gguf, examples, 64) == truncation_report(tokenizer, examples, 64)
    spec = models.resolve_student(str(teacher_gguf))
    assert models.tokenizer_source(spec) in (spec.hf_dir, teacher_gguf)


def test_training_examples_carry_ids():
    from pada_local.config import TaskConfig
    from pada_local.records import Example
    from pada_local.stages.train import training_examples

    made = training_examples(TaskConfig(), [Example("q7", "2+2?", "4")], [("3+3?", "6"), ("1+1?", "2")])
    assert [ex.id for ex in made] == ["q7", "synthetic-1", "synthetic-2"]


# ---------------------------------------------------------------- teacher context window


def test_prompt_longer_than_teacher_ctx_is_a_failed_completion(teacher_gguf):
    from pydantic import BaseModel

    from pada_local.backends.llama_cpp import LlamaCppGenerator

    class Reply(BaseModel):
        answer: str

    gen = LlamaCppGenerator(teacher_gguf, n_ctx=128, max_tokens=8, temperature=0.0)
    try:
        long_req = ChatRequest(({"role": "user", "content": LONG},), schema=Reply)
        short_req = ChatRequest(({"role": "user", "content": "Say hi."},))
        got = gen.generate([long_req, short_req])
    finally:
        gen.close()
    assert not got[0].ok and got[0].data is None
    assert got[0].error is not None and got[0].error.startswith("prompt too long for teacher.n_ctx=128 (")
    assert got[0].prompt_tokens > 128
    assert got[1].ok and got[1].text  # the next request in the batch still runs


def test_generation_stage_records_the_too_long_prompt_as_rejected(teacher_gguf):
    from pada_local.backends.llama_cpp import LlamaCppGenerator
    from pada_local.config import TaskConfig
    from pada_local.records import Example, Job
    from pada_local.stages.generate import run_jobs

    origin = Example("t1", LONG, "x")
    candidates: list[Any] = []
    gen = LlamaCppGenerator(teacher_gguf, n_ctx=128, max_tokens=8)
    try:
        run_jobs(gen, [Job("r1:paraphrase:0", "paraphrase", 1, origin=origin)], TaskConfig(), [origin], 0,
                 on_candidate=candidates.append)
    finally:
        gen.close()
    assert len(candidates) == 1
    assert candidates[0].parse_error.startswith("prompt too long for teacher.n_ctx=128")
