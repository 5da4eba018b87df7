# Two commands for a fresh machine with Python 3.10+:
#   make run    set up .venv, download ml-100k, run every notebook, write runs/<time>/report.md
#   make test   set up .venv and run the offline test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Which torch to install when none is present; e.g. TORCH_SPEC="torch==2.13.0", or a CPU
# wheel from https://download.pytorch.org/whl/cpu to avoid a multi-GB CUDA build.
TORCH_SPEC ?= torch
# browser tests skip by themselves where no Chromium is installed
TEST_MARKERS ?= not slow and not gpu and not network

.PHONY: setup run test lint test-slow lab clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

run: setup
	$(BIN)/workbench download ml-100k
	$(BIN)/workbench run

test: setup lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15 -m "($(TEST_MARKERS)) and not serial" tests
	$(BIN)/python -m pytest -q --durations=5 -m "($(TEST_MARKERS)) and serial" tests
	WORKBENCH_SMOKE=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile --nbval-lax notebooks

# ruff (lint + format) over the package, tests, benchmarks and notebooks; the layer contracts
lint: setup
	$(BIN)/ruff check workbench tests benchmarks notebooks
	$(BIN)/ruff format --check workbench tests benchmarks notebooks
	$(BIN)/lint-imports

test-slow: setup
	$(BIN)/python -m pytest -q -m slow tests

lab: setup
	$(BIN)/jupyter lab notebooks

clean-venv:
	rm -rf $(VENV)

# implicit, LensKit and RecBole for benchmarks/bench_peers.py and bench_scaling.py, in their own
# environment: LensKit pins pandas < 3 and RecBole 1.2.1 needs numpy < 2 and setuptools < 80 (its
# Ray pin fails on NumPy 2). Keep in step with bench_peers.PEER_INSTALL.
PEERS_VENV ?= .venv-peers
.PHONY: peers
peers: $(PEERS_VENV)/.installed

$(PEERS_VENV)/.installed:
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -c "import torch" 2>/dev/null || $(PEERS_VENV)/bin/python -m pip install "$(TORCH_SPEC)"
	$(PEERS_VENV)/bin/python -m pip install --quiet "numpy<2" "setuptools<80" "pyarrow<19" \
		recbole==1.2.1 lenskit==2025.2.0 implicit==0.7.3
	touch $@
