"""Log-likelihood scoring of fixed options (labels, choice letters) with the real student."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pada_local.backends.base import ChatRequest
from pada_local.backends.hf import HFGenerator, OptionScores, _shared_feeds, render_prompt

SYSTEM = "Classify the sentiment of the review. Answer with one word: positive or negative."
REVIEWS = [
    "Great.",
    "I loved every minute of this film, the acting was superb and the music unforgettable.",
    "Terrible plot, wooden acting.",
    "It was fine I guess, though the second half dragged on and on and I nearly fell asleep twice.",
    "Awful!",
    "Boring and far too long; I want my two hours back.",
]
# One-token and multi-token options, two sharing a first token ("very"), and one that needs a
# row of its own ("not sure"), so the batch holds several rows per prompt.
OPTIONS = ["positive", "negative", "very positive", "very negative", "neutral", "Positive", "not sure"]


def requests() -> list[ChatRequest]:
    return [ChatRequest(({"role": "system", "content": SYSTEM}, {"role": "user", "content": r}))
            for r in REVIEWS]


@pytest.fixture(scope="module")
def student(student_dir: Path) -> Iterator[HFGenerator]:
    # CPU and float32, so batched and one-at-a-time can agree to 1e-4.
    yield HFGenerator(student_dir, batch_size=8, device="cpu")


def reference_logprob(gen: HFGenerator, req: ChatRequest, option: str) -> float:
    """The plain definition: one unpadded forward of prompt ids + option ids, no sharing."""
    import torch

    prompt = gen.tokenizer(render_prompt(gen.tokenizer, req.messages), add_special_tokens=False)["input_ids"]
    ids = gen.tokenizer(option, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = gen.model(input_ids=torch.tensor([prompt + ids])).logits[0].float()
    logp = logits.log_softmax(-1)[len(prompt) - 1 : -1]
    return float(logp.gather(-1, torch.tensor(ids)[:, None]).sum())


def test_shared_feeds_cover_every_option() -> None:
    feeds, where = _shared_feeds([[1], [2], [3, 4], [3, 5], [3, 4, 6], [7, 8]])
    assert sorted(feeds) == [(3, 4), (7,)]  # one-token options and [3, *] read the same rows
    assert [feeds[k] for k in where] == [(3, 4), (3, 4), (3, 4), (3, 4), (3, 4), (7,)]


def test_best_and_per_token() -> None:
    s = OptionScores(("a", "bb"), (-2.0, -3.0), (1, 3), (False, False))
    assert s.per_token == (-2.0, -1.0)
    assert s.best(normalize=False) == "a"
    assert s.best(normalize=True) == "bb"


@pytest.mark.slow
def test_scores_match_plain_forward(student: HFGenerator) -> None:
    reqs = requests()[:2]  # a short and a long prompt: the short one is padded
    options = ["positive", "very positive", "very negative", "not sure"]  # two feeds
    scored = student.score_options(reqs, options)
    opening = student._opening([student._prompt_ids(r) for r in reqs])
    assert opening is not None and opening[0] >= 8  # the system text came from the cache
    for req, s in zip(reqs, scored, strict=True):
        assert s.options == tuple(options)
        for option, lp, n in zip(options, s.logprobs, s.token_counts, strict=True):
            assert lp == pytest.approx(reference_logprob(student, req, option), abs=1e-4)
            assert n == len(student.tokenizer(option, add_special_tokens=False)["input_ids"])


@pytest.mark.slow
def test_batched_equals_one_at_a_time(student: HFGenerator) -> None:
    reqs = requests()
    seen: list[int] = []
    batched = student.score_options(reqs, OPTIONS, batch_size=16, on_item=lambda i, _: seen.append(i))
    single = [student.score_options([r], OPTIONS, batch_size=1)[0] for r in reqs]
    assert sorted(seen) == list(range(len(reqs)))
    for b, s in zip(batched, single, strict=True):
        assert b.logprobs == pytest.approx(s.logprobs, abs=1e-4)
        assert b.greedy == s.greedy
        assert b.best() == s.best()


@pytest.mark.slow
def test_choice_does_not_depend_on_option_order(student: HFGenerator) -> None:
    reqs = requests()[:3]
    forward = student.score_options(reqs, OPTIONS)
    backward = student.score_options(reqs, OPTIONS[::-1])
    for f, b in zip(forward, backward, strict=True):
        assert f.logprobs == pytest.approx(b.logprobs[::-1], abs=1e-4)
        assert f.best() == b.best()
        assert f.best(normalize=False) == OPTIONS[max(range(len(OPTIONS)), key=f.logprobs.__getitem__)]
        assert all(math.isfinite(x) and x < 0 for x in f.logprobs)


def greedy_ids(gen: HFGenerator, req: ChatRequest, n: int) -> list[int]:
    import torch

    prompt = gen.tokenizer(render_prompt(gen.tokenizer, req.messages), add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        out: Any = gen.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                      do_sample=False, pad_token_id=gen.tokenizer.pad_token_id)
    return [int(t) for t in out[0, len(prompt) :]]


@pytest.mark.slow
def test_the_students_own_greedy_answer_ranks_highest(student: HFGenerator) -> None:
    for req in requests()[:2]:
        ids = greedy_ids(student, req, 3)
        first = student.tokenizer.decode(ids[:1])
        # Its first greedy token beats every other one-token option...
        one_token = [o for o in ["positive", "negative", "Positive", "Negative", "neutral", first]
                     if len(student.tokenizer(o, add_special_tokens=False)["input_ids"]) == 1]
        one_token = list(dict.fromkeys(one_token))
        if len(student.tokenizer(first, add_special_tokens=False)["input_ids"]) == 1:
            s = student.score_options([req], one_token)[0]
            assert s.best(normalize=False) == first
            assert s.greedy[one_token.index(first)]
        # ...and the whole greedy reply, when it tokenizes back to itself, is read as greedy.
        reply = student.tokenizer.decode(ids)
        s = student.score_options([req], [reply, "negative"])[0]
        assert all(math.isfinite(x) for x in s.logprobs)
        if student.tokenizer(reply, add_special_tokens=False)["input_ids"] == ids:
            assert s.greedy[0]


@pytest.mark.slow
def test_empty_option_is_refused(student: HFGenerator) -> None:
    with pytest.raises(ValueError, match="no tokens"):
        student.score_options(requests()[:1], ["positive", ""])
