"""The router-wide connection budget, idle reaping and live-client eviction, on real servers."""

from __future__ import annotations

import asyncio
import multiprocessing
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
    watcher = direct(server)
    assert router.budget is not None
    budget_of = router.budget

    def received() -> int:
        return int(watcher.info("stats")["total_connections_received"])

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], int(watcher.info("clients")["connected_clients"]) - 1)
            mine[0] = max(mine[0], budget_of.open)

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

    before = (received(), budget_of.granted)
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
    # Every connection the server accepted meanwhile went through the budget, and the
    # budget never held more than its limit. (The server's own count of open
    # connections is only a sample: it notices a closed connection after the client
    # may have opened the next, so under load it can lag by an eviction or two.)
    assert received() - before[0] == budget_of.granted - before[1] > 0
    assert mine[0] <= budget
    assert peak[0] > 0
    watcher.close()
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


def connection_ids(server: RedisServer) -> set[int]:
    """The ids of the connections ``server`` has, other than the one asking."""
    with direct(server) as client:
        me = client.client_id()
        return {int(c["id"]) for c in client.client_list()} - {me}


def test_idle_connections_are_reaped_and_come_back(server: RedisServer) -> None:
    # Connection ids, not counts at a moment: the reaper may run at any time.
    router = Router(default_url=server.url, idle_timeout=0.2)
    router.register("a", url=db_url(server, 1))
    with router.tenant("a"):
        first = router.redis.client_id()
    wait_until(lambda: first not in connection_ids(server), what="the idle connection reaped")
    with router.tenant("a"):
        assert router.redis.get("k") is None
        assert router.redis.client_id() != first
    router.close()


async def test_async_idle_connections_are_reaped_on_their_loop(server: RedisServer) -> None:
    router = Router(default_url=server.url, idle_timeout=0.2)
    router.register("a", url=db_url(server, 1))
    async with router.tenant("a"):
        first = await router.async_redis.client_id()
    deadline = asyncio.get_running_loop().time() + 10
    while first in connection_ids(server):  # the reaper hands the close to this loop
        assert asyncio.get_running_loop().time() < deadline, "not reaped"
        await asyncio.sleep(0.01)
    async with router.tenant("a"):
        assert await router.async_redis.client_id() != first
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


def test_waiter_is_woken_when_a_connection_comes_back(server: RedisServer) -> None:
    # One slot, held by a blocking pop; a second caller waits for it. Waits are woken,
    # not polled: without the wake-up it would sit out its whole 60 s wait and fail.
    router = Router(default_url=server.url, max_connections=1, wait_timeout=60)
    router.register("holder", url=db_url(server, 1))
    router.register("waiter", url=db_url(server, 2))
    results: dict[str, object] = {}

    def hold() -> None:
        with router.tenant("holder"):
            results["holder"] = router.redis.blpop(["q"], timeout=30)

    def wait() -> None:
        with router.tenant("waiter"):
            try:
                results["waiter"] = router.redis.set("k", "v")
            except ConnectionBudgetExceededError as exc:
                results["waiter"] = exc

    holder = threading.Thread(target=hold)
    holder.start()
    wait_until(
        lambda: int(direct(server).info("clients")["blocked_clients"]) == 1,
        what="the pop to block",
    )
    waiter = threading.Thread(target=wait)
    waiter.start()
    assert router.budget is not None
    wait_until(lambda: router.budget is not None and router.budget.waiting == 1, what="a waiter")
    direct(server, 1).rpush("q", "job")
    holder.join(30)
    waiter.join(70)
    assert results == {"holder": (b"q", b"job"), "waiter": True}
    router.close()


def test_forked_child_starts_with_an_empty_budget(server: RedisServer) -> None:
    router = Router(default_url=server.url, max_connections=2, wait_timeout=2)
    for db in (1, 2, 3):
        router.register(f"t{db}", url=db_url(server, db))
    parent_ids = set()
    for db in (1, 2):  # both slots taken by the parent's (idle) connections
        with router.tenant(f"t{db}"):
            parent_ids.add(router.redis.client_id())
    assert router.budget is not None
    assert router.budget.open == 2
    context = multiprocessing.get_context("fork")
    answers: multiprocessing.Queue[object] = context.Queue()

    def child() -> None:
        try:
            budget = router.budget
            assert budget is not None
            opened_at_start = budget.open
            ids = []
            for db in (3, 1):
                with router.tenant(f"t{db}"):
                    router.redis.set("from", "child")
                    ids.append(router.redis.client_id())
            answers.put((opened_at_start, ids))
        except BaseException as exc:
            answers.put(repr(exc))

    process = context.Process(target=child)
    process.start()
    answer = answers.get(timeout=30)
    process.join(30)
    assert process.exitcode == 0
    assert isinstance(answer, tuple), answer
    opened_at_start, child_ids = answer
    assert opened_at_start == 0, "the parent's connections are not the child's to count"
    assert not set(child_ids) & parent_ids, "the child opened its own connections"
    # The child never touched the parent's sockets: they still work, same connections.
    ids_now = set()
    for db in (1, 2):
        with router.tenant(f"t{db}"):
            ids_now.add(router.redis.client_id())
    assert ids_now == parent_ids
    assert direct(server, 3).get("from") == "child"
    router.close()


def test_live_client_clock_spares_the_recently_used(server: RedisServer) -> None:
    # Second chance: the clock skips (and clears) pools used since its hand last passed.
    router = Router(default_url=server.url, max_live_clients=3)
    for name in "abcde":
        router.register(name, url=db_url(server, 1 + "abcde".index(name)))

    def use(name: str) -> int:
        with router.tenant(name):
            return int(router.redis.client_id())

    for name in "abc":
        use(name)
    use("d")  # evicts a (every bit set: the hand clears them all, then takes a)
    c_before = use("c")  # c used again; b not
    use("e")  # the hand stands at c: used, so spared; b is taken instead
    assert use("c") == c_before, "the recently used pool was kept"
    assert router._backends.evictions == 2
    router.close()
