"""The real engines on the embedded default models: teacher (llama.cpp), student
(transformers), embedder (sentence-transformers), trainer (TRL + peft). CPU, offline."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from pada_local.backends.base import ChatRequest, TrainExample, TrainSpec

pytestmark = pytest.mark.slow


class Animal(BaseModel):
    name: str
    legs: int


def test_teacher_returns_schema_valid_json(teacher):
    req = ChatRequest(({"role": "user", "content": "Name an animal and its number of legs, as JSON."},),
                      schema=Animal, seed=1)
    out = teacher.generate([req, req])
    assert all(c.ok and isinstance(c.data, Animal) for c in out), [c.text for c in out]
    assert out[0].text == out[1].text  # same seed, same reply
    assert out[0].prompt_tokens > 0 and out[0].completion_tokens > 0 and out[0].seconds > 0


def test_teacher_invalid_reply_is_a_failed_row_with_raw_text(teacher):
    # Too few tokens to close the JSON object: the reply must come back failed, not raise.
    req = ChatRequest(({"role": "user", "content": "Describe an animal as JSON."},), schema=Animal, max_tokens=4)
    out = teacher.generate([req])[0]
    assert not out.ok and out.data is None and out.text and "invalid reply" in out.error


def test_student_batch_matches_one_at_a_time(student_dir):
    from pada_local.backends.hf import HFGenerator, render_prompt

    gen = HFGenerator(student_dir, batch_size=4, max_new_tokens=12)
    assert gen.tokenizer.padding_side == "left"
    msgs = [({"role": "user", "content": q},) for q in ("What is 2 plus 2?", "Name a colour.", "Say hi",
                                                         "Write the word \"cat\" in capital letters.")]
    rendered = render_prompt(gen.tokenizer, msgs[0])
    assert "<|im_start|>user" in rendered and rendered.rstrip().endswith("<|im_start|>assistant")
    batched = [c.text for c in gen.generate([ChatRequest(m) for m in msgs])]
    single = [gen.generate([ChatRequest(m)])[0].text for m in msgs]
    assert batched == single  # left padding does not change greedy outputs
    assert all(t for t in batched)


def test_a_shared_opening_is_computed_once_with_the_same_replies(student_dir, monkeypatch):
    """The opening all prompts share (template, system text) is cached once and copied into each
    batch; the replies are those of the prompts computed in full, one at a time."""
    from pada_local.backends import hf
    from pada_local.tasks import skills

    gen = hf.HFGenerator(student_dir, max_new_tokens=12)
    rows = skills.generate({"t": 2}, seed=11)["t"]
    reqs = [ChatRequest(({"role": "system", "content": skills.SYSTEM_PROMPT},
                         {"role": "user", "content": r["prompt"]})) for r in rows]
    shared = gen._opening([gen._prompt_ids(r) for r in reqs])
    assert shared is not None and shared[0] >= hf.MIN_OPENING  # the system text at least
    cached = gen.generate(reqs)
    gen.batch_size = 1
    monkeypatch.setattr(hf.HFGenerator, "_opening", lambda self, prompts: None)
    alone = gen.generate(reqs)
    assert [c.text for c in cached] == [c.text for c in alone]
    assert [c.prompt_tokens for c in cached] == [c.prompt_tokens for c in alone]
    assert len({c.text for c in cached}) > 3  # the questions get their own answers


def test_lora_steps_change_weights_and_adapter_reloads(student_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    from pada_local.backends.hf import load_model
    from pada_local.backends.peft_trainer import PeftTrainer

    examples = tuple(TrainExample(({"role": "user", "content": f"Echo {w}"},), w.upper())
                     for w in ("cat", "dog", "sun", "map"))
    steps = []
    adapter = PeftTrainer().train(TrainSpec(student_dir, examples, tmp_path / "adapter", max_steps=3, batch_size=2,
                                            lr=1e-3, rank=4, alpha=8), on_step=steps.append)
    assert adapter.steps == 3 and [s.step for s in steps] == [1, 2, 3]
    assert all(s.loss is not None and s.loss > 0 for s in steps)
    weights = load_file(str(adapter.path / "adapter_model.safetensors"))
    lora_b = [t for k, t in weights.items() if "lora_B" in k]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)  # B starts at zero: training moved it
    assert (adapter.path / "adapter_config.json").is_file()
    base, tuned = load_model(student_dir, device="cpu"), load_model(student_dir, adapter.path, device="cpu")
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert not torch.allclose(base(ids).logits, tuned(ids).logits)


def test_embedder_separates_paraphrase_from_unrelated(embedder):
    v = embedder.embed(["The cat sat on the mat.", "A cat was sitting on the mat.", "Stock prices fell sharply."])
    assert v.shape == (3, 384)
    assert float(v[0] @ v[1]) > 0.8 > 0.3 > float(v[0] @ v[2])


def test_gguf_student_through_llama_cpp_is_greedy_and_uses_its_template(teacher_gguf):
    from pada_local.backends.llama_cpp import LlamaCppGenerator
    from pada_local.config import TaskConfig
    from pada_local.prompts import student_messages

    student = LlamaCppGenerator(teacher_gguf, n_ctx=512, temperature=0.0, max_tokens=12)
    task = TaskConfig(system_prompt="Answer with one word.")
    reqs = [ChatRequest(student_messages(task, "What colour is the sky?"), seed=s) for s in (1, 2)]
    first, second = student.generate(reqs)
    assert first.text and first.text == second.text  # greedy: the seed does not matter
    assert first.finish_reason in ("stop", "length")
    student.close()
