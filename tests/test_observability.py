"""Logging filter, OpenTelemetry hooks and Prometheus collector, against real servers.

The OpenTelemetry and Prometheus tests kill a tenant's primary so its commands fail
over to a backup: the span must then name the backup (the instrumentation's own
attributes, read from the pool's settings, still name the primary), and the
collector must count the failover.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
import redis
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from redis_tenancy import Router
from redis_tenancy._embedded import RedisServer
from redis_tenancy.executors import TenantThreadPoolExecutor
from redis_tenancy.logfilter import TenantLogFilter
from redis_tenancy.otel import ENDPOINT_ATTRIBUTE, TENANT_ATTRIBUTE, instrument, uninstrument
from redis_tenancy.prometheus import TenantCollector
from redis_tenancy.redis_db import (
    POPOTO_ASYNC_REDIS_DB,
    POPOTO_REDIS_DB,
    current_tenant,
    set_REDIS_DB_settings,
    tenant,
)

from .conftest import SECRET, Servers, direct, wait_until
from .tenancy import HOME, landed, register_tenants


@pytest.fixture
def tenants(servers: Servers) -> Servers:
    return register_tenants(servers)


@pytest.fixture
def primary() -> Iterator[RedisServer]:
    """A server this test alone may kill."""
    with RedisServer() as server:
        yield server


def fail_over(router_client: redis.Redis, primary: RedisServer) -> None:
    """Kill ``primary`` and retry a write until the tenant's backup takes it."""
    primary.kill()

    def written() -> bool:
        try:
            return bool(router_client.set("after", "failover"))
        except redis.ConnectionError:
            return False

    wait_until(written, 20, "a write after the primary was killed")


# -- logging -----------------------------------------------------------------------------------


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[Collect]:
    handler = Collect()
    handler.addFilter(TenantLogFilter())
    logger = logging.getLogger("tests.tenancy")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def log_and_write(key: str) -> None:
    POPOTO_REDIS_DB.set(key, current_tenant())
    logging.getLogger("tests.tenancy").info("%s", key)


async def alog_and_write(key: str) -> None:
    await POPOTO_ASYNC_REDIS_DB.set(key, current_tenant())
    logging.getLogger("tests.tenancy").info("%s", key)


async def test_log_records_carry_the_tenant_whose_server_took_the_write(
    tenants: Servers, captured: Collect
) -> None:
    plan = [("acme", "globex", "")[n % 3] for n in range(9)]

    async def task(n: int, name: str) -> None:
        async with tenant(name):
            await alog_and_write(f"log:async:{n}")

    await asyncio.gather(*(task(n, name) for n, name in enumerate(plan)))
    with TenantThreadPoolExecutor(3) as pool:
        for n, name in enumerate(plan):
            with tenant(name):
                pool.submit(log_and_write, f"log:thread:{n}")
    logging.getLogger("tests.tenancy").info("outside", extra={"tenant": "given"})
    assert len(captured.records) == 2 * len(plan) + 1
    for record in captured.records[:-1]:
        shown = "" if stamp(record) == "-" else stamp(record)
        assert landed(tenants, record.getMessage()) == {HOME[shown]: shown}
    assert {stamp(r) for r in captured.records} == {"acme", "globex", "-", "given"}


def stamp(record: logging.LogRecord) -> str:
    """The ``tenant`` attribute the filter set (LogRecord does not declare it)."""
    return str(record.__dict__["tenant"])


def test_log_filter_in_strict_mode_outside_any_tenant(servers: Servers) -> None:
    router = Router(default_url=servers.a.url, require_tenant=True)
    router.register("acme", url=servers.b.url)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    log_filter = TenantLogFilter(router, placeholder="(none)")
    assert log_filter.filter(record)
    assert stamp(record) == "(none)"
    with router.tenant("acme"):
        del record.__dict__["tenant"]
        assert log_filter.filter(record)
        assert stamp(record) == "acme"
        router.redis.set("strict", "acme")
    assert landed(servers, "strict") == {"b": "acme"}


# -- OpenTelemetry -------------------------------------------------------------------------------


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        uninstrument()


def by_statement(spans: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    """The last finished span of each statement (``SET ? ?``, ``GET ?``...)."""
    return {str((s.attributes or {}).get("db.statement")): s for s in spans.get_finished_spans()}


def test_otel_span_names_the_tenant_and_the_endpoint_in_use_after_a_failover(
    tenants: Servers, primary: RedisServer, spans: InMemorySpanExporter
) -> None:
    set_REDIS_DB_settings(
        "ha", url=primary.url, failover_urls=[tenants.c.url], failover_cooldown=60
    )
    with tenant("ha"):
        POPOTO_REDIS_DB.set("before", "primary")
        spans.clear()
        fail_over(POPOTO_REDIS_DB, primary)
        with POPOTO_REDIS_DB.pipeline() as pipe:
            pipe.get("after")
            assert pipe.execute() == [b"failover"]
    found = by_statement(spans)  # before landed() adds its own clients' spans
    assert landed(tenants, "after") == {"c": "failover"}
    attributes = dict(found["SET ? ?"].attributes or {})
    assert attributes[TENANT_ATTRIBUTE] == "ha"
    assert attributes[ENDPOINT_ATTRIBUTE] == f"redis://{tenants.c.address}/0"
    # The instrumentation read the primary's port from the pool; the hook corrected it.
    assert attributes["net.peer.port"] == attributes["server.port"] == tenants.c.port
    pipeline = dict(found["GET ?"].attributes or {})
    assert pipeline[ENDPOINT_ATTRIBUTE] == f"redis://{tenants.c.address}/0"


async def test_otel_async_spans_and_foreign_clients(
    tenants: Servers, spans: InMemorySpanExporter
) -> None:
    set_REDIS_DB_settings("locked", url=tenants.auth.url)
    async with tenant("locked"):
        await POPOTO_ASYNC_REDIS_DB.set("secret-tenant", "locked")
        with direct(tenants.b) as foreign:
            foreign.set("foreign", "not a tenant client")
    stamped = [s for s in spans.get_finished_spans() if TENANT_ATTRIBUTE in (s.attributes or {})]
    assert len(stamped) == 1
    attributes = dict(stamped[0].attributes or {})
    assert attributes[TENANT_ATTRIBUTE] == "locked"
    assert SECRET not in str(attributes)
    assert attributes[ENDPOINT_ATTRIBUTE] == f"redis://:***@{tenants.auth.address}/0"
    with direct(tenants.auth) as client:
        assert client.get("secret-tenant") == "locked"
    assert landed(tenants, "foreign") == {"b": "not a tenant client"}


# -- Prometheus ----------------------------------------------------------------------------------


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_prometheus_collector_counts_tenants_connections_and_failovers(
    servers: Servers, primary: RedisServer
) -> None:
    router = Router(default_url=servers.a.url)
    router.register("acme", url=primary.url, failover_urls=[servers.b.url], failover_cooldown=60)
    router.register("globex", url=servers.c.url)
    registry = CollectorRegistry()
    collector = TenantCollector(router)
    registry.register(collector)
    detailed = CollectorRegistry()
    detailed.register(TenantCollector(router, per_tenant=True))
    try:
        router.client("globex").set("k", "globex")
        router.client("acme").set("k", "acme")
        before = scrape(registry)
        assert before[("redis_tenancy_tenants_registered", ())] == 3
        assert before[("redis_tenancy_tenants_live", ())] == 3  # the default one is always live
        assert before[("redis_tenancy_connections_open", ())] == 2
        assert before[("redis_tenancy_failovers_total", ())] == 0
        fail_over(router.client("acme"), primary)
        after = scrape(registry)
        assert after[("redis_tenancy_failovers_total", ())] == 1
        assert after[("redis_tenancy_tenants_failed_over", ())] == 1
        assert after[("redis_tenancy_endpoints", (("state", "open"),))] == 1
        assert after[("redis_tenancy_endpoints", (("state", "closed"),))] == 1
        assert not any(dict(labels).get("tenant") for _, labels in after)  # bounded labels
        per_tenant = scrape(detailed)
        assert per_tenant[("redis_tenancy_tenant_failovers_total", (("tenant", "acme"),))] == 1
        assert per_tenant[("redis_tenancy_tenant_failed_over", (("tenant", "acme"),))] == 1
        router.remove("acme")
        assert scrape(registry)[("redis_tenancy_failovers_total", ())] == 1  # kept
    finally:
        collector.close()
        router.close()
    with direct(servers.b) as client:
        assert client.get("after") == "failover"
    assert landed(servers, "k") == {"c": "globex"}
