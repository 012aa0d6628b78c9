"""Popoto's own test suite under ``redis_tenancy.popoto`` (used by scripts/popoto_suite.sh).

Copied in as the suite's ``tests/conftest.py`` for the "with" run only; the "without"
run is the suite exactly as Popoto ships it. Loaded before any test module (and before
Popoto's pytest plugin configures itself), it

- installs the integration on a router whose *default* tenant is a trap database
  (``POPOTO_SUITE_TRAP_URL``) and registers the tenant ``suite`` on the database the
  suite uses (``POPOTO_SUITE_URL``, db 15 like Popoto's plugin), then enters
  ``tenant("suite")`` for the whole session: the main thread, and every task and
  ``asyncio.to_thread`` worker it starts, run as ``suite``; a thread started without
  copying the context runs as the default tenant and writes to the trap (db 9: the
  suite itself uses 14 and 15). The router has a connection budget of 256 waiting up
  to 20 s (Popoto's own pools: 128 sync + 128 async ``BlockingConnectionPool``s,
  whose excess callers wait up to 20 s), so bursts wait as they do under Popoto;
- with ``POPOTO_SUITE_THREADS=inherit``, makes every thread start in the context of
  the code that started it (what Python 3.14's ``-X thread_inherit_context=1`` does),
  to tell the suite's thread tests failing for that reason from routing bugs;
- after each test records whether anything reached the trap (a routing leak, or a
  thread without the tenant context) and empties it; the list goes to
  ``POPOTO_SUITE_REPORT``.

Popoto's plugin keeps running as shipped: it flushes ``POPOTO_REDIS_DB`` (the suite
tenant) before each test, and its re-assertions of db 15 are no-op swaps.
"""

from __future__ import annotations

import contextvars
import json
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import redis_tenancy.popoto
from redis_tenancy import Router

SUITE_URL = os.environ["POPOTO_SUITE_URL"]
TRAP_URL = os.environ["POPOTO_SUITE_TRAP_URL"]
REPORT = os.environ.get("POPOTO_SUITE_REPORT", "")
# Per-pool connection *objects*: let the router's budget do the capping.
SUITE_KWARGS = {"max_connections": 10_000}

if os.environ.get("POPOTO_SUITE_THREADS") == "inherit":
    _start = threading.Thread.start

    def _start_in_context(self: threading.Thread) -> None:
        context, run = contextvars.copy_context(), self.run
        self.run = lambda: context.run(run)  # type: ignore[method-assign]
        _start(self)

    threading.Thread.start = _start_in_context  # type: ignore[method-assign]

router = Router(default_url=TRAP_URL, max_connections=256, wait_timeout=20)
redis_tenancy.popoto.install(router)
router.register("suite", url=SUITE_URL, **SUITE_KWARGS)
_SESSION_TENANT = router.tenant("suite")
_SESSION_TENANT.__enter__()
_EXPECTED = {name: router.settings(name).endpoint for name in ("", "suite")}
_trap = redis.Redis.from_url(TRAP_URL)
_leaks: list[tuple[str, int]] = []


@pytest.fixture(autouse=True)
def _tenancy_harness(request: pytest.FixtureRequest) -> Iterator[None]:
    # A test may re-register a tenant through set_REDIS_DB_settings (it means "the
    # connection"; here the default tenant): put both back, as Popoto's plugin re-swaps
    # its db before each test.
    for name, url, kwargs in (("", TRAP_URL, {}), ("suite", SUITE_URL, SUITE_KWARGS)):
        if router.settings(name).endpoint != _EXPECTED[name]:
            router.register(name, url=url, **kwargs)
    yield
    leaked = int(_trap.dbsize())
    if leaked:
        _leaks.append((request.node.nodeid, leaked))
        _trap.flushdb()


def pytest_sessionfinish(session: pytest.Session, exitstatus: Any) -> None:
    if REPORT:
        with open(REPORT, "w", encoding="utf-8") as out:
            json.dump({"leaks": _leaks}, out, indent=1)
