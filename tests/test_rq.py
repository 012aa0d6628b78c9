"""redis_tenancy.rq with a real RQ worker (SimpleWorker, burst mode) on a real Redis server.

The queue lives on an embedded redis-server of its own; jobs write through the Popoto
API and the assertions read each tenant's server directly. SimpleWorker runs the jobs
on the calling thread, so after ``work()`` that very thread must hold no tenant.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from rq import Queue, SimpleWorker, get_current_job

from redis_tenancy._embedded import RedisServer
from redis_tenancy.redis_db import POPOTO_REDIS_DB, current_tenant, default_router, tenant
from redis_tenancy.rq import REQUIRED_KEY, TenantJob

from .conftest import Servers
from .tenancy import count_keys, landed, register_tenants

UNSET = object()


class StrictJob(TenantJob):
    strict = True


@pytest.fixture
def tenants(servers: Servers) -> Servers:
    return register_tenants(servers)


@pytest.fixture(scope="module")
def broker_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def broker(broker_server: RedisServer) -> Iterator[redis.Redis]:
    connection = redis.Redis(host=broker_server.host, port=broker_server.port)
    connection.flushall()
    yield connection
    connection.close()


def record(key: str) -> str:
    name = current_tenant()
    POPOTO_REDIS_DB.rpush(key, name)
    return name


def spawn(key: str) -> None:
    """A job that enqueues another one: the child keeps this job's tenant."""
    job = get_current_job()
    assert job is not None
    Queue(job.origin, connection=job.connection, job_class=TenantJob).enqueue(record, key)


def work(broker: redis.Redis, queue: Queue, job_class: type[TenantJob] = TenantJob) -> None:
    SimpleWorker([queue], connection=broker, job_class=job_class).work(burst=True)
    assert default_router.var.get(UNSET) is UNSET  # this thread ran the jobs


def test_rq_job_runs_under_the_tenant_it_was_enqueued_in(
    tenants: Servers, broker: redis.Redis
) -> None:
    queue = Queue("tenancy", connection=broker, job_class=TenantJob)
    with tenant("acme"):
        first = queue.enqueue(record, "seen:job")
        dependent = queue.enqueue(record, "seen:dependent", depends_on=first)
        parent = queue.enqueue(spawn, "seen:child")
    with tenant("globex"):
        second = queue.enqueue(record, "seen:job")
    outside = queue.enqueue(record, "seen:outside")
    work(broker, queue)
    assert [first.return_value(), second.return_value()] == ["acme", "globex"]
    assert dependent.return_value() == "acme"
    assert parent.get_status() == "finished"
    assert outside.return_value() == ""  # the default tenant
    assert landed(tenants, "seen:job") == {"b": "acme", "c": "globex"}
    assert landed(tenants, "seen:dependent") == {"b": "acme"}
    assert landed(tenants, "seen:child") == {"b": "acme"}
    assert landed(tenants, "seen:outside") == {"a": ""}


def test_rq_strict_mode_fails_jobs_enqueued_outside_any_tenant(
    tenants: Servers, broker: redis.Redis
) -> None:
    queue = Queue("strict", connection=broker, job_class=StrictJob)
    refused = queue.enqueue(record, "seen:refused")
    free = queue.enqueue(record, "seen:free", meta={REQUIRED_KEY: False})
    with tenant("globex"):
        allowed = queue.enqueue(record, "seen:allowed")
    work(broker, queue, StrictJob)
    assert refused.get_status() == "failed"
    assert "NoActiveTenantError" in str(refused.latest_result().exc_string)  # type: ignore[union-attr]
    assert allowed.return_value() == "globex"
    assert free.return_value() == ""  # ran with no tenant activated: the fallback
    assert count_keys(tenants, "seen:refused") == {"a": 0, "b": 0, "c": 0}
    assert landed(tenants, "seen:allowed") == {"c": "globex"}


def test_rq_unknown_tenant_fails_the_job(tenants: Servers, broker: redis.Redis) -> None:
    queue = Queue("unknown", connection=broker, job_class=TenantJob)
    job = queue.enqueue(record, "seen:unknown", meta={"redis_tenancy_tenant": "nobody"})
    work(broker, queue)
    assert job.get_status() == "failed"
    assert "UnknownTenantError" in str(job.latest_result().exc_string)  # type: ignore[union-attr]
    assert count_keys(tenants, "seen:*") == {"a": 0, "b": 0, "c": 0}
