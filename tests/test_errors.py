"""What errors say and how often they are logged: the calling tenant's name, the throttle.

Tenants with identical settings share one failover plan (issue 8 item 10): errors and
events must name the tenant whose call saw them, never the one that happened to use
the plan first. And a dead server must not flood the log (item 11): every caller gets
its error, but the log gets one line per change of state plus at most one summary per
second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis.backoff
import redis.retry

from redis_tenancy import FailoverEvent, NoHealthyEndpointError, UnknownTenantError
from redis_tenancy._embedded import RedisServer
from redis_tenancy._errors import Throttle
from redis_tenancy.redis_db import (
    POPOTO_REDIS_DB,
    default_router,
    set_REDIS_DB_settings,
    tenant,
)

from .conftest import direct


@pytest.fixture
def doomed() -> Iterator[tuple[RedisServer, RedisServer]]:
    servers = [RedisServer().start(), RedisServer().start()]
    try:
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


# -- the throttle, I/O-free ------------------------------------------------------------------


def test_throttle_logs_once_per_state_then_a_summary_per_interval() -> None:
    clock = FakeClock()
    throttle = Throttle(interval=1.0, clock=clock)
    assert throttle.line("acme", "down", "first") == "first"
    assert throttle.line("acme", "down", "again") is None
    clock.now += 0.5
    assert throttle.line("acme", "down", "again") is None
    clock.now += 0.6
    line = throttle.line("acme", "down", "latest")
    assert line == "2 similar errors suppressed since the last report; the latest: latest"
    assert throttle.line("acme", "down", "x") is None
    assert throttle.line("acme", "other state", "changed") == "changed"
    assert throttle.line("globex", "down", "another key") == "another key"


def test_throttle_logs_a_new_outage_in_full_after_a_quiet_spell() -> None:
    clock = FakeClock()
    throttle = Throttle(interval=1.0, clock=clock)
    assert throttle.line("acme", "down", "first") == "first"
    clock.now += 5  # it recovered meanwhile: the next failure is news
    assert throttle.line("acme", "down", "second outage") == "second outage"


def test_throttle_memory_is_bounded() -> None:
    throttle = Throttle(capacity=10)
    for i in range(100):
        assert throttle.line(i, "down", "m") == "m"
    assert len(throttle._seen) <= 10


# -- the log during an outage, on real servers -----------------------------------------------


def test_outage_logs_a_handful_of_lines_not_one_per_caller(
    doomed: tuple[RedisServer, RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = doomed
    no_retry = redis.retry.Retry(redis.backoff.NoBackoff(), 0)  # every call its own error
    set_REDIS_DB_settings("down", url=server.url, socket_connect_timeout=1, retry=no_retry)
    with tenant("down"):
        POPOTO_REDIS_DB.ping()
    server.kill()
    raised = [0] * 8
    stop = threading.Event()

    def caller(n: int) -> None:
        with tenant("down"):
            while not stop.is_set():
                try:
                    POPOTO_REDIS_DB.get("k")
                except NoHealthyEndpointError:
                    raised[n] += 1

    caplog.set_level(logging.ERROR, logger="POPOTO-REDIS_DB")
    threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    while sum(raised) < 2000 and time.monotonic() - started < 30:
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(30)
    elapsed = time.monotonic() - started
    lines = [r.getMessage() for r in caplog.records if "no healthy endpoint" in r.getMessage()]
    full = [line for line in lines if "suppressed" not in line]
    summaries = [line for line in lines if "suppressed" in line]
    assert sum(raised) >= 2000, "every caller still gets its error"
    assert len(full) <= 2, full  # the outage began (and, at most, its first error changed)
    assert len(summaries) <= elapsed + 1  # at most one a second
    assert all("tenant 'down'" in line for line in lines)


# -- a shared plan names the caller ------------------------------------------------------------


def test_errors_and_events_of_a_shared_plan_name_the_calling_tenant(
    doomed: tuple[RedisServer, RedisServer],
) -> None:
    primary, backup = doomed
    shared = {"url": primary.url, "failover_urls": [backup.url], "failover_cooldown": 60}
    default_router.register_many({"acme": shared, "globex": shared})
    events: list[FailoverEvent] = []
    unsubscribe = default_router.on_failover(events.append)
    try:
        with tenant("acme"):
            POPOTO_REDIS_DB.ping()  # acme uses the shared plan first
        primary.kill()
        with tenant("globex"):
            POPOTO_REDIS_DB.set("k", "globex on the backup")
        assert [(e.tenant, e.kind) for e in events] == [("globex", "failover")]
        backup.kill()
        with tenant("globex"), pytest.raises(NoHealthyEndpointError) as info:
            POPOTO_REDIS_DB.get("k")
    finally:
        unsubscribe()
    assert "tenant 'globex'" in str(info.value)
    assert "acme" not in str(info.value)
    assert default_router.status("globex").name == "globex"


def test_a_failover_seen_inside_the_pool_is_the_callers_event(
    doomed: tuple[RedisServer, RedisServer],
) -> None:
    # The switch happens while the pool hands out a connection (no tenant holds it yet):
    # the tenant's pool view reports it under its own name.
    primary, backup = doomed
    shared = {"url": primary.url, "failover_urls": [backup.url], "failover_cooldown": 60}
    default_router.register_many({"first": shared, "second": shared})
    events: list[FailoverEvent] = []
    unsubscribe = default_router.on_failover(events.append)
    try:
        primary.kill()
        with tenant("second"):
            POPOTO_REDIS_DB.set("k", "v")
    finally:
        unsubscribe()
    assert [e.tenant for e in events] == ["second"]
    assert direct(backup).get("k") == "v"


def test_probing_unknown_tenant_names_logs_a_line_not_one_per_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="POPOTO-REDIS_DB")
    for i in range(500):  # a client trying names: each request gets its typed error
        with pytest.raises(UnknownTenantError), tenant(f"probe-{i}"):
            pass
    lines = [r.getMessage() for r in caplog.records if "unknown tenant" in r.getMessage()]
    assert 1 <= len(lines) <= 3, lines


def test_live_names_lists_used_tenants_without_making_others_live(servers: Any) -> None:
    default_router.register_many({"used": {"url": servers.b.url}, "idle": {"url": servers.b.url}})
    with tenant("used"):
        POPOTO_REDIS_DB.ping()
    assert "used" in default_router.live_names()
    assert "idle" not in default_router.live_names()
    assert "idle" not in default_router.live_names(), "asking made nobody live"
