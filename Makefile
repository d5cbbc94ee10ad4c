# The two commands of the README:
#   make quickstart   set up, build the embedded dataset, train the CPU quickstart config, evaluate it
#   make test         set up, lint (ruff), type-check (mypy) and run the whole test suite
# For the inner loop: make test-fast (ruff, then the tests not marked slow: about 2 minutes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast lint quickstart data clean-venv

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	# Declares pyaudio (live playback only, never imported here), which does not build headless.
	$(BIN)/python -m pip install -q --no-deps "tinysoundfont>=0.3.7,<0.4"
	# The package itself, editable: the `sparse-jax` command (its dependencies came just above).
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check sparse_jax tests benchmarks configs train.py eval.py
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q tests

test-fast: $(STAMP)
	$(BIN)/ruff check sparse_jax tests benchmarks configs train.py eval.py
	$(BIN)/python -m pytest -q -m "not slow" tests

data: $(STAMP)
	$(BIN)/python -m sparse_jax build-data

quickstart: $(STAMP)
	$(BIN)/python -m sparse_jax build-data
	$(BIN)/python train.py --config configs/quickstart.py --workdir runs/quickstart
	$(BIN)/python eval.py --workdir runs/quickstart

clean-venv:
	rm -rf $(VENV)
