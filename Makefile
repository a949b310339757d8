# The README's two commands: `make demo` and `make test`. Each sets itself up first.
# Set-up: a virtual environment, torch first (pinned, so pip takes the CPU wheel instead of
# a multi-GB CUDA build on machines without a GPU), then the project and its models.
VENV ?= .venv
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python

# TORCH picks the torch build (README, "Set-up per machine"). Unset: pip's own choice of
# TORCH_SPEC, as always (here the CPU wheel from the local package index; on PyPI's Linux index
# the CUDA 13.0 build). cpu: the CPU build. cu126: CUDA 12.6, NVIDIA driver 525.60.13+ (Linux),
# GPUs of compute capability 5.0-9.0 (Maxwell to Hopper, incl. Pascal/Volta laptops).
# cu130: CUDA 13.0, driver 580+, capability 7.5+ (Turing and newer, incl. Blackwell).
TORCH ?=
TORCH_KINDS := cpu cu126 cu130
ifneq ($(TORCH),)
ifeq ($(filter $(TORCH),$(TORCH_KINDS)),)
$(error TORCH must be one of: $(TORCH_KINDS) (or unset))
endif
endif
TORCH_ARGS := $(if $(TORCH),--index-url https://download.pytorch.org/whl/$(TORCH),)
STAMP := $(VENV)/.pada-setup$(if $(TORCH),-$(TORCH),)

# CONSTRAINTS: the versions CI last passed with (README, "Quick start"), applied to every install
# here but unsloth's (it pins its own transformers). Empty (`make setup CONSTRAINTS=`): the open
# ranges of pyproject.toml. torch is the one TORCH_SPEC installed first: `pins` writes the file
# without its torch line, plus TORCH_SPEC, into the venv, so a TORCH_SPEC override is not undone.
# pip also applies any constraint file of its own configuration (pip config list); both must hold.
CONSTRAINTS ?= constraints.txt
pins = { $(if $(CONSTRAINTS),grep -v '^torch==' $(CONSTRAINTS) &&) echo '$(TORCH_SPEC)'; } > $(1)/pada-constraints.txt

# What `make test` adds to .venv on Linux: mlx-lm and MLX's CPU build (the `mlx` extra, pinned like
# the rest), so the MLX trainer's tests run in CI. Not on a Mac: mlx-lm in .venv would make `auto`
# train with MLX in `make demo` there (make setup-mlx keeps it apart).
TEST_EXTRAS := $(if $(filter Linux,$(shell uname -s)),mlx,)
TEST_STAMP := $(if $(TEST_EXTRAS),$(VENV)/.pada-test-$(TEST_EXTRAS),)

.PHONY: setup lint demo test test-extras bench clean-venv setup-unsloth setup-mlx test-backends \
	bench-trainers check-hardware constraints

setup: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)" $(TORCH_ARGS)
	$(call pins,$(VENV))
	$(PY) -m pip install -q -c $(VENV)/pada-constraints.txt -e ".[dev]"
	$(VENV)/bin/pada models --prepare
	$(PY) -m pada_local.export.converter --fetch
	touch $(STAMP)

demo: setup
	$(VENV)/bin/pada demo

# -rs lists each skipped test with its reason. PADA_TEST_REQUIRE_TRAINERS: the trainers whose tests
# must run, not skip (tests/test_ci_trainers.py fails if one of them cannot run here).
test: setup lint test-extras
	PADA_TEST_REQUIRE_TRAINERS=$(TEST_EXTRAS) $(PY) -m pytest -q -rs -p no:cacheprovider

test-extras: $(TEST_STAMP)

$(VENV)/.pada-test-mlx: $(STAMP)
	$(PY) -m pip install -q -c $(VENV)/pada-constraints.txt -e ".[dev,mlx]"
	touch $@

# The static check (ruff + mypy, configured in pyproject.toml); part of `make test` and so of CI.
lint: setup
	$(VENV)/bin/ruff check pada_local tui
	$(VENV)/bin/mypy

bench: setup
	$(PY) benchmarks/bench_engines.py

clean-venv:
	rm -rf $(VENV)

# Optional trainer backends, each in its own environment: unsloth pins its own transformers,
# and mlx-lm is for Apple Silicon (on Linux it runs on the CPU, slowly, for tests).
# torch is pinned again in the second install, or pip upgrades it to a CUDA build.
# Unsloth trains on CUDA only: give it the torch build for the GPU (make setup-unsloth TORCH=cu126).
# Unsloth's install takes no CONSTRAINTS: its own pins (transformers, trl, peft ...) decide there.
setup-unsloth:
	test -x .venv-unsloth/bin/python || $(PYTHON) -m venv .venv-unsloth
	.venv-unsloth/bin/pip install -q "$(TORCH_SPEC)" $(TORCH_ARGS)
	.venv-unsloth/bin/pip install -q -e ".[unsloth,dev]" "$(TORCH_SPEC)"
	.venv-unsloth/bin/pip uninstall -q -y torchvision

setup-mlx:
	test -x .venv-mlx/bin/python || $(PYTHON) -m venv .venv-mlx
	.venv-mlx/bin/pip install -q "$(TORCH_SPEC)"
	$(call pins,.venv-mlx)
	.venv-mlx/bin/pip install -q -c .venv-mlx/pada-constraints.txt -e ".[mlx,dev]"

test-backends: setup setup-unsloth setup-mlx
	$(PY) -m pytest -q tests/test_backends.py
	.venv-unsloth/bin/python -m pytest -q tests/test_backends.py
	.venv-mlx/bin/python -m pytest -q tests/test_backends.py

bench-trainers: setup
	$(PY) benchmarks/bench_trainers.py

# The hardware check (issue 14) for a CUDA GPU or an Apple Silicon Mac: doctor, the backend tests,
# a one-round demo run with peak memory per stage, the trained score three ways. Without a
# usable GPU it prints doctor's findings and exits 2 (scripts/check_hardware.py --cpu forces it).
check-hardware: setup
	$(PY) scripts/check_hardware.py

# What a round costs with a 135M and a Llama-3.2-1B-sized student on this machine (~20 min on 2 cores).
bench-cost: setup
	$(PY) benchmarks/bench_cost.py

# Refresh CONSTRAINTS: pyproject.toml's ranges resolved afresh (no constraints) in a scratch venv,
# with TORCH_SPEC's torch and what `make test` adds, then written with the Python versions every
# pinned release supports as a marker (other Pythons get the open ranges). On Linux, as CI. Commit
# the new file only after `make test` (CI) passed with it; `git diff constraints.txt` shows what moved.
constraints:
	test "$$(uname -s)" = Linux || { echo "make constraints: run it on Linux, as CI runs" >&2; exit 1; }
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/pip install -q --upgrade pip
	.venv-constraints/bin/pip install -q "$(TORCH_SPEC)" $(TORCH_ARGS)
	.venv-constraints/bin/pip install -q -e ".[dev,$(TEST_EXTRAS)]" "$(TORCH_SPEC)"
	.venv-constraints/bin/python -c "$$WRITE_PINS" > .venv-constraints/constraints.txt
	mv .venv-constraints/constraints.txt $(or $(CONSTRAINTS),constraints.txt)
	rm -rf .venv-constraints

# Every installed distribution at its version (torch without its +cpu/+cuXXX build tag), except this
# project, pip's own tools and CUDA runtime wheels (they come with a CUDA torch build, per machine).
define WRITE_PINS
import platform, re
from importlib import metadata
from packaging.specifiers import SpecifierSet

skip = re.compile(r"pada-local|pip|setuptools|wheel|nvidia-.*|triton|cuda-.*")
pins = {}
for dist in metadata.distributions():
    name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
    if not skip.fullmatch(name):
        pins[name] = (dist.version.split("+")[0], SpecifierSet(dist.metadata.get("Requires-Python") or ""))
minors = [f"3.{m}" for m in range(10, 16)]
fits = [v for v in minors if all(f"{v}.0" in s and f"{v}.99" in s for _, s in pins.values())]
marker = [f'python_version >= "{fits[0]}"'] if fits and fits[0] != minors[0] else []
if fits and fits[-1] != minors[-1]:
    marker.append(f'python_version <= "{fits[-1]}"')
tail = " ; " + " and ".join(marker) if marker else ""
print("# The versions CI last passed with: make setup (and setup-mlx, and make test's mlx extra) installs")
print("# these. Written by make constraints from a fresh resolution of pyproject.toml's ranges on")
print(f"# {platform.system()} {platform.machine()}, Python {platform.python_version()}; committed only after CI passed with it.")
print("# The marker: the Python versions all of these releases support (elsewhere the open ranges apply).")
for name in sorted(pins):
    print(f"{name}=={pins[name][0]}{tail}")
endef
export WRITE_PINS
