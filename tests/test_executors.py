"""redis_tenancy.executors on real threads: each task runs in a copy of its submitter's context.

The pools' worker threads are given a stale tenant of their own by an initializer.
That is what Python 3.14 can do by itself (a new thread may inherit the context of
the code that started it, i.e. of whichever request's ``submit()`` created it); on
older Pythons it stands in for it. A plain ThreadPoolExecutor runs tasks with that
stale tenant; ours never does.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from redis_tenancy.executors import TenantThreadPoolExecutor, submit
from redis_tenancy.redis_db import POPOTO_REDIS_DB, current_tenant, default_router, tenant

from .conftest import Servers
from .tenancy import landed, register_tenants


@pytest.fixture
def tenants(servers: Servers) -> Servers:
    return register_tenants(servers)


def stale_globex() -> None:
    default_router.activate("globex")  # never reset: the thread keeps it


def record(key: str) -> str:
    name = current_tenant()
    POPOTO_REDIS_DB.rpush(key, name)
    return name


def test_plain_thread_pool_runs_tasks_with_the_threads_own_tenant(tenants: Servers) -> None:
    # The hazard the executor exists for: acme's task runs as globex.
    with ThreadPoolExecutor(1, initializer=stale_globex) as pool, tenant("acme"):
        assert pool.submit(record, "seen:plain").result() == "globex"
    assert landed(tenants, "seen:plain") == {"c": "globex"}


def test_tenant_executor_runs_each_task_in_its_submitters_context(tenants: Servers) -> None:
    with TenantThreadPoolExecutor(2, initializer=stale_globex) as pool:
        with tenant("acme"):
            acme = [pool.submit(record, "seen:task") for _ in range(4)]
            mapped = list(pool.map(record, ["seen:map"] * 3))
        outside = pool.submit(record, "seen:outside")
        assert [f.result() for f in acme] == ["acme"] * 4
        assert mapped == ["acme"] * 3
        assert outside.result() == ""  # the default tenant, not the thread's globex
    assert landed(tenants, "seen:task") == {"b": "acme,acme,acme,acme"}
    assert landed(tenants, "seen:map") == {"b": "acme,acme,acme"}
    assert landed(tenants, "seen:outside") == {"a": ""}


def test_submit_helper_and_a_task_that_leaks_its_own_tenant(tenants: Servers) -> None:
    def leak() -> str:
        default_router.activate("globex")  # never reset
        return record("seen:leak")

    with ThreadPoolExecutor(1, initializer=stale_globex) as pool, tenant("acme"):
        first = submit(pool, leak).result()
        second = submit(pool, record, "seen:next").result()
    assert (first, second) == ("globex", "acme")  # the leak stayed in its own copy
    assert landed(tenants, "seen:leak") == {"c": "globex"}
    assert landed(tenants, "seen:next") == {"b": "acme"}


async def test_run_in_executor_carries_the_calling_tasks_tenant(tenants: Servers) -> None:
    loop = asyncio.get_running_loop()
    with TenantThreadPoolExecutor(1, initializer=stale_globex) as pool:
        async with tenant("acme"):
            assert await loop.run_in_executor(pool, record, "seen:loop") == "acme"
        assert await loop.run_in_executor(pool, record, "seen:loop") == ""
    assert landed(tenants, "seen:loop") == {"a": "", "b": "acme"}
