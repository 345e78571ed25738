# nsiter: `make figures` regenerates every figure and table (CPU by default); `make test` runs the tests.
# Both create/update the local virtual environment .venv first.
#
# torch is pinned to the local CPU build (2.13.0) so a machine without CUDA never pulls the multi-GB
# CUDA wheels. On a CUDA machine: `make TORCH=torch test` (or any pip requirement for torch).

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
QUICK ?=

.PHONY: all install test figures paper bench lint format clean distclean

all: figures

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q

figures: $(STAMP)
	$(PY) -m experiments $(if $(QUICK),--quick,)

paper: figures
	cd paper && latexmk -pdf -interaction=nonstopmode -halt-on-error -jobname=nsiter main.tex

bench: $(STAMP)
	$(PY) -m nsiter bench

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf .pytest_cache .ruff_cache build *.egg-info
	cd paper && latexmk -C -jobname=nsiter main.tex 2>/dev/null || true

distclean: clean
	rm -rf $(VENV)
