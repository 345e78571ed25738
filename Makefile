# nsiter: `make figures` regenerates every figure, table and executed notebook (CPU by default); `make test`
# runs the tests.  Both do their own set-up on a fresh machine: the local virtual environment .venv, and
# for `make test` (and `make paper`) TeX, which the paper test needs (`make tex`, below).
#
# torch is pinned to the local CPU build (2.13.0) so a machine without CUDA never pulls the multi-GB
# CUDA wheels. On a CUDA machine: `make TORCH=torch test` (or any pip requirement for torch).

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PEER ?= gram-newton-schulz==0.1.6
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
QUICK ?=

# TeX for the paper: Debian packages, installed by `make tex` when run as root on a machine with apt-get.
# Otherwise `make tex` prints one line saying what to install, and the paper test is skipped with that
# reason (NSITER_REQUIRE_TEX=1, as .ci/run sets it, turns both into failures).
TEX_PACKAGES := latexmk texlive-latex-base texlive-latex-recommended texlive-latex-extra \
	texlive-fonts-recommended texlive-science lmodern
LATEXMK ?= latexmk
KPSEWHICH ?= kpsewhich
APT_GET ?= apt-get
USER_ID ?= $(shell id -u)

.PHONY: all install tex test figures notebooks paper bench lint format clean distclean

all: figures

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	# the Gram Newton-Schulz peer: an optional benchmark and test reference (pure torch path), never vendored
	$(PY) -m pip install -q --no-deps "$(PEER)"
	touch $(STAMP)

install: $(STAMP)

tex:
	@if command -v $(LATEXMK) >/dev/null 2>&1 && $(KPSEWHICH) booktabs.sty >/dev/null 2>&1; then \
	  :; \
	elif [ "$(USER_ID)" = 0 ] && command -v $(APT_GET) >/dev/null 2>&1; then \
	  echo "make tex: installing TeX: $(TEX_PACKAGES)"; \
	  DEBIAN_FRONTEND=noninteractive $(APT_GET) update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends $(TEX_PACKAGES) >/dev/null; \
	elif [ -n "$$NSITER_REQUIRE_TEX" ]; then \
	  echo "make tex: error: latexmk and TeX Live are missing and cannot be installed here (need root and apt-get): $(TEX_PACKAGES)" >&2; \
	  exit 1; \
	else \
	  echo "make tex: TeX not found; to build the paper install latexmk and TeX Live (Debian, as root: apt-get install $(TEX_PACKAGES)); until then the paper test is skipped"; \
	fi

test: $(STAMP) tex
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q

figures: $(STAMP) notebooks
	$(PY) -m experiments $(if $(QUICK),--quick,)

# the example notebooks, executed in place with their outputs (deterministic: fixed seeds, no timings)
notebooks: $(STAMP)
	$(PY) examples/execute.py

paper: figures tex
	cd paper && $(LATEXMK) -pdf -interaction=nonstopmode -halt-on-error -jobname=nsiter main.tex

# the committed benchmark table is replaced only here, by name (on a GPU: BENCH_OUT=.../bench_cuda.csv)
BENCH_OUT ?= benchmarks/results/bench_cpu.csv
bench: $(STAMP)
	$(PY) -m nsiter bench --out $(BENCH_OUT)

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
