# Everything the project needs is installed from here; nothing by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test fuzz mutate lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sweeper run sweeps/demo.yaml --offline --out results/demo
	$(BIN)/sweeper report results/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The spec fuzz of tests/test_hostile_spec.py with thousands of examples instead of 50.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=long $(BIN)/python -m pytest -q --timeout=3600 tests/test_hostile_spec.py -k fuzz

# Mutation testing of the money modules, run by hand (docs/mutation.md): mutmut keeps
# its results in mutants/, so a second run only retests what changed. PATH: it runs mypy.
mutate: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,mutate]'
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/mutmut run --max-children 2
	$(BIN)/mutmut results --all true | $(BIN)/python bench/mutation_summary.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis mutants
