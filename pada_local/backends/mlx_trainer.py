"""LoRA with mlx-lm on Apple Silicon (QLoRA on a 4-bit copy of the student there).

mlx-lm's tuner does the work: `mlx_lm.load` reads the student's Hugging Face folder,
`linear_to_lora_layers` wraps the target projections, `ChatDataset` renders each pair with the
student's chat template and masks the prompt, `iterate_batches` batches. The step loop is ours
(mlx-lm's `train` draws its own progress UI and cannot be stopped between steps) and so is the
loss: mlx-lm's `default_loss` also counts one padding target per row, a large share of a short
answer's signal (ml-explore/mlx-lm#1697).

The adapter is then written in PEFT layout, so evaluation and export load it with transformers +
peft like any other: mlx computes `y = Wx + scale * (x @ a) @ b` with `a` (in, r) and `b` (r, out);
PEFT computes `Wx + (alpha / r) * B(A(x))` with `A.weight` (r, in) and `B.weight` (out, r). So
`A = a.T`, `B = b.T`, and `scale = alpha / r` keeps `lora_alpha = alpha`. mlx-lm's own adapter
is kept beside it in `mlx/` (`mlx_lm.load(base, adapter_path=<adapter>/mlx)` reads it).

On Metal it runs as mlx-lm's own trainer does: the wired-memory limit raised to the GPU's
recommended working set, bf16 weights (a student derived from a GGUF loads in fp32), the cache
cleared after training and the peak memory recorded; micro-batches are cut so one command
buffer stays short enough for the watchdog of a 16 GB laptop driving a display. It runs in a
child process (`own_process`): a Metal abort is a C++ abort, which must not take `pada` down.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelError
from .base import Adapter, StepInfo, TrainSpec
from .device import write_info
from .lengths import fit_spec

_EMBEDDINGS = ("embed_tokens", "lm_head")


def unsupported(spec_or_cfg: Any) -> list[str]:
    """Config fields this backend cannot honour as the other backends do (TrainSpec or TrainConfig)."""
    bad = [m for m in spec_or_cfg.target_modules if m in _EMBEDDINGS]
    problems = []
    if bad:
        problems.append(f"train.target_modules: the mlx backend adapts linear layers inside the decoder "
                        f"blocks only, not {', '.join(bad)}; remove them or use backend 'peft'")
    if getattr(spec_or_cfg, "precision", "auto") == "fp32":
        problems.append("train.precision: the mlx backend trains in the weights' own type (bf16 on Metal); "
                        "use backend 'peft' for fp32")
    return problems


class MLXTrainer:
    name = "mlx"
    own_process = True  # get_trainer wraps it in a ChildTrainer
    first_import = "mlx.core"

    def __init__(self, load_in_4bit: bool | None = None) -> None:
        # None: 4-bit where Metal runs it (Apple Silicon); the CPU build trains in full precision.
        self.load_in_4bit = load_in_4bit

    def train(
        self,
        spec: TrainSpec,
        on_step: Callable[[StepInfo], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Adapter:
        problems = unsupported(spec)
        if problems:
            raise ConfigError("; ".join(problems))
        with contextlib.redirect_stdout(sys.stderr):  # mlx-lm prints notices; stdout carries results
            return self._train(spec, on_step, should_stop)

    def _train(self, spec: TrainSpec, on_step: Callable[[StepInfo], None] | None,
               should_stop: Callable[[], bool] | None) -> Adapter:
        import mlx.core as mx
        import numpy as np

        mx.random.seed(spec.seed)
        np.random.seed(spec.seed)
        metal = bool(mx.metal.is_available())
        model, tokenizer = _load(spec.base_dir)
        if metal:
            model.set_dtype(mx.bfloat16)  # mlx-lm trains in the checkpoint's 16-bit type
        quantized = self.load_in_4bit or (self.load_in_4bit is None and metal)
        if quantized:
            _quantize(model)
        lora = _add_lora(model, spec)
        spec, dropped = fit_spec(spec, tokenizer)  # the rule every backend applies: drop, never cut
        rows = _tokenize(spec, tokenizer)
        micro = metal_micro_batch(spec.batch_size, spec.max_length, _memory_size()) if metal else None
        run = _Run(spec, model, rows, on_step, should_stop, micro)
        with _wired_limit(metal):
            mx.reset_peak_memory()
            run.loop()
        peak = mx.get_peak_memory() / 2**20
        mx.clear_cache()  # hand the cached buffers back before evaluation needs the memory
        tmp = spec.out_dir.with_name(spec.out_dir.name + ".tmp")
        _save(model, lora, spec, tmp)
        _replace_dir(tmp, spec.out_dir)
        write_info(spec.out_dir, backend="mlx", device="metal" if metal else "cpu",
                   weights_dtype="bf16" if metal else str(_dtype_of(model)), base_weights="4-bit" if quantized
                   else "16-bit" if metal else "as stored", micro_batch=run.micro, grad_accum=run.accum,
                   merge_dtype="fp32", peak_memory_mb=round(peak, 1))
        return Adapter(spec.out_dir, run.steps, run.seconds, run.tokens, tuple(run.history), dropped)


# Tokens per micro-batch on Metal by unified memory: a 16 GB laptop also drives the display, and
# the watchdog aborts a command buffer that runs too long; bigger machines take bigger slices.
_METAL_TOKENS = ((16 * 2**30, 2048), (32 * 2**30, 4096))


def metal_micro_batch(batch_size: int, max_length: int, memory_bytes: int) -> int:
    """Rows per micro-batch on Metal: the largest divisor of batch_size within the token budget,
    so that gradient accumulation keeps the configured batch exactly."""
    budget = next((tokens for limit, tokens in _METAL_TOKENS if memory_bytes <= limit), 8192)
    cap = max(1, budget // max(max_length, 1))
    return max(d for d in range(1, batch_size + 1) if batch_size % d == 0 and d <= cap)


def _device_info() -> dict[str, Any]:
    import mlx.core as mx

    info = getattr(mx, "device_info", None) or mx.metal.device_info  # moved to mx in newer mlx
    return dict(info())


def _memory_size() -> int:
    return int(_device_info().get("memory_size", 16 * 2**30))


@contextlib.contextmanager
def _wired_limit(metal: bool) -> Iterator[None]:
    """Keep the model's buffers wired for the run, as mlx-lm's trainer does, then restore."""
    import mlx.core as mx

    if not metal:
        yield
        return
    old = mx.set_wired_limit(_device_info()["max_recommended_working_set_size"])
    try:
        yield
    finally:
        mx.synchronize()
        mx.set_wired_limit(old)


def _dtype_of(model: Any) -> Any:
    from mlx.utils import tree_flatten

    params = tree_flatten(model.parameters())
    return params[0][1].dtype if params else "?"


def _load(base_dir: Path) -> tuple[Any, Any]:
    import mlx_lm

    if not (base_dir / "config.json").is_file():  # mlx_lm.load would try the hub for a missing folder
        raise ModelError(f"{base_dir}: no Hugging Face model folder here", hint="run `pada models`")
    try:
        return mlx_lm.load(str(base_dir))
    except (ValueError, FileNotFoundError) as err:
        raise ModelError(f"{base_dir}: mlx-lm cannot load this model ({err})") from None


def _quantize(model: Any) -> None:
    """QLoRA: the frozen decoder projections in 4 bits (mlx-lm's affine default, groups of 64)."""
    import mlx.nn as nn

    nn.quantize(model, group_size=64, bits=4, class_predicate=lambda path, m: (
        isinstance(m, nn.Linear) and ".layers." in f".{path}" and m.weight.shape[-1] % 64 == 0))


def _add_lora(model: Any, spec: TrainSpec) -> dict[str, Any]:
    """Wrap the target projections of every decoder block; returns mlx-lm's LoRA parameters."""
    from mlx_lm.tuner.utils import linear_to_lora_layers

    keys = sorted({path for path, _ in model.layers[0].named_modules()
                   if path and path.rsplit(".", 1)[-1] in spec.target_modules})
    found = {k.rsplit(".", 1)[-1] for k in keys}
    missing = [m for m in spec.target_modules if m not in found]
    if missing:
        raise ConfigError(f"train.target_modules: {', '.join(missing)} not found in the student's layers",
                          hint=f"modules there: {', '.join(sorted(_leaf_names(model)))}")
    lora = {"rank": spec.rank, "scale": spec.alpha / spec.rank, "dropout": spec.dropout, "keys": keys}
    model.freeze()
    linear_to_lora_layers(model, len(model.layers), lora)
    return lora


def _leaf_names(model: Any) -> set[str]:
    return {p.rsplit(".", 1)[-1] for p, _ in model.layers[0].named_modules() if p}


def _tokenize(spec: TrainSpec, tokenizer: Any) -> list[tuple[list[int], int]]:
    """(tokens, answer offset) per example. `fit_spec` has already left out every example longer
    than max_length or without an answer token, so none is cut here."""
    from mlx_lm.tuner.datasets import ChatDataset

    chats = [{"messages": [*ex.prompt_messages, {"role": "assistant", "content": ex.answer}]}
             for ex in spec.examples]
    data = ChatDataset(chats, tokenizer, mask_prompt=True)
    return [(list(tokens), offset) for tokens, offset in map(data.process, chats)]


def answer_loss(model: Any, batch: Any, lengths: Any) -> tuple[Any, Any]:
    """Mean cross-entropy over answer tokens: targets at positions offset..length-1."""
    import mlx.core as mx
    import mlx.nn as nn

    inputs, targets = batch[:, :-1], batch[:, 1:]
    logits = model(inputs)
    pos = mx.arange(1, targets.shape[1] + 1)  # index of each target in the unshifted row
    mask = mx.logical_and(pos >= lengths[:, 0:1], pos < lengths[:, 1:])
    ntoks = mask.sum()
    ce = (nn.losses.cross_entropy(logits, targets) * mask).astype(mx.float32).sum() / ntoks
    return ce, ntoks


class _Run:
    """The optimisation loop: one compiled step per micro-batch, the update on the last one."""

    def __init__(self, spec: TrainSpec, model: Any, rows: list[tuple[list[int], int]],
                 on_step: Callable[[StepInfo], None] | None, should_stop: Callable[[], bool] | None,
                 micro: int | None = None) -> None:
        import mlx.optimizers as optim

        self.spec, self.model, self.n = spec, model, len(rows)
        self.on_step, self.should_stop = on_step, should_stop
        self.batch_size = min(spec.batch_size, self.n)
        self.total = total_steps(spec, self.n, self.batch_size)
        # Smaller micro-batches, more of them per update: the same optimizer steps and batch.
        self.micro = self.batch_size if micro is None or self.batch_size % micro else micro
        self.accum = spec.grad_accum * (self.batch_size // self.micro)
        # Like the other backends: AdamW without weight decay, cosine decay to 0, no warm-up.
        self.schedule = optim.cosine_decay(spec.lr, self.total)
        self.opt = optim.AdamW(learning_rate=self.schedule, weight_decay=0.0)
        self.rows = _fill_batches(rows, self.batch_size, spec.seed)
        self.history: list[StepInfo] = []
        self.steps = self.tokens = 0
        self.seconds = 0.0

    def loop(self) -> None:
        from mlx_lm.tuner.trainer import iterate_batches

        batches = iterate_batches(self.rows, self.micro, self.spec.max_length, loop=True,
                                  seed=self.spec.seed)
        step = self._compiled_step()
        self.model.train()
        start = time.perf_counter()
        for n in range(1, self.total + 1):
            self._one(n, step, batches, start)
            if self.should_stop is not None and self.should_stop():
                break
        self.seconds = time.perf_counter() - start

    def _one(self, n: int, step: Callable, batches: Any, start: float) -> None:
        import mlx.core as mx

        tic, lr = time.perf_counter(), float(self.schedule(n - 1))  # the rate this update uses
        grad, losses, tokens = None, [], 0
        accum = self.accum
        for micro in range(accum):
            batch, lengths = next(batches)
            loss, _, grad = step(batch, lengths, grad, micro == accum - 1)
            mx.eval(self.model.state, self.opt.state, loss, grad)
            losses.append(loss.item())
            tokens += int(lengths[:, 1].sum().item())
        self.steps, self.tokens = n, self.tokens + tokens
        now = time.perf_counter()
        info = StepInfo(n, self.total, sum(losses) / len(losses), lr, n * accum * self.micro / self.n,
                        tokens / max(now - tic, 1e-9), now - start)
        self.history.append(info)
        if self.on_step is not None:
            self.on_step(info)

    def _compiled_step(self) -> Callable:
        import mlx.core as mx
        import mlx.nn as nn
        from mlx.utils import tree_map

        model, opt, accum = self.model, self.opt, self.accum
        loss_and_grad = nn.value_and_grad(model, answer_loss)
        state = [model.state, opt.state, mx.random.state]

        @partial(mx.compile, inputs=state, outputs=state)
        def step(batch: Any, lengths: Any, prev: Any, update: bool) -> tuple[Any, Any, Any]:
            (loss, ntoks), grad = loss_and_grad(model, batch, lengths)
            if prev is not None:
                grad = tree_map(lambda a, b: a + b, grad, prev)
            if update:
                opt.update(model, tree_map(lambda g: g / accum, grad) if accum > 1 else grad)
                grad = None
            return loss, ntoks, grad

        return step


def total_steps(spec: TrainSpec, n: int, batch_size: int) -> int:
    """Optimizer steps, counted as transformers' Trainer counts them."""
    if spec.max_steps is not None:
        return spec.max_steps
    per_epoch = max(math.ceil(n / batch_size) // spec.grad_accum, 1)
    return max(1, math.ceil(per_epoch * spec.epochs))


def _fill_batches(rows: list[tuple[list[int], int]], batch_size: int,
                  seed: int) -> list[tuple[list[int], int]]:
    """mlx-lm drops the rows that do not fill a last batch, always the longest ones (it batches
    by length); repeating a few random rows instead trains every example each epoch."""
    import numpy as np

    short = -len(rows) % batch_size
    extra: Iterable[int] = (np.random.RandomState(seed).choice(len(rows), size=short, replace=False)
                            if short else [])
    return rows + [rows[int(i)] for i in extra]


def _save(model: Any, lora: dict[str, Any], spec: TrainSpec, out: Path) -> None:
    import shutil

    import mlx.core as mx
    from mlx.utils import tree_flatten

    shutil.rmtree(out, ignore_errors=True)
    (out / "mlx").mkdir(parents=True)
    weights = dict(tree_flatten(model.trainable_parameters()))
    mx.save_safetensors(str(out / "mlx" / "adapters.safetensors"), weights)
    mlx_config = {"fine_tune_type": "lora", "num_layers": len(model.layers), "lora_parameters": lora}
    (out / "mlx" / "adapter_config.json").write_text(json.dumps(mlx_config, indent=2))
    to_peft(weights, spec, out)
    from .hf import load_tokenizer

    load_tokenizer(spec.base_dir).save_pretrained(str(out))


def to_peft(weights: dict[str, Any], spec: TrainSpec, out: Path) -> None:
    """mlx-lm LoRA weights -> adapter_config.json + adapter_model.safetensors as peft saves them."""
    import mlx.core as mx
    import numpy as np
    from peft import LoraConfig
    from safetensors.numpy import save_file

    known = _base_weight_names(spec.base_dir)
    tensors: dict[str, Any] = {}
    for name, value in weights.items():
        module, leaf = name.rsplit(".", 1)
        if leaf not in ("lora_a", "lora_b"):
            raise ModelError(f"unexpected trainable parameter '{name}' in the mlx model")
        if f"{module}.weight" not in known:
            raise ModelError(f"mlx module '{module}' has no weight of that name in {spec.base_dir}",
                             hint="this architecture names its layers differently in mlx-lm; "
                                  "use backend 'peft'")
        peft_leaf = "lora_A" if leaf == "lora_a" else "lora_B"
        tensors[f"base_model.model.{module}.{peft_leaf}.weight"] = np.ascontiguousarray(
            np.array(value.astype(mx.float32)).T)
    save_file(tensors, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout, bias="none",
               target_modules=sorted(spec.target_modules), task_type="CAUSAL_LM",
               base_model_name_or_path=str(spec.base_dir)).save_pretrained(str(out))


def _base_weight_names(base_dir: Path) -> set[str]:
    """Tensor names of the base checkpoint, read from the safetensors headers only."""
    from safetensors import safe_open

    names: set[str] = set()
    for path in sorted(base_dir.glob("*.safetensors")):
        with safe_open(str(path), framework="numpy") as fh:
            names.update(fh.keys())
    return names


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished folder into place so a crash never leaves a half-written adapter."""
    import shutil

    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
