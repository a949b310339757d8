"""Engine benchmark (not a test): prints speeds on the embedded default models.

1. teacher tokens/s through our LlamaCppGenerator vs. bare llama-cpp-python, same prompts,
   same seeds, schema-constrained as the loop uses it (target: our overhead under 5%);
2. student generation tokens/s, batched vs. one at a time;
3. trainer tokens/s for a few LoRA steps;
4. label scoring items/s, log-likelihood of each label vs. greedy generation + label extraction,
   on the same items (and how often each is right);
6. teacher prompt-prefix reuse (`--only prefix`): a round's generation prompts, built by the
   loop's own planner (plan_jobs + job_messages) on the demo task with two patterns as a demo run
   named them, evaluated from a clean cache each (as before) and with prefix reuse; prints the
   speed-up, the share of prompt tokens restored, and whether every reply is the same;
7. grammar-last sampling (`--only grammar`): the same round's generation requests with the
   grammar applied to every vocabulary entry before sampling (llama-cpp-python's order) and
   grammar-last (llama.cpp's own order: test the sampled token, resample under the grammar only
   when it is refused); prints seconds, completion tokens/s, valid replies and refused tokens;
8. batched teacher decoding (`--only batch`): the same round's generation requests decoded 1, 2,
   4 and 8 at a time in one llama.cpp context (teacher.parallel; 1 is the one-at-a-time path
   every earlier version used), completion tokens/s and the speed-up; then greedy (temperature 0)
   replies batched against one at a time: how many are the same (`--teacher-gguf` another model,
   `--teacher-shape llama-3.2-1b --plain` a 1B-shaped one with random weights);
5. the teacher behind a server: the same prompts through the in-process backend and through
   llama-cpp-python's OpenAI-compatible server on 127.0.0.1 at concurrency 1 and 4 (samples/s and
   completion tokens/s). That server answers one request at a time, so concurrency shows its
   overhead here; servers that batch (llama-server -np N, vLLM) are where it pays.

Run: .venv/bin/python benchmarks/bench_engines.py [--prompts 12] [--train-steps 4] [--only endpoint]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from pada_local import models
from pada_local.backends.base import ChatRequest, TrainExample, TrainSpec
from pada_local.prompts import SampleReply
from pada_local.tasks import skills

QUESTIONS = [row["prompt"] for row in skills.generate({"bench": 4}, seed=99)["bench"]]


def teacher_requests(n: int) -> list[ChatRequest]:
    return [ChatRequest(({"role": "system", "content": "Reply with JSON only."},
                         {"role": "user", "content": f"Write a question like: {q} and its answer."}),
                        schema=SampleReply, seed=i, max_tokens=96, temperature=0.7) for i, q in enumerate(QUESTIONS[:n])]


def bench_teacher(n: int) -> dict[str, float]:
    from llama_cpp import Llama

    from pada_local.backends.llama_cpp import LlamaCppGenerator

    path = models.resolve_teacher("smollm2-135m")
    reqs = teacher_requests(n)
    ours = LlamaCppGenerator(path, n_ctx=2048, seed=0)
    t0 = time.perf_counter()
    out = ours.generate(reqs)
    ours_s = time.perf_counter() - t0
    ours_tokens = sum(c.completion_tokens for c in out)
    ours.close()
    bare = Llama(model_path=str(path), n_ctx=2048, n_threads=os.cpu_count(), seed=0, verbose=False)
    t0 = time.perf_counter()
    bare_tokens = 0
    for r in reqs:
        bare.reset()  # same cold-cache evaluation as our engine, so the comparison is like for like
        reply = bare.create_chat_completion(messages=list(r.messages), temperature=r.temperature, seed=r.seed,
                                            max_tokens=r.max_tokens, response_format={
                                                "type": "json_object", "schema": SampleReply.model_json_schema()})
        bare_tokens += reply["usage"]["completion_tokens"]
    bare_s = time.perf_counter() - t0
    return {"ours_tok_s": ours_tokens / ours_s, "bare_tok_s": bare_tokens / bare_s, "ours_tokens": ours_tokens,
            "bare_tokens": bare_tokens, "valid": sum(c.ok for c in out) / len(out)}


def bench_student(n: int) -> dict[str, float]:
    from pada_local.backends.hf import HFGenerator

    gen = HFGenerator(models.prepare_student(models.resolve_student("smollm2-135m")), batch_size=8, max_new_tokens=24)
    reqs = [ChatRequest(({"role": "user", "content": q},)) for q in QUESTIONS[:n]]
    gen.generate(reqs[:2])  # warm-up
    t0 = time.perf_counter()
    batched = gen.generate(reqs)
    batched_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = [gen.generate([r])[0] for r in reqs]
    single_s = time.perf_counter() - t0
    return {"batched_tok_s": sum(c.completion_tokens for c in batched) / batched_s,
            "single_tok_s": sum(c.completion_tokens for c in single) / single_s}


def bench_trainer(steps: int) -> dict[str, float]:
    from pada_local.backends.peft_trainer import PeftTrainer

    rows = skills.generate({"t": 8}, seed=5)["t"]
    examples = tuple(TrainExample(({"role": "system", "content": skills.SYSTEM_PROMPT},
                                   {"role": "user", "content": r["prompt"]}), r["completion"]) for r in rows)
    base = models.prepare_student(models.resolve_student("smollm2-135m"))
    with TemporaryDirectory() as tmp:
        adapter = PeftTrainer().train(TrainSpec(base, examples, Path(tmp) / "a", max_steps=steps, batch_size=8))
    rates = [h.tokens_per_s for h in adapter.history[1:] if h.tokens_per_s]
    return {"tok_s": sum(rates) / len(rates) if rates else float("nan"), "s_per_step": adapter.seconds / adapter.steps,
            "tokens": adapter.tokens}


SENTIMENT = "Classify the sentiment of the review. Answer with one word: positive or negative."
REVIEWS = [
    ("Great film, I loved it.", "positive"), ("Terrible plot and wooden acting.", "negative"),
    ("A warm, funny, beautifully shot story.", "positive"), ("Boring and far too long.", "negative"),
    ("The best concert I have been to in years!", "positive"), ("Awful food, rude staff.", "negative"),
    ("Works perfectly, the battery lasts for days.", "positive"), ("It broke after one week.", "negative"),
    ("Wonderful cast, clever script.", "positive"), ("Not worth the ticket.", "negative"),
    ("I would happily buy it again.", "positive"), ("The worst hotel we ever stayed in.", "negative"),
]


def bench_loglik(n: int, max_new_tokens: int = 8) -> dict[str, float]:
    from pada_local.backends.hf import HFGenerator
    from pada_local.config import ScorerConfig
    from pada_local.scoring import Scorer

    labels = ["positive", "negative"]
    gen = HFGenerator(models.prepare_student(models.resolve_student("smollm2-135m")), batch_size=8,
                      max_new_tokens=max_new_tokens)
    items = (REVIEWS * (1 + n // len(REVIEWS)))[:n]
    reqs = [ChatRequest(({"role": "system", "content": SENTIMENT}, {"role": "user", "content": text}))
            for text, _ in items]
    gen.score_options(reqs[:2], labels)  # warm-up
    t0 = time.perf_counter()
    scored = gen.score_options(reqs, labels)
    loglik_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    replies = gen.generate(reqs)
    gen_s = time.perf_counter() - t0
    scorer = Scorer(ScorerConfig(kind="label", labels=labels))
    gold = [label for _, label in items]
    return {"n": n, "loglik_items_s": n / loglik_s, "gen_items_s": n / gen_s,
            "loglik_acc": sum(s.best() == g for s, g in zip(scored, gold, strict=True)) / n,
            "gen_acc": sum(scorer.score(r.text, g) for r, g in zip(replies, gold, strict=True)) / n}


def bench_endpoint(n: int) -> dict[str, float]:
    import socket
    import subprocess
    import sys
    import urllib.request

    from pada_local.backends.llama_cpp import LlamaCppGenerator
    from pada_local.backends.openai_endpoint import OpenAIGenerator

    path = models.resolve_teacher("smollm2-135m")
    reqs = teacher_requests(n)
    out: dict[str, float] = {}
    local = LlamaCppGenerator(path, n_ctx=2048, seed=0)
    out["in-process"], out["in-process_tok"] = _timed(local.generate, reqs)
    local.close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--model_alias", "teacher",
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(360):
            try:
                urllib.request.urlopen(f"{url}/models", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        for c in (1, 4):
            gen = OpenAIGenerator(url, "teacher", seed=0, concurrency=c)
            gen.probe()
            out[f"server x{c}"], out[f"server x{c}_tok"] = _timed(gen.generate, reqs)
            gen.close()
    finally:
        server.terminate()
        server.wait()
    return out


def round_requests(budget: int, exemplar_sets: int | None = None) -> list[ChatRequest]:
    """A `pada` round's generation requests on the demo task: error jobs for failed train items
    and pattern jobs (pools of the 8 train items a pattern's failures pick), as plan_jobs makes them."""
    import random

    from pada_local import config
    from pada_local.data.splits import load_splits
    from pada_local.records import EvalRow, Pattern
    from pada_local.stages.generate import job_messages, plan_jobs, reply_schema

    cfg = config.load(Path(skills.__file__).with_name("skills.yaml"))  # the demo's own config
    train = load_splits(cfg.data).train
    rng = random.Random(0)
    failures = [EvalRow(ex.id, "train", ex.input, ex.output, "wrong", 0.0) for ex in rng.sample(train, 12)]
    patterns = [  # as the embedded teacher named two clusters of a demo run
        Pattern(0, "The Error", "The error pattern these mistakes share", 19, "",
                "The correct answer is the last letter of the word"),
        Pattern(1, "Adding letters", "The student went wrong by adding the last letter of the word to "
                "one of two words", 5, "", "Practise the last letter of each word")]
    pools = {p.cluster: tuple(rng.sample(train, 8)) for p in patterns}
    jobs = plan_jobs("pada", 1, budget, patterns, failures, train, 0, pools, exemplar_sets=exemplar_sets)
    return [ChatRequest(job_messages(j, cfg.task, train, cfg.loop.exemplars), schema=reply_schema(j), seed=j.seed,
                        temperature=cfg.teacher.temperature, max_tokens=cfg.teacher.max_tokens) for j in jobs]


def bench_prefix(n: int, sets: int = 4) -> dict[str, float]:
    """Clean cache vs prefix reuse on the same requests, then prefix reuse on the requests made
    with loop.exemplar_sets (another prompt set: a pattern's jobs share their exemplars)."""
    from pada_local.backends.llama_cpp import LlamaCppGenerator

    path = models.resolve_teacher("smollm2-135m")
    out: dict[str, float] = {}
    texts = {}
    for name, reuse, reqs in (("cold", False, round_requests(n)), ("reuse", True, round_requests(n)),
                              ("sets_cold", False, round_requests(n, sets)), ("sets", True, round_requests(n, sets))):
        gen = LlamaCppGenerator(path, n_ctx=2048, seed=0, reuse_prefix=reuse)
        t0 = time.perf_counter()
        done = gen.generate(reqs)
        out[f"{name}_s"] = time.perf_counter() - t0
        texts[name] = [c.text for c in done]
        out[f"{name}_prompt"] = sum(c.prompt_tokens for c in done)
        out[f"{name}_completion"] = sum(c.completion_tokens for c in done)
        out[f"{name}_restored"] = 0 if gen.prefix is None else gen.prefix.hits
        gen.close()
    out["requests"] = n
    out["same"] = float(texts["cold"] == texts["reuse"] and texts["sets_cold"] == texts["sets"])
    return out


def bench_grammar(n: int) -> dict[str, float]:
    """Grammar-first vs grammar-last on a round's generation requests (prefix reuse on in both)."""
    from pada_local.backends.llama_cpp import LlamaCppGenerator

    path = models.resolve_teacher("smollm2-135m")
    out: dict[str, float] = {"requests": n}
    for name, last in (("first", False), ("last", True)):
        reqs = round_requests(n)
        gen = LlamaCppGenerator(path, n_ctx=2048, seed=0, grammar_last=last)
        refused = _count_refusals(gen)
        t0 = time.perf_counter()
        done = gen.generate(reqs)
        out[f"{name}_s"] = time.perf_counter() - t0
        out[f"{name}_completion"] = sum(c.completion_tokens for c in done)
        out[f"{name}_valid"] = sum(c.ok for c in done)
        out[f"{name}_refused"] = sum(refused)
        gen.close()
    return out


def shaped_teacher(folder: Path) -> Path:
    """Llama-3.2-1B's shape (bench_cost.LLAMA_32_1B) with random weights and the embedded
    student's tokenizer, as a Q8_0 GGUF made once by llama.cpp's own converter (the copy `make
    setup` fetched): a 1B teacher's cost without a download. Its replies are noise, so time it with
    --plain (no JSON grammar)."""
    out = folder / "llama-3.2-1b-shape-random-q8_0.gguf"
    if out.is_file():
        return out
    import subprocess
    import sys

    import torch
    from bench_cost import LLAMA_32_1B  # type: ignore[import-not-found]
    from transformers import LlamaConfig, LlamaForCausalLM

    from pada_local.backends.hf import load_tokenizer
    from pada_local.export import converter

    conv = converter.find()
    if conv is None:
        raise SystemExit("llama.cpp's converter is missing: python -m pada_local.export.converter --fetch")
    folder.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer(models.prepare_student(models.resolve_student("smollm2-135m")))
    with TemporaryDirectory(dir=folder) as tmp:
        cfg = LlamaConfig(**LLAMA_32_1B, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                          pad_token_id=tok.pad_token_id)
        torch.manual_seed(0)
        torch.set_default_dtype(torch.bfloat16)
        LlamaForCausalLM(cfg).save_pretrained(tmp)
        torch.set_default_dtype(torch.float32)
        tok.save_pretrained(tmp)
        env = {**os.environ, "PYTHONPATH": str(conv.root / "gguf-py")}
        subprocess.run([sys.executable, str(conv.script("convert_hf_to_gguf.py")), tmp, "--outfile",
                        str(out.with_suffix(".part")), "--outtype", "q8_0"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
    out.with_suffix(".part").rename(out)
    return out


def bench_batch(n: int, gguf: Path | None = None, widths: tuple[int, ...] = (1, 2, 4, 8),
                n_gpu_layers: int = 0, plain: bool = False) -> dict[str, float]:
    """A round's generation requests at several teacher.parallel widths; greedy agreement."""
    from dataclasses import replace

    from pada_local.backends.llama_cpp import LlamaCppGenerator

    path = gguf or models.resolve_teacher("smollm2-135m")
    out: dict[str, float] = {"requests": n}
    texts: dict[str, list[str]] = {}
    for temperature in (None, 0.0):
        reqs = round_requests(n)
        if temperature is not None:
            reqs = [replace(r, temperature=temperature) for r in reqs]
        if plain:  # no JSON schema: a model with random weights would spend its time in the grammar
            reqs = [replace(r, schema=None) for r in reqs]
        for width in widths if temperature is None else (1, max(widths)):
            gen = LlamaCppGenerator(path, n_ctx=2048, seed=0, parallel=width, n_gpu_layers=n_gpu_layers)
            t0 = time.perf_counter()
            done = gen.generate(reqs)
            key = f"{'greedy_' if temperature == 0.0 else ''}{width}"
            out[f"{key}_s"] = time.perf_counter() - t0
            out[f"{key}_completion"] = sum(c.completion_tokens for c in done)
            out[f"{key}_valid"] = sum(c.ok for c in done)
            texts[key] = [c.text for c in done]
            if temperature is None:
                _split(out, key, gen, reqs)
            gen.close()
    out["greedy_same"] = sum(a == b for a, b in zip(texts["greedy_1"], texts[f"greedy_{max(widths)}"]))
    return out


def _split(out: dict[str, float], key: str, gen: Any, reqs: list[ChatRequest]) -> None:
    """Where the batched decoder's time went: llama_decode calls that evaluate prompt tokens, and
    calls that only decode (tokens/s of those: the generation throughput batching is for). At
    width 1 the one-at-a-time path keeps no such split, so one sequence of a batch decoder is run
    on the same requests for it."""
    from pada_local.backends.llama_batch import BatchDecoder

    dec = gen._decoder
    if dec is None:
        dec = BatchDecoder(gen.llm, 1, gen.n_ctx, gen.n_threads, new_sampler=gen._sampler, render=gen._render)
        dec.generate(reqs)
    out[f"{key}_prompt_s"], out[f"{key}_decode_s"] = dec.prompt_seconds, dec.decode_seconds
    out[f"{key}_decode_tok"], out[f"{key}_prompt_tok"] = dec.decode_tokens, dec.evaluated
    if dec is not gen._decoder:
        dec.close()


def _count_refusals(gen: object) -> list[int]:
    """Each grammar-last sampler's refused-token count, collected as the generator makes them."""
    counts: list[int] = []
    llm = gen.llm  # type: ignore[attr-defined]
    if not getattr(gen, "grammar_last", False):
        return counts
    make = llm._init_sampler

    def counting(*args: object, **kwargs: object) -> object:
        sampler = make(*args, **kwargs)
        if hasattr(sampler, "rejected"):
            orig = sampler.sample

            def sample(ctx: object, idx: int) -> int:
                before = sampler.rejected
                token = orig(ctx, idx)
                counts.append(sampler.rejected - before)
                return token
            sampler.sample = sample
        return sampler
    llm._init_sampler = counting
    return counts


def _timed(generate: object, reqs: list[ChatRequest]) -> tuple[float, float]:
    t0 = time.perf_counter()
    done = generate(reqs)  # type: ignore[operator]
    seconds = time.perf_counter() - t0
    return len(done) / seconds, sum(c.completion_tokens for c in done) / seconds


def report_teacher(prompts: int) -> None:
    t = bench_teacher(prompts)
    overhead = 100 * (t["bare_tok_s"] - t["ours_tok_s"]) / t["bare_tok_s"]
    print(f"teacher  ours {t['ours_tok_s']:.1f} tok/s ({t['ours_tokens']} tokens, "
          f"{100 * t['valid']:.0f}% valid) | bare llama-cpp-python {t['bare_tok_s']:.1f} tok/s "
          f"({t['bare_tokens']} tokens) | overhead {overhead:+.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--train-steps", type=int, default=4)
    ap.add_argument("--teacher-gguf", type=Path, help="--only batch: this GGUF instead of the embedded teacher")
    ap.add_argument("--teacher-shape", choices=["llama-3.2-1b"],
                    help="--only batch: a teacher of this shape with random weights (built once; use --plain)")
    ap.add_argument("--n-gpu-layers", type=int, default=0, help="--only batch: layers offloaded to the GPU")
    ap.add_argument("--plain", action="store_true", help="--only batch: requests without their JSON schema")
    sections = ["teacher", "student", "trainer", "loglik", "endpoint", "prefix", "grammar", "batch"]
    ap.add_argument("--only", choices=sections, action="append",
                    help="run only these sections (repeatable); default: all")
    args = ap.parse_args()
    run = set(args.only or sections)
    if "teacher" in run:
        report_teacher(args.prompts)
    if "student" in run:
        s = bench_student(args.prompts)
        print(f"student  batched(8) {s['batched_tok_s']:.1f} tok/s | one at a time "
              f"{s['single_tok_s']:.1f} tok/s | speed-up x{s['batched_tok_s'] / s['single_tok_s']:.1f}")
    if "trainer" in run:
        tr = bench_trainer(args.train_steps)
        print(f"trainer  peft {tr['tok_s']:.1f} tok/s | {tr['s_per_step']:.2f} s/step (batch 8) | "
              f"{tr['tokens']} tokens")
    if "loglik" in run:
        ll = bench_loglik(args.prompts)
        speedup = ll["loglik_items_s"] / ll["gen_items_s"]
        print(f"labels   {ll['n']} items, 2 labels: loglik {ll['loglik_items_s']:.2f} items/s "
              f"({100 * ll['loglik_acc']:.0f}% right) | generate(8 tok)+extract {ll['gen_items_s']:.2f} "
              f"items/s ({100 * ll['gen_acc']:.0f}% right) | speed-up x{speedup:.1f}")
    if "prefix" in run:
        p = bench_prefix(args.prompts)
        print(f"prefix   {p['requests']:.0f} generation requests of a demo round: clean cache {p['cold_s']:.1f} s "
              f"({p['cold_prompt']:.0f} prompt + {p['cold_completion']:.0f} completion tokens) | prefix reuse "
              f"{p['reuse_s']:.1f} s ({100 * p['reuse_restored'] / p['reuse_prompt']:.0f}% of prompt tokens "
              f"restored) | speed-up x{p['cold_s'] / p['reuse_s']:.2f}")
        print(f"prefix   with loop.exemplar_sets=4: clean cache {p['sets_cold_s']:.1f} s | prefix reuse "
              f"{p['sets_s']:.1f} s ({100 * p['sets_restored'] / p['sets_prompt']:.0f}% restored) | speed-up "
              f"x{p['sets_cold_s'] / p['sets_s']:.2f} (x{p['cold_s'] / p['sets_s']:.2f} against per-job draws, "
              f"clean cache) | same replies with and without reuse: {'yes' if p['same'] else 'NO'}")
    if "grammar" in run:
        g = bench_grammar(args.prompts)
        print(f"grammar  {g['requests']:.0f} generation requests of a demo round: grammar first {g['first_s']:.1f} s "
              f"({g['first_completion'] / g['first_s']:.1f} completion tok/s, {g['first_valid']:.0f} valid) | "
              f"grammar last {g['last_s']:.1f} s ({g['last_completion'] / g['last_s']:.1f} tok/s, "
              f"{g['last_valid']:.0f} valid, {g['last_refused']:.0f} of {g['last_completion']:.0f} sampled tokens "
              f"refused and redrawn) | speed-up x{g['first_s'] / g['last_s']:.2f}")
    if "batch" in run:
        gguf = args.teacher_gguf
        if args.teacher_shape:
            gguf = shaped_teacher(Path(os.environ.get("PADA_BENCH_CACHE", "~/.cache/pada-local/bench")).expanduser())
        b = bench_batch(args.prompts, gguf, n_gpu_layers=args.n_gpu_layers, plain=args.plain)
        one = b["1_completion"] / b["1_s"]
        print(f"batch    {b['requests']:.0f} generation requests of a demo round, completion tokens/s by "
              "sequences decoded together: " + " | ".join(
                  f"{w}: {b[f'{w}_completion'] / b[f'{w}_s']:.1f} (x{b[f'{w}_completion'] / b[f'{w}_s'] / one:.2f}, "
                  f"{b[f'{w}_s']:.1f} s, {b[f'{w}_valid']:.0f} valid)" for w in (1, 2, 4, 8)))
        d1 = b["1_decode_tok"] / b["1_decode_s"]
        print("batch    the same split by llama_decode call: decode-only tokens/s (steps with no prompt token), "
              "and seconds in steps that evaluate prompt tokens: " + " | ".join(
                  f"{w}: {b[f'{w}_decode_tok'] / b[f'{w}_decode_s']:.1f} tok/s (x"
                  f"{b[f'{w}_decode_tok'] / b[f'{w}_decode_s'] / d1:.2f}) in {b[f'{w}_decode_s']:.1f} s, prompts "
                  f"{b[f'{w}_prompt_tok']:.0f} tokens in {b[f'{w}_prompt_s']:.1f} s" for w in (1, 2, 4, 8)))
        print(f"batch    greedy replies, 8 at a time against one at a time: {b['greedy_same']:.0f} of "
              f"{b['requests']:.0f} the same ({b['greedy_1_s']:.1f} s vs {b['greedy_8_s']:.1f} s)")
    if "endpoint" in run:
        e = bench_endpoint(args.prompts)
        print("endpoint " + " | ".join(f"{k} {e[k]:.2f} samples/s, {e[k + '_tok']:.1f} tok/s"
                                       for k in ("in-process", "server x1", "server x4")))


if __name__ == "__main__":
    main()
