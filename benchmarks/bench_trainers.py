"""Trainer benchmark (not a test): tokens/s and peak memory per backend, same data, same settings.

Each backend trains in its own child process (fresh peak memory), with the first Python that
can run it: this one, then the other virtual environments of the repository (`.venv*/`), since
Unsloth and mlx-lm pin different library versions than the main install.
Data: the demo task's rows (`pada_local.tasks.skills.generate`), or with `--data sst2|boolq` the
first rows of a public data set prepared under examples/public/data/ (sentences of mixed length,
where padding matters), rendered as the loop renders them.

    .venv/bin/python benchmarks/bench_trainers.py [--steps 4] [--batch-size 4] [--model student|tiny]
        [--backends peft,unsloth,mlx] [--python .venv-unsloth/bin/python ...] [--data demo|sst2|boolq]
        [--variants padded,padding-free,padding-free+bf16,shared-prefix+bf16]

Variants (peft only) run the same steps with other settings, side by side: `padded` is the
trainer before padding-free batches (each batch padded to its longest example), `padding-free`
(examples end to end) in fp32, `shared-prefix` (the examples' shared prompt opening once per
batch: the default where attention is torch's sdpa), `+bf16` in bf16 weights under bf16 autocast:
the default on CPUs with AVX512-BF16 or AMX (device.training_dtype).

tokens/s counts the examples' own tokens (padding not counted) over the steady steps (the first
step, compilation and warm-up, is left out when there are two or more): measured by the trainer
where it counts them (peft), else mean example length x examples per step. `processed` is the
tokens the model processed against those: over 100% with padding, under it where the shared
prompt opening goes in once per batch. MFU = tokens/s x min(1, processed) x 4P / peak (the FLOPs
the work needs, padding left out, the shared opening counted once), where P is the
student's parameters outside the embedding (every matmul weight), 4P the FLOPs per token of a LoRA
step (forward 2P, backward to the activations 2P; frozen weights get no gradient; attention
scores and the answer-only LM head left out), and peak = cores x GHz x FLOPs per cycle per core
(2 FMA units x 2 x the vector's fp32 lanes: 16 with AVX-512, 8 with AVX2; twice that for bf16
where the CPU has AVX512-BF16), from /proc/cpuinfo; a GPU's peak is not estimated.
peak RSS is the child's ru_maxrss; on a GPU the accelerator's own peak is printed too.
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


def examples(n_per_skill: int, data: str = "demo"):
    from pada_local.backends.base import TrainExample
    from pada_local.tasks import skills

    if data != "demo":  # 7 x n_per_skill rows, as many as the demo task gives
        path = ROOT / "examples" / "public" / "data" / data / "train.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()[: 7 * n_per_skill]]
        system = "Answer with the label only."
        return tuple(TrainExample(({"role": "system", "content": system},
                                   {"role": "user", "content": r["prompt"]}), r["completion"]) for r in rows)
    rows = skills.generate({"bench": n_per_skill}, seed=5)["bench"]
    return tuple(TrainExample(({"role": "system", "content": skills.SYSTEM_PROMPT},
                               {"role": "user", "content": r["prompt"]}), r["completion"]) for r in rows)


VARIANTS = {"padded": ("padded", False), "padding-free": ("padding-free", False),
            "padding-free+bf16": ("padding-free", True), "shared-prefix": ("shared-prefix", False),
            "shared-prefix+bf16": ("shared-prefix", True)}


def apply_variant(name: str) -> None:
    """Set the peft trainer's batch layout and numeric type as the variant says (module attributes
    the trainer looks up at each call)."""
    from pada_local.backends import device, peft_trainer

    if name == "default":
        return
    layout, bf16 = VARIANTS[name]
    peft_trainer.batch_layout = lambda model: layout  # type: ignore[assignment]
    device.training_dtype = lambda dev: "bf16" if bf16 else "fp32"  # type: ignore[assignment]


def matmul_params(model_dir: Path) -> int:
    """Parameters outside the embedding (and a tied LM head): the per-token matmul weights."""
    cfg = json.loads((model_dir / "config.json").read_text())
    h, i, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    kv = cfg.get("num_key_value_heads", cfg["num_attention_heads"]) * (h // cfg["num_attention_heads"])
    return layers * (2 * h * h + 2 * h * kv + 3 * h * i)


def cpu_peak(bf16: bool) -> tuple[float, str] | None:
    """Peak FLOP/s of this CPU (formula in the docstring) and how it was computed."""
    import os

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = next((ln for ln in info.splitlines() if ln.startswith("flags")), "")
    mhz = [float(ln.split(":")[1]) for ln in info.splitlines() if ln.startswith("cpu MHz")]
    if not mhz:
        return None
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    native_bf16 = bf16 and ("avx512_bf16" in flags or "amx_bf16" in flags)
    per_cycle = 2 * 2 * lanes * (2 if native_bf16 else 1)
    cores, ghz = os.cpu_count() or 1, max(mhz) / 1000
    return cores * ghz * 1e9 * per_cycle, f"{cores} cores x {ghz:.2f} GHz x {per_cycle} FLOP/cycle"


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
    from pada_local.backends import device, get_trainer
    from pada_local.backends.base import TrainSpec

    exs = examples(args.per_skill, args.data)
    model_dir = Path(args.model_dir)
    if args.child == "peft":
        apply_variant(args.variant)
    with tempfile.TemporaryDirectory() as tmp:
        spec = TrainSpec(model_dir, exs, Path(tmp) / "adapter", max_steps=args.steps, batch_size=args.batch_size,
                         max_length=args.max_length, seed=0)
        t0 = time.perf_counter()
        adapter = get_trainer(args.child).train(spec)
        wall = time.perf_counter() - t0
    hist = adapter.history
    steady = (hist[-1].seconds - hist[0].seconds) / (len(hist) - 1) if len(hist) > 1 else adapter.seconds / adapter.steps
    if adapter.padded_tokens:  # measured: tokens after the first step over the steady seconds
        first = (hist[0].tokens_per_s or 0) * hist[0].seconds
        tok_s = ((adapter.tokens - first) / (steady * (len(hist) - 1)) if len(hist) > 1
                 else adapter.tokens / adapter.seconds)
        processed = adapter.padded_tokens / adapter.tokens
    else:
        tok_s, processed = args.batch_size * mean_tokens(model_dir, exs) / steady, None
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    bf16 = args.child == "peft" and (VARIANTS[args.variant][1] if args.variant in VARIANTS
                                     else device.training_dtype("cpu") == "bf16")
    peak = cpu_peak(bf16) if accelerator_peak() is None and args.child != "mlx" else None
    row = {"backend": args.child, "variant": args.variant if args.child == "peft" else "", "data": args.data,
           "steps": adapter.steps, "s_per_step": steady, "tok_s": tok_s, "processed": processed,
           "own_tokens": adapter.tokens, "padded_tokens": adapter.padded_tokens, "train_s": adapter.seconds,
           "wall_s": wall,
           "mfu": None if peak is None else tok_s * min(1, processed or 1) * 4 * matmul_params(model_dir)
           / peak[0],
           "peak_formula": None if peak is None else peak[1],
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


def run_backend(python: str, backend: str, model_dir: Path, args: argparse.Namespace,
                variant: str = "default") -> dict | None:
    cmd = [python, __file__, "--child", backend, "--model-dir", str(model_dir), "--steps", str(args.steps),
           "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
           "--per-skill", str(args.per_skill), "--data", args.data, "--variant", variant]
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
    ap.add_argument("--data", default="demo", help="demo, or a folder under examples/public/data")
    ap.add_argument("--variants", default="default",
                    help=f"peft settings: default (as the trainer picks), {', '.join(VARIANTS)}")
    ap.add_argument("--variant", default="default", help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help="one JSON object per line instead of the table")
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
              f"{7 * args.per_skill} {args.data} examples", file=sys.stderr)
        for backend in args.backends.split(","):
            python = next((p for p in interpreters(args.python) if runs(p, backend)), None)
            if python is None:
                print(f"{backend:8} not installed in any of: {', '.join(interpreters(args.python))}")
                continue
            for variant in args.variants.split(",") if backend == "peft" else [""]:
                row = run_backend(python, backend, model_dir, args, variant or "default")
                if row is not None:
                    print(json.dumps(row) if args.json else report(row), flush=True)


def report(r: dict) -> str:
    accel = "" if r["accel_peak_gb"] is None else f" | accelerator peak {r['accel_peak_gb']:.2f} GB"
    pad = "" if r["processed"] is None else f" | processed {100 * r['processed']:3.0f}% of them" + (
        f" (padding {100 * (1 - 1 / r['processed']):4.1f}%)" if r["processed"] > 1 else "")
    mfu = "" if r["mfu"] is None else f" | MFU {100 * r['mfu']:4.1f}% of {r['peak_formula']}"
    name = f"{r['backend']} {r['variant']}".strip()
    return (f"{name:26} {r['tok_s']:7.1f} own tok/s{pad} | {r['s_per_step']:6.2f} s/step{mfu} | "
            f"peak RSS {r['peak_rss_gb']:.2f} GB{accel} | {r['steps']} steps, {r['train_s']:.1f} s training "
            f"({Path(r['python']).parent.parent.name})")


if __name__ == "__main__":
    main()
