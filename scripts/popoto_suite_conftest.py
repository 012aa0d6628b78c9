"""Popoto's own test suite under ``redis_tenancy.popoto`` (used by scripts/popoto_suite.sh).

Copied in as the suite's ``tests/conftest.py`` for the "with" run only; the "without"
run is the suite exactly as Popoto ships it. Loaded before any test module (and before
Popoto's pytest plugin configures itself), it

- installs the integration on the default router;
- points the *default* tenant at a trap database (``POPOTO_SUITE_TRAP_URL``) and
  registers the tenant ``suite`` on the database the suite uses
  (``POPOTO_SUITE_URL``, db 15 like Popoto's plugin), then enters ``tenant("suite")``
  for the whole session: the main thread, and every task and ``asyncio.to_thread``
  worker it starts, run as ``suite``; a thread started without copying the context
  runs as the default tenant and writes to the trap;
- after each test records whether anything reached the trap (a routing leak, or a
  thread without the tenant context) and empties it; the list goes to
  ``POPOTO_SUITE_REPORT``.

Popoto's plugin keeps running as shipped: it flushes ``POPOTO_REDIS_DB`` (the suite
tenant) before each test, and its re-assertions of db 15 are no-op swaps.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
import redis

import redis_tenancy.popoto
from redis_tenancy import default_router, set_REDIS_DB_settings, tenant

SUITE_URL = os.environ["POPOTO_SUITE_URL"]
TRAP_URL = os.environ["POPOTO_SUITE_TRAP_URL"]
REPORT = os.environ.get("POPOTO_SUITE_REPORT", "")

redis_tenancy.popoto.install()
set_REDIS_DB_settings("", url=TRAP_URL)
set_REDIS_DB_settings("suite", url=SUITE_URL)
_SESSION_TENANT = tenant("suite")
_SESSION_TENANT.__enter__()
_EXPECTED = {name: default_router.settings(name).endpoint for name in ("", "suite")}
_trap = redis.Redis.from_url(TRAP_URL)
_leaks: list[tuple[str, int]] = []


@pytest.fixture(autouse=True)
def _tenancy_harness(request: pytest.FixtureRequest) -> Iterator[None]:
    # A test may re-register a tenant through set_REDIS_DB_settings (it means "the
    # connection"; here the default tenant): put both back, as Popoto's plugin re-swaps
    # its db before each test.
    for name, url in (("", TRAP_URL), ("suite", SUITE_URL)):
        if default_router.settings(name).endpoint != _EXPECTED[name]:
            set_REDIS_DB_settings(name, url=url)
    yield
    leaked = int(_trap.dbsize())
    if leaked:
        _leaks.append((request.node.nodeid, leaked))
        _trap.flushdb()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if REPORT:
        with open(REPORT, "w", encoding="utf-8") as out:
            json.dump({"leaks": _leaks}, out, indent=1)
