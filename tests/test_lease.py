"""Objects made before a tenant was replaced or removed, and re-registering in a running loop.

The sequence of issue 8 item 3, on real servers: tenant A lives on server S3 (``c``),
moves to S1 (``a``), and S3 is then registered for tenant C. Nothing made under A before
the move may reach S3 again: clients and pipelines follow A to S1, pub/sub objects are
cut, and S3 sees no new connection from any of them.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import Any

import pytest
import redis
import redis.backoff
import redis.retry

from redis_tenancy import StaleClientError
from redis_tenancy.redis_db import (
    POPOTO_ASYNC_REDIS_DB,
    POPOTO_REDIS_DB,
    default_router,
    get_async_redis_db,
    get_REDIS_DB,
    set_async_redis_db_settings,
    set_REDIS_DB_settings,
    tenant,
)

from .conftest import Servers, direct, wait_until


def connections_received(server: Any) -> int:
    """How many connections ``server`` has accepted so far (this check's own included)."""
    with direct(server) as client:
        return int(client.info("stats")["total_connections_received"])


def keys_and_connections(server: Any) -> tuple[list[str], int]:
    """The keys of ``server`` and the connections it accepted, with one connection."""
    with direct(server) as client:
        return sorted(client.keys()), int(client.info("stats")["total_connections_received"])


def test_objects_made_before_a_move_never_reach_the_old_server(servers: Servers) -> None:
    s1, s3 = servers.a, servers.c
    set_REDIS_DB_settings("A", url=s3.url)
    with tenant("A"):
        pipe = POPOTO_REDIS_DB.pipeline()
        client = get_REDIS_DB()
        lock = POPOTO_REDIS_DB.lock("A:lock", timeout=5)
        pubsub = POPOTO_REDIS_DB.pubsub()  # type: ignore[no-untyped-call]
        pubsub.subscribe("news")
        assert pubsub.get_message(timeout=1)["type"] == "subscribe"
        client.set("before", "A on S3")
    set_REDIS_DB_settings("A", url=s1.url)  # A moves to S1...
    set_REDIS_DB_settings("C", url=s3.url)  # ...and S3 now holds C's data
    with tenant("C"):
        POPOTO_REDIS_DB.set("c-owned", "C")
    received = connections_received(s3)

    pipe.set("k", "from A's old pipeline")
    pipe.execute()
    client.set("k2", "from A's old client")
    assert lock.acquire(blocking=False)
    lock.release()
    with tenant("C"):
        assert POPOTO_REDIS_DB.publish("news", "C's secret") == 0, "A's subscription is gone"
    with pytest.raises(StaleClientError, match="tenant 'A'"):
        pubsub.get_message(timeout=0.1)
    with pytest.raises(StaleClientError):
        pubsub.subscribe("more")

    assert direct(s1).get("k") == "from A's old pipeline"
    assert direct(s1).get("k2") == "from A's old client"
    # S3 holds only its own data, and accepted no connection since the move but ours.
    assert keys_and_connections(s3) == (["before", "c-owned"], received + 1)


async def test_async_objects_made_before_a_move_never_reach_the_old_server(
    servers: Servers,
) -> None:
    s1, s3 = servers.a, servers.c
    set_REDIS_DB_settings("A", url=s3.url)
    async with tenant("A"):
        pipe = POPOTO_ASYNC_REDIS_DB.pipeline()
        client = await get_async_redis_db()
        pubsub = POPOTO_ASYNC_REDIS_DB.pubsub()
        await pubsub.subscribe("news")
        first = await pubsub.get_message(timeout=1)
        assert first is not None
        assert first["type"] == "subscribe"
    set_REDIS_DB_settings("A", url=s1.url)
    set_REDIS_DB_settings("C", url=s3.url)
    async with tenant("C"):
        await POPOTO_ASYNC_REDIS_DB.set("c-owned", "C")  # C's own connection to S3
    received = connections_received(s3)

    pipe.set("k", "from A's old pipeline")
    await pipe.execute()
    await client.set("k2", "from A's old client")
    async with tenant("C"):
        assert await POPOTO_ASYNC_REDIS_DB.publish("news", "C's secret") == 0
    with pytest.raises(StaleClientError, match="tenant 'A'"):
        await pubsub.get_message(timeout=0.1)
    await pubsub.aclose()  # type: ignore[no-untyped-call]

    assert direct(s1).get("k") == "from A's old pipeline"
    assert direct(s1).get("k2") == "from A's old client"
    assert keys_and_connections(s3) == (["c-owned"], received + 1)


def test_objects_of_a_removed_tenant_raise_stale_client_error(servers: Servers) -> None:
    set_REDIS_DB_settings("gone", url=servers.b.url)
    with tenant("gone"):
        pipe = POPOTO_REDIS_DB.pipeline()
        client = get_REDIS_DB()
        client.ping()
    default_router.remove("gone")
    pipe.set("k", "v")
    with pytest.raises(StaleClientError, match="tenant 'gone'"):
        pipe.execute()
    with pytest.raises(StaleClientError):
        client.get("k")
    assert direct(servers.b).keys() == []


def test_objects_cannot_follow_a_change_of_reply_decoding(servers: Servers) -> None:
    # Made for bytes replies, they would hand str to code expecting bytes: refused.
    set_REDIS_DB_settings("dec", url=servers.b.url)
    with tenant("dec"):
        client = get_REDIS_DB()
        client.set("k", "v")
    set_REDIS_DB_settings("dec", url=servers.b.url, decode_responses=True)
    with pytest.raises(StaleClientError):
        client.get("k")
    with tenant("dec"):
        assert POPOTO_REDIS_DB.get("k") == "v"


def test_a_command_racing_a_replace_never_fails(servers: Servers) -> None:
    # The proxy resolved the old client just before the replace: its command follows.
    set_REDIS_DB_settings("race", url=servers.b.url)
    with tenant("race"):
        bound_set = POPOTO_REDIS_DB.set  # resolved now, called after the replace
        set_REDIS_DB_settings("race", url=servers.c.url)
        assert bound_set("k", "after")
    assert direct(servers.c).get("k") == "after"
    assert direct(servers.b).get("k") is None


def test_adding_a_failover_url_keeps_everything_made_before(servers: Servers) -> None:
    set_REDIS_DB_settings("fo", url=servers.b.url)
    with tenant("fo"):
        pubsub = POPOTO_REDIS_DB.pubsub()  # type: ignore[no-untyped-call]
        pubsub.subscribe("ch")
        assert pubsub.get_message(timeout=1) is not None
        client = get_REDIS_DB()
    default_router.add_failover("fo", servers.c.url)
    client.set("k", "v")  # the data has not moved: nothing was retired
    with tenant("fo"):
        assert POPOTO_REDIS_DB.publish("ch", "hello") == 1
    message = pubsub.get_message(timeout=1)
    assert message is not None
    assert message["data"] == b"hello"
    pubsub.close()


# -- re-registering inside a running event loop -------------------------------------------------


async def test_identical_re_registration_changes_nothing(servers: Servers) -> None:
    set_REDIS_DB_settings("same", url=servers.b.url)
    async with tenant("same"):
        client = await get_async_redis_db()
        await client.ping()
        sync_client = get_REDIS_DB()
        before = connections_received(servers.b)
        for _ in range(200):
            set_REDIS_DB_settings("same", url=servers.b.url)
            await set_async_redis_db_settings("same", url=servers.b.url)
            await POPOTO_ASYNC_REDIS_DB.ping()
        assert await get_async_redis_db() is client
        assert get_REDIS_DB() is sync_client
    assert connections_received(servers.b) == before + 1  # our own check only


async def test_replaced_async_clients_close_their_connections_on_their_loop(
    servers: Servers,
) -> None:
    # 200 replacements in one running loop: the old pools close as soon as they are idle,
    # while the loop runs, not when it ends (1000 replacements used to hold 1000
    # descriptors and 500 server connections until then).
    set_REDIS_DB_settings("moving", url=servers.b.url)
    with direct(servers.b) as check:
        baseline = len(check.client_list())

    def ours_on_the_server() -> int:
        with direct(servers.b) as check:
            return len(check.client_list()) - baseline

    async with tenant("moving"):
        for i in range(200):
            set_REDIS_DB_settings("moving", url=f"{servers.b.url.removesuffix('/0')}/{i % 2}")
            await POPOTO_ASYNC_REDIS_DB.incr("hits")
        deadline = asyncio.get_running_loop().time() + 10
        while ours_on_the_server() > 1:
            assert asyncio.get_running_loop().time() < deadline, "old pools left open"
            await asyncio.sleep(0.01)  # the loop runs the old pools' closes
    hits = [int(direct(servers.b, db).get("hits") or 0) for db in (0, 1)]
    assert sum(hits) == 200


def test_sync_replacement_closes_the_old_pool_now(servers: Servers) -> None:
    set_REDIS_DB_settings("sync-moving", url=servers.b.url)
    with tenant("sync-moving"):
        POPOTO_REDIS_DB.ping()
        old = get_REDIS_DB()
        set_REDIS_DB_settings("sync-moving", url=servers.c.url)
        POPOTO_REDIS_DB.ping()
    with direct(servers.b) as check:
        me = str(check.client_id())
        others = [c for c in check.client_list() if c["id"] != me]
        assert others == [], "the old pool's idle connection closed at the replace"
    assert isinstance(old, redis.Redis)


def test_a_command_running_through_a_replace_finishes_even_after_garbage_collection(
    servers: Servers,
) -> None:
    # The old pool's client is dropped by the replace; collecting it must not disconnect
    # the connection a blocking pop is still using (redis-py closes a client's pool on
    # garbage collection when it owns it).
    no_retry = redis.retry.Retry(redis.backoff.NoBackoff(), 0)  # a cut would surface
    set_REDIS_DB_settings("busy", url=servers.b.url, retry=no_retry)
    got: list[object] = []

    def pop() -> None:
        with tenant("busy"):
            got.append(POPOTO_REDIS_DB.blpop(["q"], timeout=10))

    worker = threading.Thread(target=pop)
    worker.start()
    wait_until(
        lambda: int(direct(servers.b).info("clients")["blocked_clients"]) == 1,
        what="the pop to block",
    )
    set_REDIS_DB_settings("busy", url=servers.c.url, retry=no_retry)
    gc.collect()
    direct(servers.b).rpush("q", "job")
    worker.join(20)
    assert got == [(b"q", b"job")]
