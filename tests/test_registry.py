"""Registration at scale, tenants going live on first use, on-demand loading, stats."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from redis_tenancy import Router, TenantConfigError, UnknownTenantError

from .conftest import Servers, direct, wait_until


@pytest.fixture
def router(servers: Servers) -> Iterator[Router]:
    made = Router(default_name="main", default_url=servers.a.url)
    yield made
    made.close()


def test_bulk_registration_stores_settings_until_first_use(
    router: Router, servers: Servers
) -> None:
    names = [f"shop-{i}" for i in range(10_000)]
    assert router.register_bulk(names, url=servers.b.url) == 10_000
    assert len(router) == 10_001
    assert "shop-9999" in router
    assert router.stats().live_tenants == 1, "only the default tenant is live"
    assert router.settings("shop-42").name == "shop-42"
    assert router.settings("shop-42").endpoint == f"redis://{servers.b.address}/0"
    with router.tenant("shop-42"):
        router.redis.set("k", "42")
    stats = router.stats()
    assert (stats.registered, stats.live_tenants) == (10_001, 2)
    assert direct(servers.b).get("k") == "42"
    assert router.names()[:3] == ["main", "shop-0", "shop-1"]


def test_identical_arguments_are_parsed_once_and_shared(router: Router, servers: Servers) -> None:
    url = servers.b.url.removesuffix("/0")
    router.register_many({f"t{i}": {"url": url, "db": i % 2} for i in range(100)})
    pending = router._registry.pending
    assert pending["t0"] is pending["t2"]
    assert pending["t1"] is pending["t3"]
    assert pending["t0"] is not pending["t1"]
    router.register("t4", url=url, db=0)
    assert pending["t4"] is pending["t0"]


def test_bulk_registration_is_all_or_nothing(router: Router, servers: Servers) -> None:
    with pytest.raises(TenantConfigError):
        router.register_bulk(["ok-1", 7, "ok-2"], url=servers.b.url)  # type: ignore[list-item]
    with pytest.raises(TenantConfigError, match="unknown keyword"):
        router.register_bulk(["ok-1"], url=servers.b.url, colour="red")
    assert "ok-1" not in router
    assert len(router) == 1


def test_bulk_registration_replaces_live_tenants(router: Router, servers: Servers) -> None:
    router.register("shop", url=servers.b.url)
    with router.tenant("shop"):
        router.redis.set("before", 1)
    router.register_bulk(["shop", "other"], url=servers.c.url)
    with router.tenant("shop"):
        router.redis.set("after", 1)
    assert direct(servers.b).exists("before", "after") == 1
    assert direct(servers.c).exists("after") == 1


def test_bulk_and_mapping_registration_keep_failover_endpoints(
    router: Router, servers: Servers
) -> None:
    # Re-registering a tenant keeps the failover endpoints added to it (as register()
    # does), whether it is still pending or live; new names get none.
    backup = f"redis://{servers.c.address}/0"
    router.register("pending", url=servers.b.url, failover_urls=[backup])
    router.register("live", url=servers.b.url)
    router.add_failover("live", backup)
    with router.tenant("live"):
        router.redis.set("k", "v")
    assert router.stats().live_tenants == 2, "main and live; pending stays pending"
    names = ("pending", "live", "new")
    for bulk in (True, False):
        if bulk:
            router.register_bulk(names, url=servers.b.url)
        else:
            router.register_many({n: {"url": servers.b.url} for n in names})
        shown = {n: router.settings(n).topology.failover_shown for n in names}
        assert shown == {"pending": backup, "live": backup, "new": ""}
        router.remove("new")
        assert router.stats().live_tenants == 2


def test_removing_a_tenant_that_was_never_used(router: Router, servers: Servers) -> None:
    router.register_bulk(["a", "b"], url=servers.b.url)
    router.remove("a")
    assert "a" not in router
    with pytest.raises(UnknownTenantError), router.tenant("a"):
        pass
    with router.tenant("b"):
        router.redis.ping()
    router.remove("b")
    with pytest.raises(UnknownTenantError):
        router.remove("b")


# -- on-demand loading ------------------------------------------------------------------------


class CountingLoader:
    """A loader that knows some tenants, counts its calls and can be held back."""

    def __init__(self, known: dict[str, Any]) -> None:
        self.known = known
        self.calls: list[str] = []
        self.release = threading.Event()
        self.release.set()
        self.fail: BaseException | None = None

    def __call__(self, name: str) -> Any:
        self.calls.append(name)
        assert self.release.wait(10)
        if self.fail is not None:
            raise self.fail
        return self.known.get(name)


def test_loader_runs_once_for_1000_concurrent_first_uses(servers: Servers) -> None:
    loader = CountingLoader({"new": {"url": servers.b.url}})
    loader.release.clear()
    router = Router(default_url=servers.a.url, loader=loader)
    started = threading.Semaphore(0)

    def first_use(i: int) -> None:
        started.release()
        with router.tenant("new"):
            router.redis.set(f"k{i}", i)

    with ThreadPoolExecutor(max_workers=50) as pool:
        futures = [pool.submit(first_use, i) for i in range(1000)]
        for _ in range(50):  # every worker is inside a first use before the loader answers
            assert started.acquire(timeout=10)
        wait_until(lambda: loader.calls == ["new"], what="the loader to be asked")
        loader.release.set()
        for future in futures:
            future.result()
    assert loader.calls == ["new"]
    assert direct(servers.b).dbsize() == 1000
    router.close()


async def test_async_loader_runs_once_for_1000_concurrent_tasks(servers: Servers) -> None:
    calls: list[str] = []
    asked, gate = asyncio.Event(), asyncio.Event()

    async def loader(name: str) -> Any:
        calls.append(name)
        asked.set()
        await gate.wait()
        # 1000 tasks may each hold a connection: above redis-py's default of 100
        return {"url": servers.c.url, "max_connections": 1000} if name == "new" else None

    router = Router(default_url=servers.a.url, async_loader=loader)

    async def first_use(i: int) -> None:
        async with router.tenant("new"):
            await router.async_redis.set(f"k{i}", i)

    tasks = [asyncio.create_task(first_use(i)) for i in range(1000)]
    await asked.wait()
    for _ in range(5):  # let every task reach the pending load before it is answered
        await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*tasks)
    assert calls == ["new"]
    assert direct(servers.c).dbsize() == 1000
    with pytest.raises(UnknownTenantError, match="only be loaded from async code"):
        router.tenant("other").__enter__()
    router.close()


def test_loader_none_is_remembered_for_the_negative_ttl(servers: Servers) -> None:
    loader = CountingLoader({})
    router = Router(default_url=servers.a.url, loader=loader, negative_ttl=0.2)
    for _ in range(5):
        with pytest.raises(UnknownTenantError, match="the loader did not know it"):
            router.tenant("ghost").__enter__()
    assert loader.calls == ["ghost"]

    def asked_again() -> bool:
        with pytest.raises(UnknownTenantError):
            router.tenant("ghost").__enter__()
        return len(loader.calls) == 2

    wait_until(asked_again, what="the negative cache to expire")
    router.register("ghost", url=servers.b.url)  # registering by hand forgets the answer
    with router.tenant("ghost"):
        router.redis.ping()
    router.close()


def test_loader_errors_propagate_and_are_not_remembered(servers: Servers) -> None:
    loader = CountingLoader({"flaky": servers.b.url})
    loader.fail = RuntimeError("directory service down")
    router = Router(default_url=servers.a.url, loader=loader)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="directory service down"):
            router.tenant("flaky").__enter__()
    loader.fail = None
    with router.tenant("flaky"):
        router.redis.set("k", "v")
    assert loader.calls == ["flaky", "flaky", "flaky"]
    assert direct(servers.b).get("k") == "v"
    router.close()


def test_registration_made_while_the_loader_runs_wins_over_its_answer(servers: Servers) -> None:
    # Someone registers the name by hand while its load is in flight: the hand-made
    # settings are kept (pending, never used) and the loader's answer is dropped.
    router: Router

    def loader(name: str) -> str:
        router.register(name, url=servers.c.url)
        return servers.b.url

    router = Router(default_url=servers.a.url, loader=loader)
    with router.tenant("raced"):
        router.redis.set("k", "by hand")
    assert direct(servers.c).get("k") == "by hand"
    assert direct(servers.b).get("k") is None
    router.close()


@pytest.mark.parametrize("answer", [42, {"url": "http://nope"}, {"colour": "red"}])
def test_bad_loader_answers_are_typed_errors(servers: Servers, answer: Any) -> None:
    router = Router(default_url=servers.a.url, loader=lambda name: answer)
    with pytest.raises(TenantConfigError, match="tenant 'x'"):
        router.tenant("x").__enter__()
    assert "x" not in router
    router.close()


def test_stats_count_clients_pools_and_connections(router: Router, servers: Servers) -> None:
    router.register_bulk(["x", "y"], url=servers.b.url)
    router.register("z", url=servers.b.url.removesuffix("/0") + "/1")
    with router.tenant("x"):
        router.redis.ping()
    with router.tenant("y"):
        pipe = router.redis.pipeline()
        pipe.ping()
        pipe.execute()
    with router.tenant("z"):
        router.redis.ping()
    stats = router.stats()
    assert (stats.registered, stats.live_tenants) == (4, 4)
    # x and y have identical settings: one shared client, one pool; z (another db) has its own
    assert (stats.live_clients, stats.pools) == (2, 2)
    assert (stats.open_connections, stats.idle_connections) == (2, 2)
    # Each tenant has its own client object (objects made from it know their tenant)...
    assert router.client("x") is not router.client("y")
    # ...over the one pool: x's connection is the one y used
    with router.tenant("x"):
        x_id = router.redis.client_id()
    with router.tenant("y"):
        assert router.redis.client_id() == x_id
