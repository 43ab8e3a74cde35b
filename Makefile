# The two set-up commands of the README: `make demo` (the main job) and `make test` (the suite).
# Both create .venv in the repository root on first use and install the package into it.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint bench cartpole clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(INSTALLED)
	$(BIN)/samplegrad demo --out report

lint: $(INSTALLED)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: lint
	$(BIN)/python -m pytest

bench: $(INSTALLED)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python benchmarks/overhead.py --out benchmarks/results

cartpole: $(INSTALLED)
	$(BIN)/python -m pip install --quiet -e '.[test,rl]'
	$(BIN)/python benchmarks/cartpole.py --out benchmarks/results

clean:
	rm -rf $(VENV) out report .pytest_cache .ruff_cache
