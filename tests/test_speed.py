"""Speed work that must not change results: padding-free training batches (same loss as padded
ones, tokens counted with and without padding) and the teacher's prompt-prefix reuse (the same
reply from a cold and a warm cache)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SENTENCES = ["a gorgeous , witty , seductive movie .", "bad .",
             "it 's a charming and often affecting journey that never quite takes off , sadly .",
             "the plot is nothing but boilerplate clichés from start to finish , and the script assumes "
             "that not only would subtlety be lost on the target audience , but that it 's also too "
             "difficult for the writer to master .", "fun !", "an utterly incompetent conclusion .",
             "one of the year 's best films .", "dull and lifeless ."]


def _examples():
    from pada_local.backends.base import TrainExample

    return tuple(TrainExample(({"role": "system", "content": "Label the sentiment."},
                               {"role": "user", "content": s}), "positive" if i % 2 else "negative", str(i))
                 for i, s in enumerate(SENTENCES))


def _train(model: Path, out: Path, layout: str, monkeypatch):
    from pada_local.backends import device, peft_trainer
    from pada_local.backends.base import TrainSpec

    monkeypatch.setattr(device, "training_dtype", lambda dev: "fp32")  # the math, not bf16 rounding
    monkeypatch.setattr(peft_trainer, "batch_layout", lambda model: layout)
    spec = TrainSpec(model, _examples(), out, max_steps=2, batch_size=8, seed=3, lr=1e-3)
    return peft_trainer.PeftTrainer().train(spec)


def _own_tokens(model: Path) -> int:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model))
    return sum(len(tok.apply_chat_template([*ex.prompt_messages, {"role": "assistant", "content": ex.answer}],
                                           tokenize=True, return_dict=False)) for ex in _examples())


def test_padding_free_batches_give_the_padded_loss_and_count_tokens(tiny_llama, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    padded = _train(tiny_llama, tmp_path / "padded", "padded", monkeypatch)
    free = _train(tiny_llama, tmp_path / "free", "padding-free", monkeypatch)
    # One batch holds all 8 examples: the first step's loss (before any update) must agree.
    assert padded.history[0].loss == pytest.approx(free.history[0].loss, rel=1e-5)
    assert free.history[1].loss == pytest.approx(padded.history[1].loss, rel=1e-3)
    own = _own_tokens(tiny_llama)
    # Two steps over the same 8 examples; TRL's rendering may add a token or two per example.
    assert 2 * own <= free.tokens <= 2 * (own + 2 * len(SENTENCES))
    assert padded.tokens == free.tokens
    assert free.padded_tokens == free.tokens  # nothing padded
    tok = AutoTokenizer.from_pretrained(str(tiny_llama))
    longest = max(len(tok(s)["input_ids"]) for s in SENTENCES)
    assert padded.padded_tokens >= 2 * len(SENTENCES) * longest > padded.tokens


def test_a_shared_prompt_opening_is_computed_once_with_the_same_loss(tiny_llama, tmp_path, monkeypatch):
    from pada_local.backends import peft_trainer
    from pada_local.backends.device import read_info

    free = _train(tiny_llama, tmp_path / "free", "padding-free", monkeypatch)
    shared = _train(tiny_llama, tmp_path / "shared", "shared-prefix", monkeypatch)
    assert shared.history[0].loss == pytest.approx(free.history[0].loss, rel=1e-5)
    assert shared.history[1].loss == pytest.approx(free.history[1].loss, rel=1e-3)
    assert shared.tokens == free.tokens  # the examples' own tokens, counted the same way
    # The template's opening and the system text ("Label the sentiment.") went in once per step.
    opening = len(os.path.commonprefix(_prompt_ids(tiny_llama)))
    assert shared.padded_tokens == free.tokens - 2 * (len(SENTENCES) - 1) * opening
    assert read_info(tmp_path / "shared")["batches"] == "shared-prefix"
    monkeypatch.undo()
    assert peft_trainer.batch_layout(_load(tiny_llama)) == "shared-prefix"  # sdpa takes the mask


def _prompt_ids(model: Path) -> list[list[int]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model))
    return [tok.apply_chat_template(list(ex.prompt_messages), tokenize=True, add_generation_prompt=True,
                                    return_dict=False) for ex in _examples()]


def _load(model: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(model))


def test_the_shared_prefix_row_needs_sdpa_and_no_sliding_window():
    from types import SimpleNamespace

    from pada_local.backends.batches import supports_custom_mask

    def model(attn: str, **config: object) -> SimpleNamespace:
        return SimpleNamespace(config=SimpleNamespace(_attn_implementation=attn, **config))

    assert supports_custom_mask(model("sdpa"))
    assert supports_custom_mask(model("sdpa", layer_types=["full_attention"] * 2, sliding_window=4096))
    assert not supports_custom_mask(model("flash_attention_2"))
    assert not supports_custom_mask(model("eager"))
    assert not supports_custom_mask(model("sdpa", layer_types=["sliding_attention", "full_attention"]))
    assert not supports_custom_mask(model("sdpa", sliding_window=4096))


def test_the_shared_prefix_row_sees_what_each_example_sees_alone():
    """Each block attends to the opening and to itself, causally, at its own positions; the
    opening and every block's first token are never targets."""
    import torch

    from pada_local.backends.batches import SharedPrefixCollator, example_tokens

    ex = [{"input_ids": [1, 2, 3, 4, 9, 8], "labels": [-100, -100, -100, -100, 9, 8]},
          {"input_ids": [1, 2, 3, 5, 6, 7], "labels": [-100, -100, -100, -100, -100, 7]},
          {"input_ids": [1, 2, 4, 6], "labels": [-100, -100, -100, 6]}]
    out = SharedPrefixCollator()(ex)
    assert out["input_ids"].tolist() == [[1, 2, 3, 4, 9, 8, 3, 5, 6, 7, 4, 6]]
    assert out["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5, 2, 3, 4, 5, 2, 3]]
    assert out["labels"].tolist() == [[-100, -100, -100, -100, 9, 8, -100, -100, -100, 7, -100, 6]]
    mask = out["attention_mask"][0, 0]
    assert mask[9].tolist() == [True, True] + [False] * 4 + [True] * 4 + [False] * 2  # block 2 at its end
    assert mask[11].tolist() == [True, True] + [False] * 8 + [True, True]
    assert not mask[4, 6] and mask[4].sum() == 5  # causal inside block 1
    assert example_tokens(out["position_ids"]) == 6 + 6 + 4
    # Nothing in common: each example alone in its block, as padding-free.
    alone = SharedPrefixCollator()([{"input_ids": [5, 1], "labels": [-100, 1]}, ex[0]])
    assert alone["position_ids"].tolist() == [[0, 1, 0, 1, 2, 3, 4, 5]]
    assert alone["attention_mask"][0, 0, 2, :2].tolist() == [False, False]
    assert example_tokens(torch.tensor([[0, 1, 2, 0, 1]])) == 5


def _requests():
    from pada_local.backends.base import ChatRequest
    from pada_local.prompts import SampleReply, render

    shots = [(s, "positive" if i % 2 else "negative") for i, s in enumerate(SENTENCES)]

    def job(first: int, name: str, seed: int) -> ChatRequest:
        msgs = render("generate_pattern", shots=shots[first:first + 3], pattern_name=name,
                      pattern_description="Misreads mixed reviews.", strategy="Mixed reviews.",
                      task_description="Label a movie review's sentiment.", answer_format="positive or negative")
        return ChatRequest(msgs, schema=SampleReply, seed=seed, max_tokens=48)

    judge = ChatRequest(({"role": "system", "content": "You grade answers. Reply with one number."},
                         {"role": "user", "content": "Is 'bad .' negative?"}), seed=5, max_tokens=8)
    # The same pattern twice (its opening reused from the context), another pattern, a request of
    # another stage in between, then the first again (its opening restored from a saved state).
    return [job(0, "mixed", 1), job(0, "mixed", 2), job(3, "mixed", 3), judge, job(1, "irony", 4),
            job(0, "mixed", 1)]


def test_prefix_reuse_gives_the_cold_cache_reply(teacher_gguf):
    from pada_local.backends.llama_cpp import LlamaCppGenerator

    warm = LlamaCppGenerator(teacher_gguf, n_ctx=1024, seed=0)
    assert warm.prefix is not None
    warm_texts = [warm.complete(r).text for r in _requests()]
    assert warm.prefix.hits > 0 and warm.prefix.states
    cold_texts = []
    for r in _requests():  # every request from an empty cache, nothing saved
        warm.prefix.states.clear()
        warm.prefix.live_cuts = ()
        warm.llm.reset()
        cold_texts.append(warm.complete(r).text)
    warm.close()
    assert warm_texts == cold_texts
    assert warm_texts[0] == warm_texts[-1]  # same request, same seed
    assert len(set(warm_texts[:3])) > 1  # and not one reply for everything


def test_prefix_pieces_follow_the_messages(teacher):
    """Cuts after the system text and before the last message, at token boundaries of the prompt
    the library builds; too short an opening is not cut."""
    pieces = teacher.prefix
    assert pieces is not None
    req = _requests()[0]
    tokens, cuts = pieces.pieces(req.messages)
    assert len(cuts) == 2 and 0 < cuts[0] < cuts[1] < len(tokens)
    system_only = pieces.head(messages=list(req.messages[:1])).prompt
    assert teacher.llm.detokenize(tokens[: cuts[0]], special=True).decode() in system_only
    short = ({"role": "system", "content": "Hi."}, {"role": "user", "content": "2+2?"})
    assert pieces.pieces(short)[1] == []


def test_exemplar_sets_share_a_patterns_draws_and_nothing_else():
    from pada_local.records import Example, Pattern
    from pada_local.stages.generate import pick_exemplars, plan_jobs

    train = [Example(f"t{i}", f"question {i}", str(i)) for i in range(40)]
    patterns = [Pattern(0, "a", "a", 3, ""), Pattern(1, "b", "b", 3, "")]
    pools = {0: tuple(train[:8]), 1: tuple(train[8:16])}

    def draws(sets):
        jobs = plan_jobs("pada", 1, 12, patterns, [], train, 7, pools, exemplar_sets=sets)
        return jobs, [tuple(ex.id for ex in pick_exemplars(j, train, 3)) for j in jobs]

    jobs, shared = draws(2)
    plain_jobs, plain = draws(None)
    assert [j.seed for j in jobs] == [j.seed for j in plain_jobs]  # sampling seeds unchanged
    by_pattern = {c: [d for j, d in zip(jobs, shared) if j.pattern.cluster == c] for c in (0, 1)}
    for c, ds in by_pattern.items():
        assert len(ds) == 6 and len(set(ds)) == 2  # two fixed draws per pattern ...
        assert ds[0] == ds[2] == ds[4] and ds[1] == ds[3] == ds[5]  # ... taken in turn
        assert all(set(d) <= {ex.id for ex in pools[c]} for d in ds)
    assert len(set(plain)) > 4  # a fresh draw per job by default
    assert draws(2)[1] == shared  # seeded: a resumed run draws the same


def test_cpu_training_type_follows_native_bf16(monkeypatch):
    from pada_local.backends import device

    avx512 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
    assert device.cpu_native_bf16(avx512)
    assert device.cpu_native_bf16("flags\t: fpu avx2 amx_tile amx_bf16\n")
    assert not device.cpu_native_bf16("flags\t: fpu sse2 avx2 avx512f avx512bw\n")  # emulated there
    assert not device.cpu_native_bf16("")
    monkeypatch.setattr(device, "cpu_native_bf16", lambda info=None: True)
    assert device.training_dtype("cpu") == "bf16"
    assert device.device_dtype("cpu") == "fp32"  # evaluation keeps fp32
    monkeypatch.setattr(device, "cpu_native_bf16", lambda info=None: False)
    assert device.training_dtype("cpu") == "fp32"


def test_precision_fp32_trains_in_fp32_where_bf16_is_native(tiny_llama, tmp_path, monkeypatch):
    """train.precision: fp32 gives the same numbers on every CPU; auto takes native bf16. The
    type used is recorded with the adapter."""
    from pada_local.backends import device
    from pada_local.backends.base import TrainExample, TrainSpec
    from pada_local.backends.peft_trainer import PeftTrainer
    from pada_local.config import TrainConfig
    from pada_local.stages.train import spec_for

    monkeypatch.setattr(device, "cpu_native_bf16", lambda info=None: True)
    examples = tuple(TrainExample(({"role": "user", "content": f"Say {w}."},), w, str(i))
                     for i, w in enumerate(["yes", "no", "maybe", "never"]))
    assert spec_for(TrainConfig(precision="fp32"), tiny_llama, examples, tmp_path).precision == "fp32"
    used = {}
    for precision in ("auto", "fp32"):
        spec = TrainSpec(tiny_llama, examples, tmp_path / precision, max_steps=1, batch_size=2,
                         precision=precision)
        adapter = PeftTrainer().train(spec)
        used[precision] = device.read_info(adapter.path)["compute_dtype"]
    assert used == {"auto": "bf16", "fp32": "fp32"}


def test_grammar_last_keeps_replies_valid_and_reproducible(teacher_gguf):
    """The grammar tests the sampled token; a refused one is redrawn under the grammar, so the
    replies still follow the schema, and the same request gives the same reply."""
    import json

    from pada_local.backends.llama_cpp import LlamaCppGenerator

    gen = LlamaCppGenerator(teacher_gguf, n_ctx=1024, seed=0)
    assert gen.grammar_last
    refused: list[int] = []
    make = gen.llm._init_sampler

    def keep(*args, **kwargs):
        sampler = make(*args, **kwargs)
        refused.append(sampler)
        return sampler

    gen.llm._init_sampler = keep
    from pada_local.backends.base import ChatRequest
    from pada_local.prompts import SampleReply

    # A prompt that asks for prose: the plain chain's first choice is not JSON, so it is refused.
    prose = ChatRequest(({"role": "user", "content": "Write a short poem about the sea."},),
                        schema=SampleReply, seed=3, max_tokens=48)
    first = [gen.complete(r) for r in [*_requests(), prose]]
    again = [gen.complete(r) for r in [*_requests(), prose]]
    gen.close()
    assert [c.text for c in first] == [c.text for c in again]
    from pada_local.backends.grammar_last import GrammarLastSampler

    last = [s for s in refused if isinstance(s, GrammarLastSampler)]
    assert len(last) == 2 * 6  # the six schema requests, twice; the judge's plain request is not one
    assert last[5].rejected > 0  # the redraw under the grammar was exercised
    assert first[-1].text.lstrip().startswith("{")
    for c in first:
        if c.finish_reason == "stop":
            json.loads(c.text)  # grammar-constrained: complete JSON whenever it stopped by itself
    assert sum(c.ok for c in first) >= len(first) // 2


def test_grammar_last_needs_the_library_hook():
    from pada_local.backends import grammar_last

    class Other:  # a llama-cpp-python without the sampler hook is left as it is
        pass

    assert grammar_last.install(Other()) is False
