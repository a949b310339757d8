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

.PHONY: setup lint demo test bench clean-venv setup-unsloth setup-mlx test-backends bench-trainers \
	check-hardware

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)" $(TORCH_ARGS)
	$(PY) -m pip install -q -e ".[dev]"
	$(VENV)/bin/pada models --prepare
	$(PY) -m pada_local.export.converter --fetch
	touch $(STAMP)

demo: setup
	$(VENV)/bin/pada demo

test: setup lint
	$(PY) -m pytest -q -p no:cacheprovider

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
setup-unsloth:
	test -x .venv-unsloth/bin/python || $(PYTHON) -m venv .venv-unsloth
	.venv-unsloth/bin/pip install -q "$(TORCH_SPEC)" $(TORCH_ARGS)
	.venv-unsloth/bin/pip install -q -e ".[unsloth,dev]" "$(TORCH_SPEC)"
	.venv-unsloth/bin/pip uninstall -q -y torchvision

setup-mlx:
	test -x .venv-mlx/bin/python || $(PYTHON) -m venv .venv-mlx
	.venv-mlx/bin/pip install -q "$(TORCH_SPEC)"
	.venv-mlx/bin/pip install -q -e ".[mlx,dev]"

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
