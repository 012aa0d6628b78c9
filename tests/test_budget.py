"""The router-wide connection budget, idle reaping and live-client eviction, on real servers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import redis

from redis_tenancy import ConnectionBudgetExceededError, Router, TenantConfigError
from redis_tenancy._embedded import RedisServer

from .conftest import direct, wait_until

DBS = 16


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A server of this test's own, so its client count is exactly ours."""
    with RedisServer() as started:
        yield started


def db_url(server: RedisServer, db: int) -> str:
    return f"redis://{server.address}/{db}"


def clients_on(server: RedisServer) -> int:
    """Connections the server has, other than the one asking."""
    with direct(server) as client:
        return int(client.info("clients")["connected_clients"]) - 1


def test_10000_tenants_round_robin_within_the_budget(server: RedisServer) -> None:
    budget = 8
    router = Router(default_url=db_url(server, 0), max_connections=budget, wait_timeout=30)
    names = [f"t{i}" for i in range(10_000)]
    for db in range(DBS):
        router.register_bulk(names[db::DBS], url=db_url(server, db))
    stop = threading.Event()
    peak = [0]
    mine = [0]

    def sample() -> None:
        with direct(server) as watcher:
            while not stop.is_set():
                count = int(watcher.info("clients")["connected_clients"]) - 1
                peak[0] = max(peak[0], count)
                assert router.budget is not None
                mine[0] = max(mine[0], router.budget.open)

    def sync_worker(start: int) -> None:
        for name in names[start::8]:
            with router.tenant(name):
                router.redis.set(f"key:{name}", name)

    async def async_main() -> None:
        async def one(name: str) -> None:
            async with router.tenant(name):
                await router.async_redis.set(f"akey:{name}", name)

        for block in range(0, 2000, 50):
            await asyncio.gather(*(one(n) for n in names[block : block + 50]))

    sampler = threading.Thread(target=sample)
    sampler.start()
    workers = [threading.Thread(target=sync_worker, args=(i,)) for i in range(8)]
    workers.append(threading.Thread(target=asyncio.run, args=(async_main(),)))
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        stop.set()
        sampler.join()
    assert 0 < peak[0] <= budget
    assert mine[0] <= budget
    assert router.stats().open_connections <= budget
    for db in range(DBS):
        with direct(server, db) as check:
            expected = {f"key:{n}": n for n in names[db::DBS]}
            expected.update({f"akey:{n}": n for n in names[db:2000:DBS]})
            pipe = check.pipeline(transaction=False)
            for key in expected:
                pipe.get(key)
            assert dict(zip(expected, pipe.execute(), strict=True)) == expected
            assert check.dbsize() == len(expected)
    assert router.stats().pools == DBS
    router.close()


def test_idle_connections_are_reaped_and_come_back(server: RedisServer) -> None:
    router = Router(default_url=server.url, idle_timeout=0.2)
    router.register("a", url=db_url(server, 1))
    with router.tenant("a"):
        router.redis.set("k", 1)
    assert clients_on(server) == 1
    wait_until(lambda: clients_on(server) == 0, what="the idle connection to be reaped")
    assert router.stats().open_connections == 0
    with router.tenant("a"):
        assert router.redis.get("k") == b"1"
    assert clients_on(server) == 1
    router.close()


async def test_async_idle_connections_are_reaped_on_their_loop(server: RedisServer) -> None:
    router = Router(default_url=server.url, idle_timeout=0.2)
    router.register("a", url=db_url(server, 1))
    async with router.tenant("a"):
        await router.async_redis.set("k", 1)
    assert clients_on(server) == 1
    deadline = asyncio.get_running_loop().time() + 10
    while clients_on(server) != 0:  # the reaper hands the close to this loop
        assert asyncio.get_running_loop().time() < deadline, "not reaped"
        await asyncio.sleep(0.01)
    async with router.tenant("a"):
        assert await router.async_redis.get("k") == b"1"
    router.close()


def test_exhausted_budget_is_a_typed_error_and_loses_nothing(server: RedisServer) -> None:
    router = Router(default_url=server.url, max_connections=2, wait_timeout=0.3)
    for db in (1, 2, 3):
        router.register(f"t{db}", url=db_url(server, db))
    got: dict[int, object] = {}

    def blocked(db: int) -> None:
        with router.tenant(f"t{db}"):
            got[db] = router.redis.blpop([f"q{db}"], timeout=10)

    holders = [threading.Thread(target=blocked, args=(db,)) for db in (1, 2)]
    for thread in holders:
        thread.start()
    wait_until(lambda: clients_on(server) == 2, what="both slots in use")
    wait_until(
        lambda: int(direct(server).info("clients")["blocked_clients"]) == 2,
        what="both commands running",
    )
    with router.tenant("t3"), pytest.raises(ConnectionBudgetExceededError, match="all 2"):
        router.redis.set("k", "v")
    assert not isinstance(ConnectionBudgetExceededError("x"), redis.ConnectionError)
    for db in (1, 2):
        direct(server, db).rpush(f"q{db}", f"v{db}")
    for thread in holders:
        thread.join()
    assert got == {1: (b"q1", b"v1"), 2: (b"q2", b"v2")}  # the running commands finished
    with router.tenant("t3"):  # now an idle connection can make room
        router.redis.set("k", "v")
    assert direct(server, 3).get("k") == "v"
    assert router.stats().open_connections <= 2
    router.close()


async def test_async_callers_wait_for_a_slot_without_blocking_the_loop(
    server: RedisServer,
) -> None:
    router = Router(default_url=server.url, max_connections=2, wait_timeout=10)
    # redis-py refuses a pool its 101st connection object: lift that, the budget caps
    router.register("a", url=db_url(server, 1), max_connections=1000)

    async def one(i: int) -> None:
        async with router.tenant("a"):
            await router.async_redis.set(f"k{i}", i)

    await asyncio.gather(*(one(i) for i in range(200)))
    assert direct(server, 1).dbsize() == 200
    assert router.stats().open_connections <= 2
    router.close()


def test_live_clients_beyond_the_limit_are_evicted_and_rebuilt(server: RedisServer) -> None:
    router = Router(default_url=server.url, max_live_clients=3)
    for db in range(1, 7):
        router.register(f"t{db}", url=db_url(server, db))
    for _ in range(2):
        for db in range(1, 7):
            with router.tenant(f"t{db}"):
                router.redis.incr("n")
    stats = router.stats()
    assert stats.live_clients <= 3
    assert router._backends.evictions >= 3
    for db in range(1, 7):
        assert direct(server, db).get("n") == "2"
    wait_until(lambda: clients_on(server) <= 3, what="evicted clients' connections to close")
    router.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_connections": 0}, "max_connections must be an int >= 1"),
        ({"max_connections": "8"}, "max_connections must be an int >= 1"),
        ({"max_live_clients": True}, "max_live_clients"),
        ({"idle_timeout": -1}, "idle_timeout must be a number of seconds"),
        ({"wait_timeout": 0}, "wait_timeout"),
    ],
)
def test_bad_budget_settings_are_typed_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(TenantConfigError, match=message):
        Router(default_url="redis://127.0.0.1:1/0", **kwargs)  # type: ignore[arg-type]


async def test_async_live_clients_beyond_the_limit_are_evicted_per_loop(
    server: RedisServer,
) -> None:
    router = Router(default_url=server.url, max_live_clients=2)
    for db in range(1, 6):
        router.register(f"t{db}", url=db_url(server, db))
    for _ in range(2):
        for db in range(1, 6):
            async with router.tenant(f"t{db}"):
                await router.async_redis.incr("n")
    assert router.stats().live_clients <= 2
    assert router._backends.evictions >= 3
    for db in range(1, 6):
        assert direct(server, db).get("n") == "2"
    deadline = asyncio.get_running_loop().time() + 10
    while clients_on(server) > 2:  # evicted pools close on this loop
        assert asyncio.get_running_loop().time() < deadline, "evicted connections stay open"
        await asyncio.sleep(0.01)
    router.close()
