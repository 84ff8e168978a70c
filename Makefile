# Every target creates .venv on first use, so a fresh clone needs nothing but Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.imctl-installed

.PHONY: deploy test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

deploy: $(STAMP)
	$(BIN)/imctl deploy

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	# A test file per worker keeps module-scoped clusters in one process; most of the suite
	# waits on PostgreSQL and subprocesses, so two workers on two cores still gain.
	$(BIN)/pytest -q -p no:cacheprovider -n auto --maxprocesses 4 --dist loadfile

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
