# mtinsar developer entry points. Every target sets up .venv itself when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

## demo: simulate the built-in scene and run the SBAS job on it (outputs in demo_output/)
demo: $(STAMP)
	$(BIN)/mtinsar demo --out demo_output

## test: lint, then the whole test suite
test: $(STAMP) lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

clean:
	rm -rf $(VENV) demo_output .pytest_cache .ruff_cache
