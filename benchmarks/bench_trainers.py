"""Trainer benchmark (not a test): tokens/s and peak memory per backend, same data, same settings.

Each backend trains in its own child process (fresh peak memory), with the first Python that
can run it: this one, then the other virtual environments of the repository (`.venv*/`), since
Unsloth and mlx-lm pin different library versions than the main install.
Data: the demo task's rows (`pada_local.tasks.skills.generate`), rendered as the loop renders them.

    .venv/bin/python benchmarks/bench_trainers.py [--steps 4] [--batch-size 4] [--model student|tiny]
        [--backends peft,unsloth,mlx] [--python .venv-unsloth/bin/python ...]

tokens/s counts the same tokens for every backend (mean example length under the student's chat
template x examples per step x steady steps / their seconds); the first step (compilation,
warm-up) is left out when there are two or more. peak RSS is the child's ru_maxrss; on a GPU
the accelerator's own peak is printed too.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"peft": "peft", "unsloth": "unsloth", "mlx": "mlx_lm"}
PROBE = ("import importlib.util, sys; p = sys.argv[1]; ok = importlib.util.find_spec(p) is not None\n"
         "if ok and p == 'mlx_lm':\n    import mlx.core\nsys.exit(0 if ok else 1)")


def examples(n_per_skill: int):
    from pada_local.backends.base import TrainExample
    from pada_local.tasks import skills

    rows = skills.generate({"bench": n_per_skill}, seed=5)["bench"]
    return tuple(TrainExample(({"role": "system", "content": skills.SYSTEM_PROMPT},
                               {"role": "user", "content": r["prompt"]}), r["completion"]) for r in rows)


def tiny_model(out: Path, like: Path) -> Path:
    """A 2-layer Llama with the student's tokenizer: mlx's CPU build trains the real one too slowly."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(like))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def mean_tokens(model_dir: Path, exs) -> float:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    lengths = [len(tok.apply_chat_template([*e.prompt_messages, {"role": "assistant", "content": e.answer}],
                                           tokenize=True, return_dict=False)) for e in exs]
    return sum(lengths) / len(lengths)


def child(args: argparse.Namespace) -> None:
    """Train one backend here and print one JSON line."""
    from pada_local.backends import get_trainer
    from pada_local.backends.base import TrainSpec

    exs = examples(args.per_skill)
    model_dir = Path(args.model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        spec = TrainSpec(model_dir, exs, Path(tmp) / "adapter", max_steps=args.steps, batch_size=args.batch_size,
                         max_length=args.max_length, seed=0)
        t0 = time.perf_counter()
        adapter = get_trainer(args.child).train(spec)
        wall = time.perf_counter() - t0
    hist = adapter.history
    steady = (hist[-1].seconds - hist[0].seconds) / (len(hist) - 1) if len(hist) > 1 else adapter.seconds / adapter.steps
    per_step = args.batch_size * mean_tokens(model_dir, exs)
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    row = {"backend": args.child, "steps": adapter.steps, "s_per_step": steady, "tok_s": per_step / steady,
           "own_tokens": adapter.tokens, "train_s": adapter.seconds, "wall_s": wall,
           "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e9,
           "accel_peak_gb": accelerator_peak(), "python": sys.executable}
    print(json.dumps(row))


def accelerator_peak() -> float | None:
    if "mlx.core" in sys.modules:
        import mlx.core as mx

        return mx.get_peak_memory() / 1e9 if mx.metal.is_available() else None
    import torch

    return torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None


def interpreters(extra: list[str]) -> list[str]:
    found = [sys.executable, *extra, *sorted(str(p) for p in ROOT.glob(".venv*/bin/python"))]
    return list(dict.fromkeys(str(Path(p).absolute()) for p in found))


def runs(python: str, backend: str) -> bool:
    return subprocess.run([python, "-c", PROBE, PACKAGES[backend]], capture_output=True).returncode == 0


def run_backend(python: str, backend: str, model_dir: Path, args: argparse.Namespace) -> dict | None:
    cmd = [python, __file__, "--child", backend, "--model-dir", str(model_dir), "--steps", str(args.steps),
           "--batch-size", str(args.batch_size), "--max-length", str(args.max_length), "--per-skill", str(args.per_skill)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
    if done.returncode != 0:
        print(f"{backend}: failed with {python}\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--per-skill", type=int, default=4, help="examples per demo skill (7 skills)")
    ap.add_argument("--model", choices=["student", "tiny"], default="student")
    ap.add_argument("--backends", default="peft,unsloth,mlx")
    ap.add_argument("--python", action="append", default=[], help="another interpreter to try (repeatable)")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per backend")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    from pada_local import models

    student = models.prepare_student(models.resolve_student("smollm2-135m"))
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = student if args.model == "student" else tiny_model(Path(tmp) / "tiny", student)
        print(f"model {args.model} ({model_dir.name}), {args.steps} steps x batch {args.batch_size}, "
              f"{7 * args.per_skill} demo-task examples", file=sys.stderr)
        for backend in args.backends.split(","):
            python = next((p for p in interpreters(args.python) if runs(p, backend)), None)
            if python is None:
                print(f"{backend:8} not installed in any of: {', '.join(interpreters(args.python))}")
                continue
            row = run_backend(python, backend, model_dir, args)
            if row is not None:
                print(report(row))


def report(r: dict) -> str:
    accel = "" if r["accel_peak_gb"] is None else f" | accelerator peak {r['accel_peak_gb']:.2f} GB"
    return (f"{r['backend']:8} {r['tok_s']:7.1f} tok/s | {r['s_per_step']:6.2f} s/step | peak RSS "
            f"{r['peak_rss_gb']:.2f} GB{accel} | {r['steps']} steps, {r['train_s']:.1f} s training "
            f"({Path(r['python']).parent.parent.name})")


if __name__ == "__main__":
    main()
