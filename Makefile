# mtinsar developer entry points. Every target sets up .venv itself when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean sysdeps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

## demo: simulate the built-in scene and run the SBAS job on it (outputs in demo_output/)
demo: $(STAMP)
	$(BIN)/mtinsar demo --out demo_output

## test: lint, then the whole test suite (installs PostgreSQL and Chromium if missing)
test: $(STAMP) sysdeps lint
	$(BIN)/python -m pytest

sysdeps:
	bash scripts/system-deps.sh

## bench: speed, memory and accuracy vs MintPy, NRT updates, service load (slow; not in test)
bench: $(STAMP) sysdeps
	bash benchmarks/setup_mintpy.sh
	# byte-compiled as an installed package is (PYTHONDONTWRITEBYTECODE would leave an
	# editable install to compile its modules in every process the benchmarks start)
	$(BIN)/python -m compileall -q src
	$(BIN)/python benchmarks/speed.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/accuracy.py
	$(BIN)/python benchmarks/nrt_update.py
	$(BIN)/python benchmarks/backends.py
	$(BIN)/python benchmarks/service_load.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) demo_output .pytest_cache .ruff_cache
