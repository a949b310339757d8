# The README's two commands: `make demo` and `make test`. Each sets itself up first.
# Set-up: a virtual environment, torch first (pinned, so pip takes the CPU wheel instead of
# a multi-GB CUDA build on machines without a GPU), then the project and its models.
VENV ?= .venv
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pada-setup

.PHONY: setup demo test bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	$(VENV)/bin/pada models --prepare
	touch $(STAMP)

demo: setup
	$(VENV)/bin/pada demo

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

bench: setup
	$(PY) benchmarks/bench_engines.py

clean-venv:
	rm -rf $(VENV)
