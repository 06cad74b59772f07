PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python)

.PHONY: setup test-deps test test-all lint

setup:
	python3 -m venv .venv && .venv/bin/pip install -q -e ".[test,plot]"

# Installs the test tools into the interpreter when they are missing (the Quickstart's .venv has none).
test-deps:
	@$(PYTHON) -c "import pytest, sklearn, nbclient, matplotlib" 2>/dev/null || $(PYTHON) -m pip install -q -e ".[test,plot]"

# The README's test command: the default suite (everything not marked slow).
test: test-deps
	$(PYTHON) -m pytest -q -m "not slow" tests

test-all: test-deps
	$(PYTHON) -m pytest -q tests

lint:
	$(PYTHON) -m ruff check electra_jax tests configs benchmarks
