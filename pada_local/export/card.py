"""What goes beside the exported model for people and tools to read: the model card
(README.md), the Ollama Modelfile, and export.json (every file's checksum, and the verification),
which is also the mark of a folder pada wrote."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..files import sha256_file
from ..records import ExportedFile, Verification
from .plan import Plan
from .template import ollama_template, stop_tokens

MANIFEST = "export.json"
# Base models we know by name: (hub id, licence identifier).
KNOWN_BASES = {"smollm2-135m": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")}
_ROLES = {".gguf": "model", ".safetensors": "model", ".md": "card", ".jinja": "tokenizer"}


def write_extras(plan: Plan, folder: Path, verification: Verification | None) -> None:
    """Modelfile, model card, then the manifest (last: it lists the other two)."""
    from ..backends.hf import load_tokenizer

    tokenizer = load_tokenizer(plan.spec.hf_dir)
    (folder / "Modelfile").write_text(modelfile(plan, folder, tokenizer))
    (folder / "README.md").write_text(model_card(plan, folder, verification))
    manifest = _manifest(plan, folder, verification)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def listed_files(folder: Path) -> tuple[ExportedFile, ...]:
    """The files of a finished export, as its manifest lists them, and the manifest itself."""
    manifest = json.loads((folder / MANIFEST).read_text())["files"]
    files = [ExportedFile(folder / name, info["sha256"], info["bytes"], _role(folder / name))
             for name, info in manifest.items()]
    man = folder / MANIFEST
    return (*files, ExportedFile(man, sha256_file(man), man.stat().st_size, "manifest"))


def _role(path: Path) -> str:
    if path.name == "Modelfile":
        return "modelfile"
    if path.name == MANIFEST:
        return "manifest"
    if "-lora-" in path.name:
        return "lora"
    if path.name.startswith("adapter_"):
        return "adapter"
    if path.name.startswith("tokenizer") or path.name.startswith("special_tokens"):
        return "tokenizer"
    return _ROLES.get(path.suffix, "config")


def mb(n: float) -> str:
    if n < 1e6:
        return f"{n / 1e3:.1f} kB"
    return f"{n / 1e6:.0f} MB" if n < 1e9 else f"{n / 1e9:.1f} GB"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


# ---------------------------------------------------------------- Modelfile


def modelfile(plan: Plan, folder: Path, tokenizer: Any) -> str:
    """An Ollama Modelfile: FROM the export, the student's template, system prompt and stops."""
    system = plan.cfg.task.system_prompt
    lines = [f"# Ollama Modelfile for {plan.slug} (pada-local run {plan.run_id}, round {plan.round})",
             f"# ollama create {plan.slug} -f Modelfile", *_modelfile_from(plan, folder)]
    template = ollama_template(tokenizer, system)
    if template is None:
        lines.append("# TEMPLATE: not derivable from the tokenizer's template; Ollama uses the GGUF's own")
    else:
        lines.append(f'TEMPLATE """{template}"""')
    if system is not None:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f'PARAMETER stop "{t}"' for t in stop_tokens(tokenizer)]
    lines += ["# the student was evaluated with greedy decoding", "PARAMETER temperature 0"]
    return "\n".join(lines) + "\n"


def _ggufs(folder: Path) -> tuple[list[str], list[str]]:
    """(model GGUFs, GGUF LoRAs) in the folder, by name."""
    models = sorted(p.name for p in folder.glob("*.gguf") if "-lora-" not in p.name)
    return models, sorted(p.name for p in folder.glob("*-lora-*.gguf"))


def _modelfile_from(plan: Plan, folder: Path) -> list[str]:
    ggufs, lora = _ggufs(folder)
    if ggufs:
        return [f"FROM ./{ggufs[0]}"]
    if plan.fmt == "merged":
        return ["FROM ."]
    base = plan.spec.gguf if lora and plan.spec.gguf is not None else plan.spec.hf_dir
    return ["# the base model (not part of this export):", f"FROM {base}",
            f"ADAPTER ./{lora[0]}" if lora else "ADAPTER ."]


# ---------------------------------------------------------------- model card


def model_card(plan: Plan, folder: Path, verification: Verification | None) -> str:
    base, licence = _base_identity(plan)
    parts = [
        f"---\nlicense: {licence.split(' ')[0]}\ntags: [pada-local, lora, {plan.fmt}]\n---\n",
        f"# {plan.slug} ({plan.fmt}{'' if plan.quant is None else ', ' + plan.quant})\n",
        f"Base model: **{base}**, fine-tuned with LoRA by pada-local run `{plan.run_id}` "
        f"(\"{plan.run.get('name')}\"), round {plan.round}.\n",
        _card_files(folder), _card_method(plan), _card_scores(plan, verification), _card_usage(plan, folder),
        f"## Licence\n\nThe base model's licence applies: **{licence}**. This export adds LoRA weights "
        "trained on the run's data; check that data's terms too.\n",
    ]
    return "\n".join(parts)


def _base_identity(plan: Plan) -> tuple[str, str]:
    """(how to name the base model, its licence)."""
    from ..models import CATALOGUE

    hub, licence = KNOWN_BASES.get(plan.spec.name, (None, None))
    entry = CATALOGUE.get(("student", plan.spec.name))
    if licence is None:
        licence = entry.licence.lower() if entry is not None else _licence_from_card(plan.spec.hf_dir)
    source = f" (from {plan.spec.gguf.name})" if plan.spec.gguf is not None else ""
    return (hub or str(plan.spec.hf_dir)) + source, licence


def _licence_from_card(model_dir: Path) -> str:
    card = model_dir / "README.md"
    text = card.read_text(errors="replace") if card.is_file() else ""
    found = re.search(r"^license:\s*(\S+)", text, re.M)
    return found.group(1) if found else "unknown (check the base model's licence)"


def _card_files(folder: Path) -> str:
    rows = [f"| {p.name} | {mb(p.stat().st_size)} |" for p in sorted(folder.iterdir()) if p.is_file()]
    return "## Files\n\n| file | size |\n|---|---|\n" + "\n".join(rows) + "\n\nChecksums: `export.json`.\n"


def _card_method(plan: Plan) -> str:
    cfg, row, train = plan.cfg, plan.round_row, plan.cfg.train
    return (f"## Data and method\n\n- Task: **{cfg.task.name}**: {cfg.task.description or '-'} "
            f"(scored by `{cfg.task.scorer.kind}`, greedy, {cfg.task.max_new_tokens} new tokens at most)\n"
            f"- System prompt: {cfg.task.system_prompt!r}\n"
            f"- Training items in this round: {row.get('n_train')} ({_augmentation(plan)})\n"
            f"- LoRA: r={train.rank}, alpha={train.alpha}, modules {', '.join(train.target_modules)}, "
            f"lr {train.lr}, backend {train.backend}\n"
            f"- Format: {_format_text(plan)}\n")


def _augmentation(plan: Plan) -> str:
    if plan.round == 0:
        return "round 0: the training split only, no synthetic data"
    row, cfg = plan.round_row, plan.cfg
    return (f"the training split plus synthetic samples that passed quality control, "
            f"{row.get('n_accepted') or 0} accepted in this round; augmentation {cfg.loop.strategy}, "
            f"teacher {cfg.models.teacher}")


def _format_text(plan: Plan) -> str:
    if plan.fmt == "adapter":
        return "PEFT LoRA adapter (load it on the base model)"
    if plan.fmt == "merged":
        return "LoRA merged into the base, bf16 safetensors"
    how = "llama.cpp's converter" + (" + llama.cpp quantize" if plan.quantizes else "")
    return f"GGUF {plan.quant} ({how})" + (", plus a GGUF LoRA (f16)" if plan.lora_gguf else "")


def _card_scores(plan: Plan, verification: Verification | None) -> str:
    row = plan.round_row
    lines = ["## Scores\n", f"- Run (in-memory model, full splits): validation {pct(row.get('val_score'))}, "
             f"test {pct(row.get('test_score'))}"]
    lines.append("- Export verification: skipped (--no-verify)" if verification is None
                 else _card_verification(verification))
    return "\n".join(lines) + "\n"


def _card_verification(v: Verification) -> str:
    checks = "; ".join(f"{c.target} {pct(c.score)} (agreement {pct(c.agreement)}, "
                       f"stops {'yes' if c.stops else 'NO'}, template {'ok' if c.template_ok else 'WRONG'})"
                       for c in v.checks)
    return (f"- Verification on {v.n_items} validation items: in-memory {pct(v.reference_score)}; {checks}"
            f" -> {'passed' if v.passed else 'FAILED'} (max drop {v.max_drop:.0f} points)")


def _card_usage(plan: Plan, folder: Path) -> str:
    ggufs, loras = _ggufs(folder)
    text = "## Use\n\n"
    if ggufs and loras:
        text += f"`{loras[0]}` is the same fine-tune as a LoRA for llama.cpp, to apply on the base GGUF.\n\n"
    code = _usage_code(plan, ggufs, loras)
    return text + f"```python\n{code}\n```\n\nOllama: `ollama create {plan.slug} -f Modelfile`.\n"


def _usage_code(plan: Plan, ggufs: list[str], loras: list[str]) -> str:
    if ggufs:
        return _llama_snippet(plan, f"model_path=\"{ggufs[0]}\"")
    if loras:  # the adapter export with its GGUF LoRA: the base GGUF comes from elsewhere
        base = plan.spec.gguf.name if plan.spec.gguf is not None else "<the base model as GGUF>"
        return _llama_snippet(plan, f"model_path=\"{base}\", lora_path=\"{loras[0]}\"")
    if plan.fmt == "merged":
        return ("from transformers import AutoModelForCausalLM, AutoTokenizer\n"
                "tok = AutoTokenizer.from_pretrained(\".\"); "
                "model = AutoModelForCausalLM.from_pretrained(\".\")")
    return ("from peft import PeftModel\nfrom transformers import AutoModelForCausalLM\n"
            f"base = AutoModelForCausalLM.from_pretrained(\"{plan.spec.hf_dir}\")\n"
            "model = PeftModel.from_pretrained(base, \".\")")


def _llama_snippet(plan: Plan, model_args: str) -> str:
    # The system prompt the student was trained with belongs in every request.
    system = plan.cfg.task.system_prompt
    msgs = [{"role": "system", "content": system}] if system is not None else []
    msgs.append({"role": "user", "content": "..."})
    return (f"from llama_cpp import Llama\nllm = Llama({model_args}, verbose=False)\n"
            f"reply = llm.create_chat_completion(messages={json.dumps(msgs)}, temperature=0)\n"
            "print(reply[\"choices\"][0][\"message\"][\"content\"])")


# ---------------------------------------------------------------- manifest


def _manifest(plan: Plan, folder: Path, verification: Verification | None) -> dict[str, Any]:
    from .. import __version__

    files = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    return {"pada_local": __version__, "run_id": plan.run_id, "round": plan.round, "format": plan.fmt,
            "quant": plan.quant, "base": str(plan.spec.hf_dir),
            "llama_cpp_python": _installed("llama-cpp-python"), "files": files,
            "verification": None if verification is None else _verification_dict(verification)}


def _verification_dict(v: Verification) -> dict[str, Any]:
    return {"passed": v.passed, "reference_score": v.reference_score, "n_items": v.n_items,
            "max_drop": v.max_drop, "checks": [asdict(c) for c in v.checks]}


def _installed(dist: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
