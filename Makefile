# The README's two commands: `make demo` and `make test`. Each sets itself up first.
# Set-up: a virtual environment, torch first (pinned, so pip takes the CPU wheel instead of
# a multi-GB CUDA build on machines without a GPU), then the project and its models.
VENV ?= .venv
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pada-setup

.PHONY: setup lint demo test bench clean-venv setup-unsloth setup-mlx test-backends bench-trainers

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	$(VENV)/bin/pada models --prepare
	$(PY) -m pada_local.converter --fetch
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
setup-unsloth:
	test -x .venv-unsloth/bin/python || $(PYTHON) -m venv .venv-unsloth
	.venv-unsloth/bin/pip install -q "$(TORCH_SPEC)"
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
