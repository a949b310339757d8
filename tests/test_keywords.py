"""Keywords for failure patterns (c-TF-IDF over a cluster's analyses) and the rule that replaces a
teacher-written name a reader cannot use; stored, read back and shown by `runs show` and the TUI.
No model loads here: the analyses are hand-written."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Static

from pada_local.backends.base import Completion
from pada_local.cli import main
from pada_local.config import TaskConfig
from pada_local.leakage import LeakGuard
from pada_local.ledger.report import patterns as pattern_views
from pada_local.ledger.report import run_detail
from pada_local.ledger.runs import Ledger
from pada_local.prompts import PatternReply
from pada_local.records import Example, Pattern
from pada_local.stages.keywords import (
    c_tf_idf,
    cluster_keywords,
    display_name,
    group_texts,
    readable_name,
    with_keywords,
)

GROUPS = {
    0: ["The model missed the negation in 'not good' and answered positive",
        "Negation flipped the sentiment but the model ignored the negation word",
        "The model ignored negation: 'not bad' means positive"],
    1: ["Sarcasm read literally by the model: the praise was sarcasm",
        "The model took sarcastic praise at face value and missed the sarcasm",
        "Sarcasm in the review was missed by the model"],
    2: ["A contrast with 'but' changed the overall sentiment and the model missed it",
        "The model weighed the clause before 'but' instead of the contrast after it",
        "Contrast between the first and second half was ignored by the model"],
}


# ---------------------------------------------------------------- c-TF-IDF


def test_keywords_are_the_distinctive_words_of_each_cluster() -> None:
    found = cluster_keywords(GROUPS)
    assert [found[c][0] for c in (0, 1, 2)] == ["negation", "sarcasm", "contrast"]
    assert all(len(words) == 5 for words in found.values())
    assert not {"the", "but", "not"} & {w for words in found.values() for w in words}  # stop words


def test_a_word_every_cluster_uses_ranks_below_the_distinctive_ones() -> None:
    found = cluster_keywords(GROUPS, top_n=50)
    for c, word in ((0, "negation"), (1, "sarcasm"), (2, "contrast")):
        assert found[c].index("model") > found[c].index(word)
    # "model" is said 3 times in every cluster, "negation" 4 times in one: idf sets them far apart.
    assert cluster_keywords(GROUPS, top_n=1) == {0: ["negation"], 1: ["sarcasm"], 2: ["contrast"]}


def test_c_tf_idf_is_bertopics_formula() -> None:
    import numpy as np

    counts = np.array([[2.0, 2.0, 0.0], [0.0, 2.0, 4.0]])
    weights = c_tf_idf(counts)
    average = counts.sum() / 2  # words per class
    expected = (counts / counts.sum(axis=1, keepdims=True)) * np.log1p(average / counts.sum(axis=0))
    assert np.allclose(weights, expected)
    assert weights[0, 0] > weights[0, 1]  # same count, but term 1 is in both classes


def test_ties_break_alphabetically_and_digits_are_never_keywords() -> None:
    assert cluster_keywords({0: ["zebra apple mango 12345 x1y"]}) == {0: ["apple", "mango", "zebra"]}


@pytest.mark.parametrize("groups", [{}, {3: []}, {3: ["12345 !!! the and of"]}, {0: ["a"], 1: [""]}])
def test_degenerate_input_gives_empty_keywords(groups: dict[int, list[str]]) -> None:
    assert cluster_keywords(groups) == {c: [] for c in groups}


def test_one_cluster_gets_its_most_frequent_words() -> None:
    assert cluster_keywords({7: ["carry carry carry tens tens units"]}, top_n=2) == {7: ["carry", "tens"]}


def test_an_unallowed_word_is_skipped_and_the_next_one_taken() -> None:
    found = cluster_keywords(GROUPS, top_n=3, allowed=lambda w: w != "negation")
    assert "negation" not in found[0] and len(found[0]) == 3


# ---------------------------------------------------------------- the name rule


@pytest.mark.parametrize("name", ["Alabyn-11111", "12345", "!!!", "Quantum widget failures", "pattern 0",
                                  "The student often ignores the negation in a review that is positive overall"])
def test_unreadable_names_are_replaced_by_the_keywords(name: str) -> None:
    keywords = cluster_keywords(GROUPS)[0]
    assert not readable_name(name, GROUPS[0], keywords)
    assert display_name(name, GROUPS[0], keywords, 0) == "negation / positive / ignored"


@pytest.mark.parametrize("name", ["Negation errors", "Ignoring negations", "Missed negation (2 cases)"])
def test_names_made_of_the_clusters_words_stay(name: str) -> None:
    keywords = cluster_keywords(GROUPS)[0]
    assert readable_name(name, GROUPS[0], keywords)
    assert display_name(name, GROUPS[0], keywords, 0) == name


def test_a_name_may_share_its_word_with_the_keywords_alone() -> None:
    assert readable_name("Sarcasm", ["irony read literally"], ["sarcasm"])


def test_without_keywords_an_unreadable_name_becomes_pattern_n() -> None:
    assert display_name("Alabyn-11111", [], [], 4) == "pattern 4"


def test_with_keywords_names_and_guards_each_pattern() -> None:
    teacher = [Pattern(0, "Alabyn-11111", "d", 3, '{"name": "Alabyn-11111"}'),
               Pattern(1, "Sarcastic praise taken literally", "d", 3, "{}")]
    # A held-out item that is one word: as a keyword it would show that item to the user.
    guard = LeakGuard([Example("v1", "sarcasm", "negative", split="validation")])
    named = with_keywords(teacher, GROUPS, allowed=lambda w: not guard.find(w))
    assert named[0].name == "negation / positive / ignored" and named[0].raw == '{"name": "Alabyn-11111"}'
    assert named[1].name == "Sarcastic praise taken literally"
    assert "sarcasm" not in named[1].keywords and "praise" in named[1].keywords


def test_group_texts_follows_the_labels() -> None:
    assert group_texts(["a", "b", "c"], [2, 0, 2]) == {0: ["b"], 2: ["a", "c"]}


class ScriptedTeacher:
    """Names each cluster as scripted: the test is about what the loop does with a name."""

    supports_schema = True

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def generate(self, requests: list[Any], on_item: Any = None) -> list[Completion]:
        replies = [PatternReply(name=n, description="what goes wrong") for n in self.names]
        return [Completion(r.model_dump_json(), r) for r in replies[: len(requests)]]


def test_described_patterns_are_stored_with_keywords_and_an_unreadable_name_replaced(tmp_path: Path) -> None:
    from pada_local.records import Analysis
    from pada_local.stages.analyze import describe_patterns

    store, run_id = _stored(tmp_path)
    analyses = [Analysis(f"v{c}{i}", text, "", "", True) for c in (1, 0) for i, text in enumerate(GROUPS[c])]
    teacher = ScriptedTeacher(["Negation errors", "Alabyn-11111"])  # clusters 0 and 1, in order
    guard = LeakGuard([Example("t1", "negation", "x", split="test")])  # a one-word held-out item
    named = describe_patterns(teacher, analyses, [1, 1, 1, 0, 0, 0], TaskConfig(name="sst"), guard, seed=0)
    with Ledger.open_existing(store) as ledger:
        ledger.for_run(run_id).record_patterns(1, named, {})
        stored = ledger.for_run(run_id).patterns(1)
    assert stored[0].name == "Negation errors" and "negation" not in stored[0].keywords
    assert stored[1].name == "sarcasm / praise / model" and stored[1].keywords[0] == "sarcasm"
    assert "Alabyn-11111" in stored[1].raw  # the teacher's own name is kept


# ---------------------------------------------------------------- stored and shown


def _stored(tmp_path: Path) -> tuple[Path, str]:
    """A run with round 1's analyses, clusters and two named patterns, recorded by hand."""
    from pada_local.config import dump, from_dict
    from pada_local.records import Analysis, Clustering

    (tmp_path / "t.jsonl").write_text('{"prompt": "x", "completion": "y"}\n')
    data = {"train": "t.jsonl", "validation": "t.jsonl"}
    cfg = from_dict({"data": data, "task": {"name": "sst"}}, tmp_path)
    store = tmp_path / "pada.db"
    analyses = [Analysis(f"v{c}{i}", text, "", "", True) for c in (0, 1) for i, text in enumerate(GROUPS[c])]
    with Ledger.open(store) as ledger:
        run_id = ledger.create_run(config=dump(cfg), versions={})
        ledger.for_run(run_id).record_analyses(1, analyses, {})
        ledger.for_run(run_id).record_clusters(1, analyses, Clustering([0, 0, 0, 1, 1, 1], 2, {}), {})
        ledger.for_run(run_id).record_patterns(1, [
            Pattern(0, "negation / positive / ignored", "d", 3, "", keywords=("negation", "positive")),
            Pattern(1, "sarcasm", "d", 3, "")], {})
    return store, run_id


def test_ledger_round_trip_keeps_keywords(tmp_path: Path) -> None:
    store, run_id = _stored(tmp_path)
    with Ledger.open_existing(store) as ledger:
        back = ledger.for_run(run_id).patterns(1)
        assert [p.keywords for p in back] == [("negation", "positive"), ()]
        assert json.loads(ledger.for_run(run_id).pattern_rows(1)[0]["keywords_json"]) == ["negation", "positive"]
        assert [v.keywords for v in pattern_views(ledger, run_id, 1)] == [["negation", "positive"], []]
        assert run_detail(ledger, run_id)["patterns"][0]["keywords"] == ["negation", "positive"]


def test_runs_show_prints_keywords_beside_the_name(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    store, run_id = _stored(tmp_path)
    assert main(["runs", "show", run_id, "--store", str(store)]) == 0
    assert "negation / positive / ignored (keywords: negation, positive)" in capsys.readouterr().out
    assert main(["runs", "show", run_id, "--store", str(store), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["patterns"]
    assert [p["keywords"] for p in shown] == [["negation", "positive"], []]


def test_tui_patterns_screen_shows_keywords_beside_the_name(tmp_path: Path) -> None:
    from rich.console import Console

    from tui.app import create_app
    from tui.screens.patterns import PatternsScreen

    store, run_id = _stored(tmp_path)
    app = create_app(store)

    async def main_() -> None:
        async with app.run_test(size=(120, 32)) as pilot:
            app.push_screen(PatternsScreen(run_id))
            await pilot.pause(0.3)
            table = app.screen.query_one("#patterns-table", DataTable)
            assert [str(c) for c in table.get_row_at(0)][-1] == "negation, positive"
            console = Console(width=200, color_system=None)
            with console.capture() as captured:
                console.print(app.screen.query_one("#pattern-detail", Static).content)
            assert "negation / positive / ignored (keywords: negation, positive)" in captured.get()

    asyncio.run(main_())


@pytest.mark.parametrize(("strategy", "readable"), [
    ("This is a JSON example where the answer to the question about the last letter of a word is", False),
    ('{"strategy": "more sums"}', False),
    ("Sums.", False),
    ("Write sums of two numbers where the ones carry into the tens.", True),
    ("Add questions that ask for a number plus another number, with a carry.", True),
])
def test_a_strategy_must_read_as_a_plan_for_its_pattern(strategy: str, readable: bool) -> None:
    """The TUI once showed "This is a JSON example where the answer to the question about the last
    letter of a word is" as the strategy of a pattern of addition failures."""
    from pada_local.stages.keywords import readable_strategy

    assert readable_strategy(strategy, "carry errors in addition", ["sum", "carry", "plus"]) is readable
