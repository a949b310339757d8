"""Cost benchmark (not a test): what one round costs with a 135M and a Llama-3.2-1B-sized student.

Two students: the embedded SmolLM2-135M-Instruct (real weights) and a model with
Llama-3.2-1B-Instruct's published shape (`LLAMA_32_1B`, from its config.json) and random weights,
made here (nothing is downloaded; it carries the embedded student's tokenizer, whose ids fit its
vocabulary). Each measurement runs in its own child process, so its peak RSS (ru_maxrss) is its own:

- train: a few LoRA steps through pada's own PeftTrainer (TRL SFTTrainer + peft, the LoRA
  settings of TrainConfig's defaults) on rows of ~max_length (256) tokens at batch 8; if batch 8
  does not fit in memory, the largest power-of-two batch that does (stated). The first step
  (warm-up) is left out when there are two or more. tok/s counts every input token (padding too).
  --trainer picks the trainer (peft by default; unsloth on CUDA). On CUDA the memory columns are
  the GPU allocator's peak, elsewhere the process's peak RSS.
- eval: HFGenerator (greedy, left-padded batches of 8) on the README's own-task items, first batch
  left out: seconds per item and new tokens/s for greedy generation of short answers
  (task max_new_tokens of examples/own-task.yaml), and seconds per item for log-likelihood label
  scoring (`score_options`), which a label task uses by default. A random-weight model never stops
  early, so its generation runs to the cap.
- teacher: no larger teacher is available offline, so teacher time is the embedded
  SmolLM2-135M GGUF through LlamaCppGenerator on real generation prompts (label-first error jobs
  built by generate.job_messages over examples/own-task), first call left out.

Round estimate (round 1 of the README's bring-your-own config: N train items, budget B = N since
`budget: null`, V validation and T test items; every other setting is the config default):
    teacher calls C = min(analysis_cap, V) + 2 * k_max + B * (1 + confirm_answer + judge)
    train steps   S = ceil(ceil((N + B) / batch_size) * epochs)   (every sample accepted: an upper bound)
    eval items    E = V + T + N                                   (after training: validation, test, train)
    round seconds = C * teacher_s_per_call + S * batch_size * L / train_tok_s + E * loglik_s_per_item
where L is the longest own-task training row under the student's chat template (a batch pads to
its longest row); train time per token is taken as constant, which holds on a CPU.

    .venv/bin/python benchmarks/bench_cost.py [--steps 2] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OWN_TASK = ROOT / "examples" / "own-task.yaml"
# meta-llama/Llama-3.2-1B-Instruct config.json (the shape only: token ids come from our tokenizer).
LLAMA_32_1B: dict[str, Any] = {
    "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
    "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256, "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
    "tie_word_embeddings": True, "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192},
}


def peak_rss_gb() -> float:
    """The process's peak memory: the GPU allocator's peak where the work ran on CUDA, else RSS."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 1e9
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e9


def where() -> str:
    """Where the children ran: `cuda (GPU name)` or `cpu (N cores)`."""
    from pada_local.backends import device

    if device.cuda_usable(device.torch_cuda()):
        import torch

        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({os.cpu_count()} cores)"


def own_task() -> tuple[Any, Any]:
    from pada_local import config
    from pada_local.data.splits import load_splits

    cfg = config.load(OWN_TASK)
    return cfg, load_splits(cfg.data)


# -- children: one measurement each, one JSON line on stdout

def child_build(args: argparse.Namespace) -> dict[str, Any]:
    """Llama-3.2-1B's shape with random weights, saved in bf16 (half the disk; loaded as the
    loop loads a student, in float32 on a CPU)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from pada_local.backends.hf import load_tokenizer

    tok = load_tokenizer(Path(args.like))
    shape = {**LLAMA_32_1B, "num_hidden_layers": args.layers}
    cfg = LlamaConfig(**shape, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # initialise in bf16: half the memory and time
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(args.model_dir)
    tok.save_pretrained(args.model_dir)
    return {"params": sum(p.numel() for p in model.parameters())}


def full_rows(tok: Any, n: int, length: int) -> tuple[Any, ...]:
    """n training examples, each the longest run of review words whose rendered row (system
    prompt, question, answer) fits `length` tokens."""
    from pada_local.backends.base import TrainExample
    from pada_local.backends.lengths import example_length

    cfg, splits = own_task()
    words = " ".join(ex.input for ex in splits.train).split()
    out = []
    for i in range(n):
        pool = (words[i:] + words[:i]) * (4 * length // len(words) + 1)

        def make(k: int, i: int = i, pool: list[str] = pool) -> Any:
            msgs = ({"role": "system", "content": cfg.task.system_prompt},
                    {"role": "user", "content": " ".join(pool[:k])})
            return TrainExample(msgs, cfg.task.scorer.labels[i % 2], f"row-{i}")
        lo, hi = 1, len(pool)
        while lo < hi:  # the largest k that fits
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if example_length(tok, make(mid))[0] <= length else (lo, mid - 1)
        out.append(make(lo))
    return tuple(out)


def child_train(args: argparse.Namespace) -> dict[str, Any]:
    from pada_local.backends import get_trainer
    from pada_local.backends.base import TrainSpec
    from pada_local.backends.device import read_info
    from pada_local.backends.hf import load_tokenizer
    from pada_local.config import TrainConfig

    cfg, model_dir = TrainConfig(), Path(args.model_dir)
    rows = full_rows(load_tokenizer(model_dir), args.batch_size * args.steps, cfg.max_length)
    with tempfile.TemporaryDirectory() as tmp:
        spec = TrainSpec(model_dir, rows, Path(tmp) / "adapter", rank=cfg.rank, alpha=cfg.alpha,
                         dropout=cfg.dropout, target_modules=tuple(cfg.target_modules), max_steps=args.steps,
                         lr=cfg.lr, batch_size=args.batch_size, max_length=cfg.max_length, seed=0)
        adapter = get_trainer(args.trainer).train(spec)
        info = read_info(adapter.path)
    hist = adapter.history
    steady = (hist[-1].seconds - hist[0].seconds) / (len(hist) - 1) if len(hist) > 1 else \
        adapter.seconds / adapter.steps
    per_step = adapter.tokens / adapter.steps  # every step's rows are ~max_length long
    return {"batch": args.batch_size, "steps": adapter.steps, "s_per_step": steady,
            "tok_s": per_step / steady, "row_tokens": per_step / args.batch_size,
            # A trainer in its own process (Unsloth, MLX) records its peak in pada_training.json.
            "peak_rss_gb": max(peak_rss_gb(), (info.get("peak_memory_mb") or 0) / 1e3),
            "trainer": args.trainer, "dtype": info.get("compute_dtype")}


def child_eval(args: argparse.Namespace) -> dict[str, Any]:
    from pada_local.backends.base import ChatRequest
    from pada_local.backends.hf import HFGenerator
    from pada_local.prompts import student_messages

    cfg, splits = own_task()
    items = [*splits.validation, *splits.test, *splits.train]
    reqs = [ChatRequest(student_messages(cfg.task, ex.input, ex.system, ex.context)) for ex in items]
    gen = HFGenerator(Path(args.model_dir), batch_size=8, max_new_tokens=cfg.task.max_new_tokens)
    batches = [reqs[i : i + 8] for i in range(0, 8 * args.eval_batches, 8)]
    gen_s, new_tokens, ll_s = 0.0, 0, 0.0
    for i, batch in enumerate(batches):
        t0 = time.perf_counter()
        done = gen.generate(batch)
        t1 = time.perf_counter()
        gen.score_options(batch, cfg.task.scorer.labels)
        if i > 0:  # the first batch is warm-up
            gen_s, ll_s = gen_s + t1 - t0, ll_s + time.perf_counter() - t1
            new_tokens += sum(c.completion_tokens for c in done)
    n = 8 * (len(batches) - 1)
    return {"params": sum(p.numel() for p in gen.model.parameters()), "gen_s_item": gen_s / n,
            "gen_tok_s": new_tokens / gen_s, "loglik_s_item": ll_s / n,
            "new_tokens": cfg.task.max_new_tokens, "peak_rss_gb": peak_rss_gb()}


def child_teacher(args: argparse.Namespace) -> dict[str, Any]:
    from pada_local import models
    from pada_local.backends.base import ChatRequest
    from pada_local.backends.llama_cpp import LlamaCppGenerator
    from pada_local.records import Job
    from pada_local.stages.generate import job_messages, reply_schema

    cfg, splits = own_task()
    labels = cfg.task.scorer.labels
    # Label-first error jobs, as a pada round makes them: the student said the other label.
    jobs = [Job(f"bench:{i}", "error", i, origin=ex, prediction=labels[ex.output == labels[0]],
                target=ex.output) for i, ex in enumerate(splits.train[: args.prompts])]
    reqs = [ChatRequest(job_messages(j, cfg.task, splits.train, cfg.loop.exemplars), schema=reply_schema(j),
                        seed=j.seed) for j in jobs]
    t = cfg.teacher
    teacher = LlamaCppGenerator(models.resolve_teacher("smollm2-135m"), n_ctx=t.n_ctx,
                                temperature=t.temperature, max_tokens=t.max_tokens, seed=0)
    steady = teacher.generate(reqs)[1:]  # the first call is warm-up
    seconds = sum(c.seconds for c in steady)
    return {"s_call": seconds / len(steady), "tok_s": sum(c.completion_tokens for c in steady) / seconds,
            "prompt_tokens": sum(c.prompt_tokens for c in steady) / len(steady),
            "peak_rss_gb": peak_rss_gb()}


CHILDREN = {"build": child_build, "train": child_train, "eval": child_eval, "teacher": child_teacher}


def run_child(kind: str, args: argparse.Namespace, **extra: Any) -> dict[str, Any] | None:
    opts = {"steps": args.steps, "batch_size": args.batch_size, "eval_batches": args.eval_batches,
            "prompts": args.prompts, "trainer": args.trainer, **extra}
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in opts.items()]
    cmd = [sys.executable, __file__, "--child", kind, *flags]
    print(f"  {kind} {extra.get('model_dir', '')} ...", file=sys.stderr, flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
    if done.returncode != 0:
        print(f"{kind}: failed (exit {done.returncode})\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {kind}: {json.dumps(result)}", file=sys.stderr, flush=True)  # kept if a later step fails
    return result


def measure_student(name: str, model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train at the asked batch, halving it while it does not fit; then evaluate."""
    batch, train = args.batch_size, None
    while train is None and batch >= 1:
        train = run_child("train", args, model_dir=model_dir, batch_size=batch)
        batch //= 2
    return {"student": name, "train": train, "eval": run_child("eval", args, model_dir=model_dir)}


# -- the round estimate

def round_counts(n: int, v: int, t: int) -> dict[str, int]:
    """Teacher calls, train steps and eval items of round 1 at the config defaults (module doc)."""
    from pada_local.config import LoopConfig, QualityConfig, TrainConfig

    loop, q, tr = LoopConfig(), QualityConfig(), TrainConfig()
    budget = n  # loop.budget: null = |D_train|
    calls = min(loop.analysis_cap, v) + 2 * loop.k_max + budget * (1 + q.confirm_answer + q.judge)
    steps = math.ceil(math.ceil((n + budget) / tr.batch_size) * tr.epochs)
    return {"calls": calls, "steps": steps, "evals": v + t + n, "batch_size": tr.batch_size}


def longest_row(model_dir: Path) -> int:
    from pada_local.backends.hf import load_tokenizer
    from pada_local.backends.lengths import example_length
    from pada_local.stages.train import training_examples

    cfg, splits = own_task()
    tok = load_tokenizer(model_dir)
    return max(example_length(tok, ex)[0] for ex in training_examples(cfg.task, splits.train, []))


def estimate(row: dict[str, Any], teacher: dict[str, Any], counts: dict[str, int], length: int) -> dict:
    parts = {"teacher_s": counts["calls"] * teacher["s_call"],
             "train_s": counts["steps"] * counts["batch_size"] * length / row["train"]["tok_s"],
             "eval_s": counts["evals"] * row["eval"]["loglik_s_item"]}
    return {**parts, "round_s": sum(parts.values())}


# -- output

def table(rows: list[dict[str, Any]], teacher: dict[str, Any]) -> str:
    head = (f"{'student':38} {'params':>7} {'rows':>6} {'s/step':>7} {'train tok/s':>11} {'train GB':>8} "
            f"{'gen s/item':>10} {'gen tok/s':>9} {'loglik s/item':>13} {'eval GB':>7} {'round min':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        tr, ev = r["train"], r["eval"]
        rows_shape = f"{tr['batch']}x{tr['row_tokens']:.0f}"
        lines.append(f"{r['student']:38} {ev['params'] / 1e9:6.2f}B {rows_shape:>6} "
                     f"{tr['s_per_step']:7.1f} "
                     f"{tr['tok_s']:11.0f} {tr['peak_rss_gb']:8.2f} {ev['gen_s_item']:10.3f} "
                     f"{ev['gen_tok_s']:9.1f} {ev['loglik_s_item']:13.3f} {ev['peak_rss_gb']:7.2f} "
                     f"{r['estimate']['round_s'] / 60:9.1f}")
    if teacher.get("given"):
        lines.append(f"teacher: {teacher['s_call']:.2f} s/call, given with --teacher-s-call (not measured)")
    else:
        lines.append(f"teacher (embedded SmolLM2-135M GGUF, llama.cpp): {teacher['s_call']:.2f} s/call, "
                     f"{teacher['tok_s']:.1f} tok/s, {teacher['prompt_tokens']:.0f} prompt tokens/call, "
                     f"peak {teacher['peak_rss_gb']:.2f} GB")
    return "\n".join(lines)


def formula(rows: list[dict[str, Any]], teacher: dict[str, Any], counts: dict[str, int],
            args: argparse.Namespace, length: int) -> str:
    out = [f"round 1, README bring-your-own config: N={args.train_size} train, B={args.train_size} "
           f"(budget: null), V={args.val_size}, T={args.test_size};\n  C={counts['calls']} teacher calls, "
           f"S={counts['steps']} steps of {counts['batch_size']} rows of L={length} tokens, "
           f"E={counts['evals']} eval items",
           "round s = C * teacher s/call + S * batch * L / train tok/s + E * loglik s/item"]
    for r in rows:
        e = r["estimate"]
        out.append(f"  {r['student']}: {counts['calls']} * {teacher['s_call']:.2f} + {counts['steps']} * "
                   f"{counts['batch_size']} * {length} / {r['train']['tok_s']:.0f} + {counts['evals']} * "
                   f"{r['eval']['loglik_s_item']:.3f} = {e['teacher_s']:.0f} + {e['train_s']:.0f} + "
                   f"{e['eval_s']:.0f} = {e['round_s']:.0f} s")
    return "\n".join(out)


def measure_all(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    student = small_student(args)
    layers = 2 if args.quick else LLAMA_32_1B["num_hidden_layers"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        llama = Path(tmp) / "llama-3.2-1b-shape"
        teacher = given_teacher(args) if args.teacher_s_call is not None else run_child("teacher", args)
        name = "SmolLM2-135M-Instruct (embedded)" if args.student is None else f"{student.name} (--student)"
        rows.append(measure_student(name, student, args))
        if run_child("build", args, model_dir=llama, like=student, layers=layers) is not None:
            rows.append(measure_student(f"Llama-3.2-1B shape ({layers} layers, random)", llama, args))
    return rows, teacher


def small_student(args: argparse.Namespace) -> Path:
    """The 135M row's model: the embedded student, or --student (a folder of the same tokenizer,
    e.g. on a machine without the embedded model's package)."""
    from pada_local import models

    if args.student is not None:
        return Path(args.student)
    return models.prepare_student(models.resolve_student("smollm2-135m"))


def given_teacher(args: argparse.Namespace) -> dict[str, Any]:
    """--teacher-s-call: a teacher time measured elsewhere (e.g. where llama.cpp is installed)."""
    nan = float("nan")
    return {"s_call": args.teacher_s_call, "tok_s": nan, "prompt_tokens": nan, "peak_rss_gb": nan,
            "given": True}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2, help="LoRA steps per student (the first is warm-up)")
    ap.add_argument("--batch-size", type=int, default=8, help="rows per LoRA step (halved until it fits)")
    ap.add_argument("--eval-batches", type=int, default=3, help="eval batches of 8 (the first is warm-up)")
    ap.add_argument("--prompts", type=int, default=6, help="teacher prompts (the first: warm-up)")
    ap.add_argument("--train-size", type=int, default=300, help="N (the README's example: 300 records)")
    ap.add_argument("--val-size", type=int, default=100, help="V validation items")
    ap.add_argument("--test-size", type=int, default=100, help="T test items")
    ap.add_argument("--quick", action="store_true", help="a smoke run: the 1B shape with 2 layers")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per child")
    ap.add_argument("--trainer", default="peft", help="the LoRA trainer (peft, unsloth, mlx)")
    ap.add_argument("--student", help="the small student's folder instead of the embedded SmolLM2-135M")
    ap.add_argument("--teacher-s-call", type=float, help="seconds per teacher call measured elsewhere "
                    "(the teacher is then not run here)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    for hidden in ("--model-dir", "--like"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    ap.add_argument("--layers", type=int, default=16, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        from pada_local.backends.hf import quiet_libraries

        quiet_libraries()
        print(json.dumps(CHILDREN[args.child](args)))
    else:
        if args.quick:  # a smoke run: the fewest steps, batches and prompts that still leave one out
            args.steps, args.eval_batches, args.prompts = 2, 2, 2
        load = os.getloadavg()[0]  # the cores may be shared: the load says how much
        rows, teacher = measure_all(args)
        report(args, rows, teacher, (load, os.getloadavg()[0]))


def report(args: argparse.Namespace, rows: list[dict[str, Any]], teacher: dict[str, Any] | None,
           load: tuple[float, float]) -> None:
    done = [r for r in rows if r["train"] is not None and r["eval"] is not None]
    if teacher is None or len(done) < len(rows):
        sys.exit("a measurement failed (see above)")
    counts = round_counts(args.train_size, args.val_size, args.test_size)
    length = longest_row(small_student(args))
    for r in rows:
        r["estimate"] = estimate(r, teacher, counts, length)
    if args.json:
        print(json.dumps({"rows": rows, "teacher": teacher, "counts": counts, "row_tokens": length,
                          "where": where(), "load_avg": load, "cpus": os.cpu_count(), "args": vars(args)},
                         indent=1))
        return
    print(table(rows, teacher))
    print(formula(rows, teacher, counts, args, length))
    print(f"students on {where()}, trainer {args.trainer}; {os.cpu_count()} CPUs, "
          f"1-minute load average {load[0]:.1f} before, {load[1]:.1f} after")


if __name__ == "__main__":
    main()
