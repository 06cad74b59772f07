PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python)

.PHONY: setup test test-all lint

setup:
	python3 -m venv .venv && .venv/bin/pip install -q "torch==2.13.0" && .venv/bin/pip install -q -e ".[test,plot]"

# The README's test command: the default suite (everything not marked slow).
test:
	$(PYTHON) -m pytest -q -m "not slow" tests

test-all:
	$(PYTHON) -m pytest -q tests

lint:
	$(PYTHON) -m ruff check electra_jax tests configs benchmarks
