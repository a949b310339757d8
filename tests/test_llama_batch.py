"""Batched decoding in the in-process llama.cpp teacher (backends/llama_batch.py) with the real
embedded teacher: replies that repeat call to call, a resumed generation that samples what the
first would have, greedy replies set beside one-at-a-time ones, a prompt too long as one item's
failure, and the KV cache sized against free memory before it is made."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pada_local.backends.base import ChatRequest
from pada_local.backends.llama_batch import fit_sequences
from pada_local.backends.llama_cpp import LlamaCppGenerator
from pada_local.prompts import SolveReply, render

QUESTIONS = [f"What is {a} plus {b}?" for a, b in
             [(12, 30), (45, 17), (8, 99), (23, 23), (61, 5), (70, 14), (33, 48), (90, 2), (14, 41), (66, 6)]]


def _requests(temperature: float = 0.7) -> list[ChatRequest]:
    return [ChatRequest(render("solve", task_description="Add two numbers.", answer_format="a number", input=q),
                        schema=SolveReply, temperature=temperature, max_tokens=40, seed=i)
            for i, q in enumerate(QUESTIONS)]


@pytest.mark.slow
def test_batched_replies_repeat_call_to_call_and_follow_the_schema(teacher_gguf: Path) -> None:
    gen = LlamaCppGenerator(teacher_gguf, n_ctx=1024, seed=0, parallel=4)
    try:
        heard: list[int] = []
        first = gen.generate(_requests(), on_item=lambda i, c: heard.append(i))
        again = gen.generate(_requests())
        assert gen.parallel == 4 and gen.concurrency == 4
        assert sorted(heard) == list(range(len(QUESTIONS)))  # each reply heard once, as it finished
        assert [c.text for c in first] == [c.text for c in again]
        assert all(c.completion_tokens > 0 and c.prompt_tokens > 0 for c in first)
        assert sum(c.ok for c in first) >= len(first) - 2  # validated like one-at-a-time replies
        assert all(c.data is not None for c in first if c.ok)
        assert gen._decoder is not None and gen._decoder.shared > 0  # the common opening was copied
    finally:
        gen.close()


@pytest.mark.slow
def test_a_resumed_generation_samples_what_the_first_would_have(teacher_gguf: Path) -> None:
    """run_jobs gives a batching teacher fixed chunks of the plan and makes a chunk with a
    missing job again whole: the replies after a crash are the uninterrupted ones, none twice."""
    from pada_local.config import TaskConfig
    from pada_local.records import Example, Job
    from pada_local.stages.generate import run_jobs

    train = [Example(f"t{i}", q, "0") for i, q in enumerate(QUESTIONS)]
    jobs = [Job(f"r1:paraphrase:{i}", "paraphrase", 100 + i, origin=ex) for i, ex in enumerate(train)]
    task = TaskConfig(name="sums", description="Add two numbers.")
    gen = LlamaCppGenerator(teacher_gguf, n_ctx=1024, seed=0, parallel=2, max_tokens=48)
    assert gen.batch_chunk == 8
    try:
        whole: dict[str, str] = {}
        run_jobs(gen, jobs, task, train, 0, on_candidate=lambda c: whole.__setitem__(c.key, c.raw))

        kept: dict[str, str] = {}

        def crash_after_three(c: object) -> None:
            kept[c.key] = c.raw  # type: ignore[attr-defined]
            if len(kept) == 3:
                raise KeyboardInterrupt  # a kill in the middle of the first chunk

        with pytest.raises(KeyboardInterrupt):
            run_jobs(gen, jobs, task, train, 0, on_candidate=crash_after_three)
        resumed: list[str] = []

        def keep(c: object) -> None:
            resumed.append(c.key)  # type: ignore[attr-defined]
            kept[c.key] = c.raw  # type: ignore[attr-defined]

        run_jobs(gen, jobs, task, train, 0, on_candidate=keep, have=set(kept))
    finally:
        gen.close()
    assert len(resumed) == len(set(resumed)) == len(jobs) - 3  # no duplicate, none missing
    assert kept == whole


@pytest.mark.slow
def test_greedy_replies_batched_mostly_match_one_at_a_time(teacher_gguf: Path) -> None:
    """A sequence's logits come from a batch with other sequences (and a copied opening), where
    llama.cpp's matrix kernels block differently than for one sequence; the last bits can differ
    and, rarely, a greedy token. So: most replies match, each is a reply to its own prompt, and
    benchmarks/bench_engines.py --only batch measures the rate on a real round."""
    one = LlamaCppGenerator(teacher_gguf, n_ctx=1024, seed=0, parallel=1)
    many = LlamaCppGenerator(teacher_gguf, n_ctx=1024, seed=0, parallel=4)
    try:
        a, b = one.generate(_requests(0.0)), many.generate(_requests(0.0))
    finally:
        one.close()
        many.close()
    same = sum(x.text == y.text for x, y in zip(a, b, strict=True))
    assert same >= len(a) // 2, (same, [(x.text, y.text) for x, y in zip(a, b, strict=True) if x.text != y.text])


@pytest.mark.slow
def test_a_prompt_too_long_is_that_items_failure(teacher_gguf: Path) -> None:
    gen = LlamaCppGenerator(teacher_gguf, n_ctx=256, seed=0, parallel=2)
    long = replace(_requests()[0], messages=({"role": "user", "content": "seven " * 400},))
    try:
        done = gen.generate([*_requests()[:2], long])
    finally:
        gen.close()
    assert done[0].completion_tokens > 0 and done[1].completion_tokens > 0
    assert not done[2].ok and "prompt too long for teacher.n_ctx=256" in (done[2].error or "")


def test_sequences_are_fewer_when_their_kv_cells_would_not_fit_and_it_says_so() -> None:
    per_token = 23 * 1024  # a 135M model's KV cell
    assert fit_sequences(8, 2048, per_token, None) == (8, None)  # unknown memory: as asked
    assert fit_sequences(8, 2048, per_token, 16 * 2**30) == (8, None)
    n, line = fit_sequences(8, 2048, per_token, 400 * 2**20)  # 25% of 400 MB holds 2
    assert n == 2 and line is not None and "2 sequences at once, not 8" in line
    assert fit_sequences(8, 2048, per_token, 2**20)[0] == 1  # never fewer than one
