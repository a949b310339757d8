"""The leakage guard on short held-out items, and an independent leak check.

`held_out_leaks` is written apart from the guard (its own normalisation, plain substring and
equality search, no LeakGuard): the real-run test in test_loop.py runs it over every stored
generation prompt and training record, so the guard is tested by something that is not itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from pada_local.leakage import REDACTED, LeakGuard
from pada_local.records import Example

SHORT_WORDS = 3  # an input of fewer words counts only where it stands alone, equal as a whole
PAIR_GAP = 12  # words allowed between a held-out input and its answer for the pair to count

HELD = [
    Example("v-wet", "Wet?", "dry", split="validation"),
    Example("v-greet", "Good morning", "Bonjour", split="validation"),
    Example("t-long", 'How many letters are in the word "forest"?', "6", split="test"),
]


# ---------------------------------------------------------------- the independent check


def _plain(text: str) -> str:
    """Case folded; every run of characters that are not letters or digits is one space."""
    return " ".join(re.findall(r"[^\W_]+", text.casefold()))


def _pieces(text: str) -> set[str]:
    """Where a short input would stand alone: the text, a line, the text around a colon, a quoted
    string (JSON strings with their escapes included)."""
    lines = text.splitlines()
    parts = [text, *lines, *(p for line in lines for p in line.split(":"))]
    parts += re.findall(r'"((?:[^"\\]|\\.)*)"', text)
    parts += re.findall(r"“([^”]*)”|'([^']*)'", text)
    flat = [p if isinstance(p, str) else "".join(p) for p in parts]
    return {_plain(p) for p in flat}


def _follows(words: list[str], first: list[str], then: list[str]) -> bool:
    """`first`, then `then` within PAIR_GAP words of it."""
    for i in range(len(words) - len(first) + 1):
        if words[i : i + len(first)] == first:
            after = words[i + len(first) : i + len(first) + PAIR_GAP + len(then)]
            if any(after[j : j + len(then)] == then for j in range(len(after) - len(then) + 1)):
                return True
    return False


def held_out_leaks(text: str, held: Sequence[Example]) -> list[str]:
    """Every held-out input `text` holds ("input split id"), and every (input, answer) pair
    ("pair split id"): a long input anywhere, a short one only as a whole piece; a pair is the
    input followed closely by its answer, so a short item counts there inside running text too."""
    flat, pieces = _plain(text), _pieces(text)
    words = flat.split()
    found = []
    for ex in held:
        q, a = _plain(ex.input), _plain(ex.output)
        if not q:
            continue
        holds = q in pieces if len(q.split()) < SHORT_WORDS else f" {q} " in f" {flat} "
        if holds:
            found.append(f"input {ex.split} {ex.id}")
        if a and _follows(words, q.split(), a.split()):
            found.append(f"pair {ex.split} {ex.id}")
    return found


def record_texts(line: str) -> list[str]:
    """A training record (one JSON line) as texts to search: each message, the whole chat, the line."""
    contents = [m["content"] for m in json.loads(line)["messages"]]
    return [*contents, "\n".join(contents), line]


# ---------------------------------------------------------------- the check itself


def test_independent_check_finds_inputs_and_pairs() -> None:
    assert held_out_leaks("Write the word forest.", HELD) == []
    assert held_out_leaks('{"content": "How many letters are in the word \\"forest\\"?"}', HELD) == \
        ["input test t-long"]
    assert held_out_leaks('Practise items like "wet?"', HELD) == ["input validation v-wet"]
    assert held_out_leaks("Is the road wet? Take care.", HELD) == []  # a short item is no word search
    assert held_out_leaks("Translate good morning, answer: bonjour", HELD) == ["pair validation v-greet"]
    both = held_out_leaks('{"input": "Good morning", "output": "Bonjour"}', HELD)
    assert both == ["input validation v-greet", "pair validation v-greet"]
    chat = [{"role": "user", "content": "wet"}, {"role": "assistant", "content": "Dry."}]
    line = json.dumps({"messages": chat})
    hits = {hit for text in record_texts(line) for hit in held_out_leaks(text, HELD)}
    assert hits == {"input validation v-wet", "pair validation v-wet"}


# ---------------------------------------------------------------- the guard on short items


def test_guard_matches_a_short_item_equal_after_normalisation() -> None:
    guard = LeakGuard(HELD)
    for text in ("wet", "  WET ?", 'Practise items like "Wet?" more.', "Question: wet?\nAnswer: dry",
                 "Translate 'good  MORNING!' into French"):
        assert [leak.item_id for leak in guard.find(text)] in (["v-wet"], ["v-greet"]), text
    assert guard.find("wet?")[0].how == "exact"


def test_guard_does_not_treat_a_short_item_as_a_word_search() -> None:
    guard = LeakGuard(HELD)
    for text in ("Is the road wet? Take care.", "Say good morning to the class", "wet? no, dry"):
        assert guard.find(text) == [], text


def test_guard_scrubs_a_quoted_short_item() -> None:
    guard = LeakGuard(HELD)
    for text in ('Practise items like "wet?" more.', "Example: Good morning", "wet?"):
        scrubbed = guard.scrub(text)
        assert REDACTED in scrubbed and guard.find(scrubbed) == [], scrubbed
    assert guard.scrub("Is the road wet? Take care.") == "Is the road wet? Take care."


def test_guard_catches_what_the_independent_check_finds() -> None:
    guard = LeakGuard(HELD)
    texts = ['Write more like "Wet?"', "wet", "Good morning", "Question: good morning!",
             'Count: how many letters are in the word "FOREST"?', '{"input": "Good morning", "x": 1}']
    for text in texts:
        assert held_out_leaks(text, HELD), text  # the check sees a leak...
        assert guard.find(text), text  # ...and so does the guard


def test_every_turn_of_a_held_out_conversation_is_guarded() -> None:
    """The analysis prompt shows the teacher a validation conversation's earlier turns: a
    generation prompt or a sample that carries one of them is a leak, not only its last turn."""
    item = Example("v1", "And which of them is the largest?", "Jupiter", split="validation",
                   context=(("user", "Name the gas giants of our solar system, please."),
                            ("assistant", "Jupiter, Saturn, Uranus and Neptune are the gas giants.")))
    guard = LeakGuard([item])
    for turn in ("Name the gas giants of our solar system, please.",
                 "Jupiter, Saturn, Uranus and Neptune are the gas giants."):
        text = f"Write a question like: {turn.upper()} But new."
        assert [(leak.item_id, leak.split) for leak in guard.find(text)] == [("v1", "validation")]
        assert turn.lower() not in guard.scrub(text).lower() and REDACTED in guard.scrub(text)
    assert guard.find("Which planet has the most moons in our solar system?") == []
