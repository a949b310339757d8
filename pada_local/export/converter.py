"""llama.cpp's own converters (`convert_hf_to_gguf.py`, `convert_lora_to_gguf.py`), located,
fetched with consent, cached, and run.

They ship in the llama-cpp-python *sdist* (under vendor/llama.cpp/), not in the wheel. We take
them from the sdist of the installed version, so the GGUF they write is one the installed
llama.cpp reads. Fetching is `pip download` from the package registry (nothing is compiled,
cloned or installed system-wide), only with the user's consent, once; after that, export needs
no network. Only the scripts, their `conversion/` package, the matching `gguf-py/` and the
licence are kept (~2 MB of the 77 MB sdist).

`python -m pada_local.export.converter --fetch` fetches at set-up time (for `make setup` and CI).
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import PadaError

SDIST_MB = 77
MARKER = "pada-ready.json"
HF_SCRIPT = "convert_hf_to_gguf.py"
LORA_SCRIPT = "convert_lora_to_gguf.py"
# What we keep from vendor/llama.cpp/ in the sdist: the scripts and what they import.
KEEP = (HF_SCRIPT, LORA_SCRIPT, "conversion/", "gguf-py/", "LICENSE")
NEEDS = ("numpy", "torch", "transformers", "sentencepiece", "yaml")  # imported by the scripts

Log = Callable[[str], None]


@dataclass(frozen=True)
class Converter:
    """A folder holding llama.cpp's converter scripts, and the llama.cpp version it matches."""

    root: Path
    version: str

    def script(self, name: str) -> Path:
        return self.root / name


def llama_cpp_version() -> str:
    """The installed llama-cpp-python, read from its metadata (importing it loads the library)."""
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        raise PadaError("llama-cpp-python is not installed",
                        hint="pip install -e . (it compiles llama.cpp once)") from None


def cache_root() -> Path:
    """`$PADA_CACHE_DIR`, else `$XDG_CACHE_HOME/pada-local`, else ~/.cache/pada-local."""
    env = os.environ.get("PADA_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "pada-local"


def converter_dir(version: str | None = None) -> Path:
    return cache_root() / "converter" / (version or llama_cpp_version())


def _complete(root: Path) -> bool:
    return (root / HF_SCRIPT).is_file() and (root / LORA_SCRIPT).is_file() and (root / "conversion").is_dir()


def find() -> Converter | None:
    """`$PADA_CONVERTER_DIR` (a llama.cpp source folder the user trusts), else the cache."""
    env = os.environ.get("PADA_CONVERTER_DIR")
    if env:
        root = Path(env).expanduser()
        if not _complete(root):
            raise PadaError(f"PADA_CONVERTER_DIR={root} holds no {HF_SCRIPT} with its conversion/ package",
                            hint="point it at a llama.cpp source folder, "
                                 "or unset it to use the cached converter")
        return Converter(root, "custom")
    version = llama_cpp_version()
    root = converter_dir(version)
    return Converter(root, version) if (root / MARKER).is_file() and _complete(root) else None


def missing_hint(version: str | None = None) -> str:
    return (f"let pada fetch it once: add --yes (downloads "
            f"llama-cpp-python=={version or llama_cpp_version()}'s source, ~{SDIST_MB} MB, from PyPI), "
            f"or run `python -m pada_local.export.converter --fetch` "
            f"(`make setup` does), or set PADA_CONVERTER_DIR to a llama.cpp source folder")


def ensure(allow_fetch: bool, log: Log = lambda _: None) -> Converter:
    """The converter, fetched first if the user agreed; otherwise a clear error."""
    found = find()
    if found is not None:
        return found
    if not allow_fetch:
        raise PadaError(f"llama.cpp's converter is not in the cache ({converter_dir()})", hint=missing_hint())
    return fetch(log)


# ---------------------------------------------------------------- fetching


def fetch(log: Log = lambda _: None) -> Converter:
    """pip-download the llama-cpp-python sdist of the installed version and keep its converters.

    Built in a temporary folder and renamed at the end, so an interrupted fetch leaves no
    half-filled cache behind; the 77 MB sdist itself is deleted afterwards."""
    version = llama_cpp_version()
    final = converter_dir(version)
    final.parent.mkdir(parents=True, exist_ok=True)
    log(f"fetching llama.cpp's converter: llama-cpp-python=={version} source (~{SDIST_MB} MB) from PyPI")
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=final.parent) as tmp:
        sdist = _download(version, Path(tmp) / "dl")
        staged = Path(tmp) / "converter"
        _extract(sdist, staged)
        (staged / MARKER).write_text(json.dumps({"llama_cpp_python": version, "sdist": sdist.name}))
        shutil.rmtree(final, ignore_errors=True)
        staged.rename(final)
    log(f"converter cached in {final}")
    return Converter(final, version)


def _download(version: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--quiet",
           "--dest", str(dest), f"llama-cpp-python=={version}"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob("llama_cpp_python-*.tar.gz")) if dest.is_dir() else []
    if done.returncode != 0 or not found:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise PadaError(f"could not download llama-cpp-python=={version}'s source from PyPI: "
                        f"{' | '.join(tail)}",
                        hint="check the connection to PyPI (or a pip index/proxy setting), then retry; "
                             "or set PADA_CONVERTER_DIR to a llama.cpp source folder")
    return found[0]


def _extract(sdist: Path, out: Path) -> None:
    """Extract only vendor/llama.cpp/{KEEP}; tarfile's 'data' filter refuses links and '..'."""
    with tarfile.open(sdist, "r:gz") as tar:
        members = [m for m in tar.getmembers() if _wanted(m.name) is not None and (m.isfile() or m.isdir())]
        if not any(_wanted(m.name) == HF_SCRIPT for m in members):
            raise PadaError(f"{sdist.name} has no vendor/llama.cpp/{HF_SCRIPT}",
                            hint="this llama-cpp-python version does not ship llama.cpp's converter; "
                                 "set PADA_CONVERTER_DIR to a llama.cpp source folder")
        for m in members:
            m.name = _wanted(m.name) or ""
        tar.extractall(out, members=members, filter="data")


def _wanted(name: str) -> str | None:
    parts = name.split("/", 1)  # strip the top folder "llama_cpp_python-<version>/"
    inner = parts[1] if len(parts) == 2 else ""
    prefix = "vendor/llama.cpp/"
    if not inner.startswith(prefix):
        return None
    rel = inner[len(prefix):]
    return rel if any(rel == k or (k.endswith("/") and rel.startswith(k)) for k in KEEP) else None


# ---------------------------------------------------------------- architecture support


def supported_architectures(conv: Converter) -> frozenset[str] | None:
    """The Hugging Face architectures the converter knows, read from its source without
    importing it (that would load torch); None when its layout is not the one we know."""
    init = conv.root / "conversion" / "__init__.py"
    try:
        tree = ast.parse(init.read_text())
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        target = getattr(node, "target", None)
        if isinstance(node, ast.AnnAssign) and isinstance(target, ast.Name) and target.id == "TEXT_MODEL_MAP":
            if isinstance(node.value, ast.Dict):
                # Architecture names are str keys; anything else could never match one.
                return frozenset(k.value for k in node.value.keys
                                 if isinstance(k, ast.Constant) and isinstance(k.value, str))
    return None


def model_architecture(model_dir: Path) -> str:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    archs = config.get("architectures") or [config.get("model_type", "unknown")]
    return str(archs[0])


def check_architecture(conv: Converter, model_dir: Path) -> str:
    """Fail before any work when llama.cpp cannot convert this model's architecture."""
    arch = model_architecture(model_dir)
    known = supported_architectures(conv)
    if known is not None and arch not in known:
        raise unsupported(arch, conv)
    return arch


def unsupported(arch: str, conv: Converter) -> PadaError:
    return PadaError(f"llama.cpp's converter ({conv.version}) does not support the architecture {arch}",
                     hint="export --format merged (safetensors) or --format adapter instead, "
                          "or train a student whose architecture llama.cpp supports "
                          "(Llama, Qwen2/3, Gemma ...)")


# ---------------------------------------------------------------- running


def check_dependencies() -> None:
    """The scripts import these; say which one to install instead of a traceback."""
    import importlib.util

    missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        names = " ".join("pyyaml" if m == "yaml" else m for m in missing)
        raise PadaError(f"llama.cpp's converter needs {', '.join(missing)}", hint=f"pip install {names}")


def run(conv: Converter, script: str, args: Sequence[str], log_file: Path) -> None:
    """Run a converter script with this interpreter; its chatter goes to `log_file`.

    The hub is switched off: everything it needs is in the folders we pass."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    with log_file.open("w") as log:
        done = subprocess.run([sys.executable, str(conv.script(script)), *args], stdout=log,
                              stderr=subprocess.STDOUT, env=env, cwd=str(conv.root))
    if done.returncode != 0:
        raise ConverterFailed(script, done.returncode, log_file.read_text(errors="replace"))


class ConverterFailed(Exception):
    """A converter script exited non-zero; `output` is what it printed (export maps it to a
    PadaError: unsupported architecture, full disk, or the last lines)."""

    def __init__(self, script: str, code: int, output: str) -> None:
        super().__init__(f"{script} exited with {code}")
        self.script, self.code, self.output = script, code, output

    def tail(self, n: int = 6) -> str:
        return "\n".join(self.output.strip().splitlines()[-n:])


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m pada_local.export.converter [--fetch]`: where the converter is; fetch it if asked."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m pada_local.export.converter", description=main.__doc__)
    p.add_argument("--fetch", action="store_true", help="download it now if it is not cached (from PyPI)")
    args = p.parse_args(argv)
    try:
        conv = ensure(args.fetch, log=lambda m: print(m, file=sys.stderr))
    except PadaError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    print(conv.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
