# The two set-up commands: `make demo` runs the main job, `make test` passes the tests.
# Each creates .venv idempotently and installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= demo

# Point the project at a local Fashion-MNIST copy when one lies beside the checkout.
SHARED_DATA := $(abspath ../shared/data/fashion-mnist)
ifeq ($(origin LOSSLAND_DATA), undefined)
ifneq ($(wildcard $(SHARED_DATA)/train-labels-idx1-ubyte.gz),)
export LOSSLAND_DATA := $(SHARED_DATA)
endif
endif

.PHONY: demo test lint typecheck unit bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# The CPU build of torch first: on this machine it is a local file; elsewhere a plain
	# torch requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0 || $(PY) -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu || true
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lossland demo -o $(DEMO_OUT) --overwrite

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(PY) benchmarks/surface_speed.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache
