"""Isolation under concurrency, and replacing a tenant under load."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import defaultdict

from redis_tenancy.redis_db import (
    POPOTO_ASYNC_REDIS_DB,
    POPOTO_REDIS_DB,
    current_tenant,
    get_REDIS_DB,
    set_REDIS_DB_settings,
    tenant,
)

from .conftest import Servers, direct, server_port, wait_until

THREADS, THREAD_OPS = 32, 1000
TASKS, TASK_OPS = 500, 36  # 32 000 + 18 000 = 50 000 operations


def test_threads_and_tasks_switching_among_20_tenants_never_misroute(servers: Servers) -> None:
    # 20 tenants = 2 servers x 10 databases: each tenant has a (server, db) of its own.
    homes = {f"t{i:02d}": (servers.b if i % 2 else servers.c, i // 2) for i in range(20)}
    for name, (server, db) in homes.items():
        set_REDIS_DB_settings(name, host=server.host, port=server.port, db=db)
    names = sorted(homes)
    written: dict[str, set[str]] = defaultdict(set)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def thread_worker(n: int) -> None:
        rng = random.Random(n)
        mine: dict[str, set[str]] = defaultdict(set)
        try:
            for i in range(THREAD_OPS):
                name = rng.choice(names)
                key = f"{name}:s{n}:{i}"
                with tenant(name):
                    assert current_tenant() == name
                    POPOTO_REDIS_DB.set(key, name)
                mine[name].add(key)
        except BaseException as exc:
            errors.append(exc)
        with lock:
            for name, keys in mine.items():
                written[name] |= keys

    async def task_worker(n: int) -> None:
        rng = random.Random(10_000 + n)
        for i in range(TASK_OPS):
            name = rng.choice(names)
            key = f"{name}:a{n}:{i}"
            async with tenant(name):
                await POPOTO_ASYNC_REDIS_DB.set(key, name)
                assert current_tenant() == name
            written[name].add(key)  # one loop thread: no lock needed vs. other tasks

    async def all_tasks() -> None:
        await asyncio.gather(*(task_worker(n) for n in range(TASKS)))

    threads = [threading.Thread(target=thread_worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    async_errors: list[BaseException] = []
    try:
        asyncio.run(all_tasks())
    except BaseException as exc:
        async_errors.append(exc)
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert async_errors == []
    assert sum(len(v) for v in written.values()) == THREADS * THREAD_OPS + TASKS * TASK_OPS

    misroutes = 0
    for name, (server, db) in homes.items():
        with direct(server, db) as client:
            stored = set(client.scan_iter(count=1000))
            misroutes += len(stored ^ written[name])
            values = set(client.mget(sorted(stored))) if stored else set()
        assert values <= {name}
    assert misroutes == 0
    with direct(servers.a) as a:
        assert a.dbsize() == 0  # the default tenant saw none of it


def test_replacing_a_tenant_while_eight_threads_run_commands(servers: Servers) -> None:
    set_REDIS_DB_settings("hot", url=servers.b.url)
    replaced = threading.Event()
    stop = threading.Event()
    after_counts = [0] * 8
    ready = threading.Barrier(9)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        i = 0
        ready.wait(timeout=10)
        with tenant("hot"):
            while not stop.is_set():
                phase = "post" if replaced.is_set() else "pre"
                try:
                    POPOTO_REDIS_DB.set(f"{phase}:{n}:{i}", n)
                    POPOTO_REDIS_DB.incr("ops")
                except BaseException as exc:
                    errors.append(exc)
                    return
                if phase == "post":
                    after_counts[n] += 1
                i += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    ready.wait(timeout=10)
    with direct(servers.b) as b:  # let load build up on the old server first
        wait_until(lambda: int(b.get("ops") or 0) >= 2000 or bool(errors), what="load on b")
    set_REDIS_DB_settings("hot", url=servers.c.url)
    replaced.set()
    with direct(servers.c) as c:
        wait_until(lambda: int(c.get("ops") or 0) >= 4000 or bool(errors), what="load on c")
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert all(count > 0 for count in after_counts)
    with direct(servers.b) as b, direct(servers.c) as c:
        assert list(b.scan_iter("post:*")) == []
        assert len(list(c.scan_iter("post:*", count=1000))) == sum(after_counts)
        assert int(b.get("ops") or 0) >= 2000


def test_replaced_pool_closes_idle_now_and_busy_when_command_ends(servers: Servers) -> None:
    set_REDIS_DB_settings("moving", url=servers.b.url)
    with tenant("moving"):
        POPOTO_REDIS_DB.ping()  # one idle pooled connection on b
    popped: list[object] = []
    held: list[object] = []  # keeps the old client alive: closing must not rely on GC
    blocked = threading.Event()

    def blocking_pop() -> None:
        with tenant("moving"):
            client = get_REDIS_DB()
            held.append(client)
            blocked.set()
            popped.append(client.blpop(["queue"], timeout=20))

    worker = threading.Thread(target=blocking_pop)
    with direct(servers.b) as b:
        b.client_setname("observer")
        worker.start()
        blocked.wait(timeout=10)
        wait_until(lambda: b.info("clients")["blocked_clients"] == 1, what="BLPOP")
        set_REDIS_DB_settings("moving", url=servers.c.url)
        # The idle connection is closed at once; the blocked command keeps its own.
        wait_until(lambda: b.info("clients")["connected_clients"] == 2, what="idle closed")
        b.rpush("queue", "job")
        worker.join(timeout=10)
        assert popped == [(b"queue", b"job")]
        wait_until(lambda: b.info("clients")["connected_clients"] == 1, what="busy closed")
    with tenant("moving"):
        assert server_port(get_REDIS_DB()) == servers.c.port
