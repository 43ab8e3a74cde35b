# The two set-up commands of the README: `make demo` (the main job) and `make test` (the suite).
# Both create .venv in the repository root on first use and install the package into it.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# Where pip finds the CPU build of torch pinned in constraints.txt, if its own configuration does
# not offer it: the PyTorch CPU index, e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu.
TORCH_INDEX ?=
PIP_INSTALL := $(BIN)/python -m pip install --quiet --constraint constraints.txt \
	$(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))

.PHONY: demo test lint bench cartpole clean

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -e '.[lab,test]' \
		|| { echo "make: pip failed. No torch 2.13.0+cpu? Set TORCH_INDEX (constraints.txt)"; exit 1; }
	touch $@

demo: $(INSTALLED)
	$(BIN)/samplegrad demo --out report

lint: $(INSTALLED)
	$(BIN)/ruff check src tests benchmarks examples docs/hooks.py
	$(BIN)/ruff format --check src tests benchmarks examples docs/hooks.py
	$(BIN)/lint-imports --no-cache

test: lint
	$(BIN)/python -m pytest

bench: $(INSTALLED)
	$(PIP_INSTALL) -e '.[lab,test,bench]'
	$(BIN)/python benchmarks/overhead.py --out benchmarks/results

cartpole: $(INSTALLED)
	$(PIP_INSTALL) -e '.[lab,test,rl]'
	$(BIN)/python benchmarks/cartpole.py --out benchmarks/results

# The documentation site into site/; --strict turns a broken link or reference into an error.
.PHONY: docs
docs: $(INSTALLED)
	$(PIP_INSTALL) -e '.[lab,test,docs]'
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) out report .pytest_cache .ruff_cache
