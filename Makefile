# Every target creates .venv on first use, so a fresh clone needs nothing but Python 3.11+.
# Two install stamps: `make deploy` needs only the base dependencies (the local target, seconds
# to install); `make test` adds the cloud SDKs, Pulumi providers and test tools (~1 GB).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCAL_STAMP := $(VENV)/.imctl-local
TEST_STAMP := $(VENV)/.imctl-test
# Passed to `imctl deploy`: make deploy ARGS="--port 8800 --replicas 3"
ARGS ?=

.PHONY: deploy test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# --no-compile: byte-compiling every installed package was a third of the install's CPU; the
# modules a command imports are compiled on first use instead.
$(LOCAL_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --no-compile -e .
	touch $@

$(TEST_STAMP): $(LOCAL_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The name the full install had before the two stamps; kept for scripts that still make it.
$(VENV)/.imctl-installed: $(TEST_STAMP)
	touch $@

deploy: $(LOCAL_STAMP)
	$(BIN)/imctl deploy $(ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

# A test file per worker keeps module-scoped clusters in one process; most of the suite waits
# on PostgreSQL and subprocesses, so two workers on two cores still gain.
test: lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider -n auto --maxprocesses 4 --dist loadfile

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
