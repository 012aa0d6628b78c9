"""redis_tenancy.celery with a real Celery worker consuming from a real Redis broker.

The broker and result backend are an embedded redis-server of their own (the tenants'
servers are flushed between tests; the broker's queues must survive that). The
worker is Celery's in-process test worker (``celery.contrib.testing``), started once
for the module; it consumes and runs the tasks on its own thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, chain, chord, group  # type: ignore[import-untyped]
from celery.contrib.testing.worker import start_worker  # type: ignore[import-untyped]

from redis_tenancy import NoActiveTenantError, TenantConfigError, UnknownTenantError
from redis_tenancy._embedded import RedisServer
from redis_tenancy.celery import HEADER, install
from redis_tenancy.redis_db import POPOTO_REDIS_DB, current_tenant, default_router, tenant

from .conftest import Servers
from .tenancy import count_keys, landed, register_tenants

TIMEOUT = 30

# Celery's Redis result backend calls SETEX, which redis-py 8 marks deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")


@pytest.fixture
def tenants(servers: Servers) -> Servers:
    return register_tenants(servers)


@pytest.fixture(scope="module")
def broker() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def app(broker: RedisServer) -> Iterator[Celery]:
    app = Celery("redis-tenancy-tests", broker=broker.url, backend=broker.url[:-1] + "1")
    app.conf.update(broker_connection_retry_on_startup=True, result_expires=300)
    install(app)

    @app.task(name="tests.record")  # type: ignore[untyped-decorator]
    def record(key: str) -> str:
        name = current_tenant()
        POPOTO_REDIS_DB.rpush(key, name)
        return name

    @app.task(name="tests.fan_out", tenant_required=False)  # type: ignore[untyped-decorator]
    def fan_out(key: str) -> list[str]:
        # A beat-style job: no tenant of its own, one task per tenant.
        POPOTO_REDIS_DB.rpush(key + ":self", current_tenant())
        for name in sorted(n for n in default_router.names() if n):
            with tenant(name):
                record.delay(key)
        return default_router.names()

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=TIMEOUT):
        yield app


def task(app: Celery, name: str) -> Any:
    return app.tasks[f"tests.{name}"]


def test_celery_task_runs_under_the_publishers_tenant(tenants: Servers, app: Celery) -> None:
    record = task(app, "record")
    with tenant("acme"):
        first = record.delay("seen:task")
    with tenant("globex"):
        second = record.apply_async(("seen:task",), countdown=0)
        eager = record.apply(("seen:eager",))  # inline: the caller's context
    assert first.get(timeout=TIMEOUT) == "acme"
    assert second.get(timeout=TIMEOUT) == "globex"
    assert eager.get() == "globex"
    # Published outside any tenant block: the default tenant, and not the tenant of the
    # task this worker thread ran just before.
    assert record.delay("seen:none").get(timeout=TIMEOUT) == ""
    assert landed(tenants, "seen:task") == {"b": "acme", "c": "globex"}
    assert landed(tenants, "seen:eager") == {"c": "globex"}
    assert landed(tenants, "seen:none") == {"a": ""}


def test_celery_chains_groups_and_chords_keep_the_tenant(tenants: Servers, app: Celery) -> None:
    record = task(app, "record")
    with tenant("acme"):
        # Steps 2 and 3 of the chain and the chord's body are published by the worker.
        steps = chain(record.si("seen:chain"), record.si("seen:chain"), record.si("seen:chain"))
        chained = steps.apply_async()
        grouped = group(record.si("seen:group") for _ in range(3)).apply_async()
        chorded = chord([record.si("seen:chord") for _ in range(2)], record.si("seen:body"))()
    assert chained.get(timeout=TIMEOUT) == "acme"
    assert grouped.get(timeout=TIMEOUT) == ["acme"] * 3
    assert chorded.get(timeout=TIMEOUT) == "acme"
    assert landed(tenants, "seen:chain") == {"b": "acme,acme,acme"}
    assert landed(tenants, "seen:group") == {"b": "acme,acme,acme"}
    assert landed(tenants, "seen:chord") == {"b": "acme,acme"}
    assert landed(tenants, "seen:body") == {"b": "acme"}


@pytest.fixture
def strict(app: Celery) -> Iterator[None]:
    install(app, strict=True)
    try:
        yield
    finally:
        install(app, strict=False)


def test_celery_strict_mode_refuses_tasks_published_outside_any_tenant(
    tenants: Servers, app: Celery, strict: None
) -> None:
    record = task(app, "record")
    refused = record.delay("seen:strict")
    with pytest.raises(NoActiveTenantError, match="outside any tenant"):
        refused.get(timeout=TIMEOUT)
    assert refused.state == "FAILURE"
    with tenant("globex"):
        assert record.delay("seen:strict").get(timeout=TIMEOUT) == "globex"
    # Declared tenant_required=False: runs with no tenant (on the worker thread that
    # just ran globex's task) and fans out one task per tenant.
    task(app, "fan_out").delay("seen:fan-out").get(timeout=TIMEOUT)
    assert landed(tenants, "seen:strict") == {"c": "globex"}
    assert landed(tenants, "seen:fan-out:self") == {"a": ""}
    from .conftest import wait_until

    wait_until(lambda: len(landed(tenants, "seen:fan-out")) == 2, TIMEOUT, "the fanned-out tasks")
    assert landed(tenants, "seen:fan-out") == {"b": "acme", "c": "globex"}


def test_celery_unknown_tenant_is_refused(tenants: Servers, app: Celery) -> None:
    result = task(app, "record").apply_async(("seen:unknown",), headers={HEADER: "nobody"})
    with pytest.raises(UnknownTenantError, match="nobody"):
        result.get(timeout=TIMEOUT)
    assert count_keys(tenants, "seen:*") == {"a": 0, "b": 0, "c": 0}


def test_celery_install_refuses_an_app_whose_tasks_are_already_built(broker: RedisServer) -> None:
    late = Celery("late", broker=broker.url)

    @late.task(name="late.job")  # type: ignore[untyped-decorator]
    def job() -> None:
        pass

    late.finalize()
    with pytest.raises(TenantConfigError, match="before the app's tasks"):
        install(late)
