"""Async clients per (tenant, event loop): no cross-loop errors, no leaks, no races."""

from __future__ import annotations

import asyncio
import gc
import threading

import redis.asyncio
import uvloop

from redis_tenancy.redis_db import (
    POPOTO_ASYNC_REDIS_DB,
    get_async_redis_db,
    set_REDIS_DB_settings,
    tenant,
)

from .conftest import Servers, direct, live


async def _roundtrip(name: str, key: str) -> bytes | None:
    async with tenant(name):
        await POPOTO_ASYNC_REDIS_DB.set(key, name)
        client = await get_async_redis_db()
        value = await client.get(key)
        assert value is None or isinstance(value, bytes)
        return value


def _live_async_clients() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is redis.asyncio.Redis)


def test_same_tenant_across_repeated_asyncio_run(servers: Servers) -> None:
    set_REDIS_DB_settings("acme", url=servers.b.url)
    for i in range(20):
        assert asyncio.run(_roundtrip("acme", f"k{i}")) == b"acme"
    with direct(servers.b) as b:
        assert b.dbsize() == 20


def test_loops_in_several_threads_each_get_their_own_client(servers: Servers) -> None:
    set_REDIS_DB_settings("acme", url=servers.b.url)
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)  # reusable: all six loops are alive at once, each round
    clients: list[int] = []

    def worker(n: int) -> None:
        async def main() -> None:
            async with tenant("acme"):
                client = await get_async_redis_db()
                clients.append(id(client))
                barrier.wait(timeout=10)  # all loops alive at once
                for i in range(50):
                    await POPOTO_ASYNC_REDIS_DB.incr("shared")
                    await POPOTO_ASYNC_REDIS_DB.set(f"t{n}:{i}", i)

        try:
            for _ in range(3):
                asyncio.run(main())
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    with direct(servers.b) as b:
        assert int(b.get("shared") or 0) == 6 * 3 * 50
    assert len(set(clients[:6])) == 6  # six live loops, six distinct clients


def test_clients_of_closed_loops_are_released(servers: Servers) -> None:
    set_REDIS_DB_settings("acme", url=servers.b.url)
    acme = live("acme")

    async def once() -> None:
        async with tenant("acme"):
            await POPOTO_ASYNC_REDIS_DB.ping()

    for _ in range(50):  # warm-up: caches, interned strings, first-time imports
        asyncio.run(once())
    baseline_objects = len(gc.get_objects())
    baseline_clients = _live_async_clients()
    for _ in range(1000):
        asyncio.run(once())
    gc.collect()
    assert acme.loop_count() == 0
    assert acme.loops_by_thread == {}
    assert acme.last_loop.client is None
    assert _live_async_clients() <= baseline_clients
    # Allow a small constant slack for interpreter-level caches, not per-run growth.
    assert len(gc.get_objects()) - baseline_objects < 500
    with direct(servers.b) as b:
        # Only our direct client remains connected: every loop closed its connections.
        assert b.info("clients")["connected_clients"] == 1


def test_concurrent_first_use_in_one_loop_builds_one_client(servers: Servers) -> None:
    set_REDIS_DB_settings("acme", url=servers.b.url)

    async def main() -> set[int]:
        async def first() -> int:
            async with tenant("acme"):
                client = await get_async_redis_db()
                await client.ping()
                return id(POPOTO_ASYNC_REDIS_DB.connection_pool)

        return set(await asyncio.gather(*(first() for _ in range(100))))

    assert len(asyncio.run(main())) == 1


def test_concurrent_first_use_from_threads_is_race_free(servers: Servers) -> None:
    set_REDIS_DB_settings("acme", url=servers.b.url)
    acme = live("acme")
    barrier = threading.Barrier(8)
    pools: list[int] = []
    loops_alive = threading.Event()
    done = threading.Barrier(9)

    def worker() -> None:
        async def main() -> None:
            async with tenant("acme"):
                barrier.wait(timeout=10)
                pools.append(id(POPOTO_ASYNC_REDIS_DB.connection_pool))
                await POPOTO_ASYNC_REDIS_DB.ping()
                await asyncio.to_thread(done.wait, 10)
                await asyncio.to_thread(loops_alive.wait, 10)

        asyncio.run(main())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    done.wait(timeout=10)
    assert acme.loop_count() == 8  # one client per live loop, none lost or doubled
    loops_alive.set()
    for t in threads:
        t.join(timeout=30)
    assert len(set(pools)) == 8
    assert acme.loop_count() == 0


async def test_sync_replacement_retires_async_client_of_running_loop(servers: Servers) -> None:
    set_REDIS_DB_settings("acme", url=servers.a.url)
    async with tenant("acme"):
        old = await get_async_redis_db()
        await old.set("gen", 1)
        set_REDIS_DB_settings("acme", url=servers.b.url)
        new = await get_async_redis_db()
        assert new is not old
        assert new is await get_async_redis_db()
        await POPOTO_ASYNC_REDIS_DB.set("gen", 2)
    with direct(servers.a) as a, direct(servers.b) as b:
        assert (a.get("gen"), b.get("gen")) == ("1", "2")


def test_uvloop_loops_in_several_threads_each_get_their_own_client(servers: Servers) -> None:
    # uvloop's loops do not say which thread runs them: the fast path must still never
    # hand one loop's client to another loop, nor one tenant's to another tenant.
    set_REDIS_DB_settings("acme", url=servers.b.url)
    set_REDIS_DB_settings("globex", url=servers.c.url)
    seen: dict[str, list[tuple[object, object]]] = {"acme": [], "globex": []}
    barrier = threading.Barrier(4)

    async def work(name: str, n: int, run: int) -> None:
        loop = asyncio.get_running_loop()
        async with tenant(name):
            for i in range(50):
                client = await get_async_redis_db()
                assert POPOTO_ASYNC_REDIS_DB.connection_pool is client.connection_pool
                await POPOTO_ASYNC_REDIS_DB.set(f"{name}:{n}:{run}:{i}", name)
                seen[name].append((loop, client))
                if i == 0:
                    await asyncio.to_thread(barrier.wait, 10)

    def thread(name: str, n: int) -> None:
        for run in range(2):  # a second loop in the same thread, after the first stopped
            uvloop.run(work(name, n, run))

    threads = [
        threading.Thread(target=thread, args=(name, n))
        for n, name in enumerate(["acme", "globex", "acme", "globex"])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for name, server in (("acme", servers.b), ("globex", servers.c)):
        assert direct(server).dbsize() == 2 * 2 * 50
        assert set(direct(server).mget(direct(server).keys())) == {name}
    clients_by_loop: dict[object, set[int]] = {}
    for name in seen:
        for loop, client in seen[name]:
            clients_by_loop.setdefault((name, loop), set()).add(id(client))
    assert all(len(ids) == 1 for ids in clients_by_loop.values())


async def _pools_seen() -> tuple[object, object]:
    """acme's pool as the proxy sees it first, and as get_async_redis_db() gives it."""
    async with tenant("acme"):
        via_proxy = POPOTO_ASYNC_REDIS_DB.connection_pool
        await POPOTO_ASYNC_REDIS_DB.incr("runs")
        return via_proxy, (await get_async_redis_db()).connection_pool


def _shut(*loops: asyncio.AbstractEventLoop) -> None:
    for loop in loops:  # shutting down closes the loop's clients
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def test_a_stopped_loop_never_serves_the_next_loop_of_its_thread(servers: Servers) -> None:
    # Loops stopped without shutting down (run_until_complete, no close) keep their
    # entries; the next loop of the same thread must get its own client, on asyncio
    # and on uvloop (whose fast path trusts only a loop that is running).
    set_REDIS_DB_settings("acme", url=servers.b.url)
    for new_loop in (asyncio.new_event_loop, uvloop.new_event_loop):
        first, second = new_loop(), new_loop()
        try:
            a = first.run_until_complete(_pools_seen())
            b = second.run_until_complete(_pools_seen())
        finally:
            _shut(first, second)
        assert a[0] is a[1]
        assert b[0] is b[1]
        assert a[0] is not b[0]
    assert direct(servers.b).get("runs") == "4"


def test_a_loop_moved_to_another_thread_never_serves_its_old_thread(servers: Servers) -> None:
    # An asyncio loop ran here, then runs in another thread: this thread's next loop
    # must not be handed the moved loop's client although that loop is running.
    set_REDIS_DB_settings("acme", url=servers.b.url)
    moved, here = asyncio.new_event_loop(), asyncio.new_event_loop()
    a = moved.run_until_complete(_pools_seen())
    started = threading.Event()
    moved.call_soon(started.set)
    runner = threading.Thread(target=moved.run_forever)
    runner.start()
    try:
        assert started.wait(10)
        b = here.run_until_complete(_pools_seen())
    finally:
        moved.call_soon_threadsafe(moved.stop)
        runner.join(10)
        _shut(moved, here)
    assert b[0] is b[1]
    assert b[0] is not a[0]
    assert direct(servers.b).get("runs") == "2"
