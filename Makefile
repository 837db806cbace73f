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

# timm imports torchvision, whose registry build only imports beside its own torch build (not
# the CPU torch of .venv), so the timm tests run in an environment of their own.
TIMM_VENV := .venv-timm
TIMM_STAMP := $(TIMM_VENV)/.installed-stamp
ifeq ($(shell uname -m),aarch64)
TIMM_TORCH := torch==2.9.1 torchvision==0.24.1
else
TIMM_TORCH := torch==2.14.1 torchvision==0.29.1
endif

.PHONY: demo test lint typecheck unit timm bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# The CPU build of torch first: on this machine it is a local file; elsewhere a plain
	# torch requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0 || $(PY) -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu || true
	$(PY) -m pip install -q -e '.[dev,models,training]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lossland demo -o $(DEMO_OUT) --overwrite

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q

$(TIMM_STAMP): pyproject.toml
	test -x $(TIMM_VENV)/bin/python || $(PYTHON) -m venv $(TIMM_VENV)
	$(TIMM_VENV)/bin/python -m pip install -q $(TIMM_TORCH)
	$(TIMM_VENV)/bin/python -m pip install -q -e '.[dev,models,timm]'
	touch $(TIMM_STAMP)

timm: $(TIMM_STAMP)
	LOSSLAND_REQUIRE_TIMM=1 $(TIMM_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_timm.py

test: lint typecheck unit timm

bench: $(STAMP)
	$(PY) benchmarks/surface_speed.py

clean:
	rm -rf $(VENV) $(TIMM_VENV) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache
