"""Sentinel and Cluster tenants against real deployments (see ``tests/topologies.py``).

One sentinel group (master, replica, 3 sentinels) and one 3-primary cluster serve the
whole module. ``clean_state`` only flushes the conftest servers, so the fixtures here
flush these deployments themselves. The promotion test kills the sentinel group's
master, so it is the last test using the group; the sentinel tests before it ask the
sentinels where the master is rather than assuming it, so they would pass after it too.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from redis_tenancy import TenantConfigError, redis_db
from redis_tenancy._embedded import RedisServer, free_port
from redis_tenancy.redis_db import (
    POPOTO_ASYNC_REDIS_DB,
    POPOTO_REDIS_DB,
    async_check_connection,
    async_scan_keys,
    check_connection,
    default_router,
    get_async_redis_db,
    get_REDIS_DB,
    print_redis_info,
    scan_keys,
    set_REDIS_DB_settings,
    tenant,
    tenant_status,
)

from .conftest import SECRET, direct, live, wait_until
from .topologies import Cluster, SentinelGroup, start_cluster, start_sentinel_group

#: Short socket timeouts: a dead master costs a retry a second at most, not five.
FAST: dict[str, Any] = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}

#: How many keys the cluster tests spread over the slots.
KEYS = [f"k:{i}" for i in range(200)]

#: Errors a command may raise while a sentinel failover is still settling.
FAILOVER_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError)


@pytest.fixture(scope="module")
def group() -> Iterator[SentinelGroup]:
    started = start_sentinel_group()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    started = start_cluster(3)
    try:
        yield started
    finally:
        started.stop()


def master_of(group: SentinelGroup) -> RedisServer:
    """The data server the sentinels currently call master."""
    port = group.current_master_port()
    (server,) = [s for s in (group.master, group.replica) if s.port == port and s.running]
    return server


@pytest.fixture
def sentinel_master(group: SentinelGroup) -> RedisServer:
    """The group's current master, flushed (the flush replicates to the replica)."""
    server = master_of(group)
    with direct(server) as client:
        client.flushall()
    return server


@pytest.fixture
def flushed_cluster(cluster: Cluster) -> Cluster:
    for node in cluster.nodes:
        with direct(node) as client:
            client.flushall()
    return cluster


def register_sentinel(name: str, group: SentinelGroup, form: str, db: int = 0) -> None:
    if form == "url":
        set_REDIS_DB_settings(name, url=group.url(db), **FAST)
    else:
        set_REDIS_DB_settings(
            name,
            sentinels=group.sentinel_addresses(),
            service_name=group.service,
            db=db,
            **FAST,
        )


def register_cluster(name: str, cluster: Cluster, form: str) -> None:
    if form == "url":
        set_REDIS_DB_settings(name, url=cluster.url(), **FAST)
    else:
        node = cluster.nodes[1]
        set_REDIS_DB_settings(name, cluster=True, host=node.host, port=node.port, **FAST)


def owned_slots(node: RedisServer) -> set[int]:
    """The slots ``node`` says it owns (its own ``myself`` line of ``CLUSTER NODES``)."""
    with direct(node) as client:
        text = str(client.execute_command("CLUSTER", "NODES"))
    for line in text.splitlines():
        fields = line.split()
        if "myself" not in fields[2]:
            continue
        slots: set[int] = set()
        for item in fields[8:]:
            if item.startswith("["):  # a slot being migrated: not ours to count
                continue
            first, _, last = item.partition("-")
            slots.update(range(int(first), int(last or first) + 1))
        return slots
    raise AssertionError(f"{node.address} has no 'myself' line in CLUSTER NODES")


def assert_spread_by_slot(cluster: Cluster, expected: list[str]) -> None:
    """Every key is on exactly one node, the one owning its slot; every node has some."""
    seen: dict[str, int] = {}
    for node in cluster.nodes:
        slots = owned_slots(node)
        with direct(node) as client:
            # SCAN is node-local; EXISTS on a non-owner would answer MOVED instead.
            here = list(client.scan_iter(match="k:*", count=1000))
            assert here, f"node {node.address} holds none of the keys"
            for key in here:
                assert key not in seen, f"{key} on both {seen[key]} and {node.port}"
                seen[key] = node.port
                slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                assert slot in slots, f"{key} (slot {slot}) on {node.address}, not its owner"
    assert sorted(seen) == sorted(expected)


# --------------------------------------------------------------------------- sentinel


@pytest.mark.parametrize("form", ["url", "keywords"])
def test_sentinel_tenant_set_get_on_master(
    group: SentinelGroup, sentinel_master: RedisServer, form: str
) -> None:
    register_sentinel("s", group, form, db=2)
    with tenant("s"):
        assert POPOTO_REDIS_DB.set("greeting", "hello")
        assert POPOTO_REDIS_DB.get("greeting") == b"hello"
        assert check_connection()
        client = get_REDIS_DB()
    assert client.connection_pool.service_name == group.service  # type: ignore[attr-defined]
    with direct(sentinel_master, db=2) as on_master:
        assert on_master.get("greeting") == "hello"
    with direct(sentinel_master, db=0) as other_db:
        assert other_db.get("greeting") is None
    status = tenant_status("s")
    assert status.kind == "sentinel"
    assert status.active == group.url(2)
    assert status.endpoints == ()


async def test_sentinel_tenant_async_set_get_on_master(
    group: SentinelGroup, sentinel_master: RedisServer
) -> None:
    register_sentinel("s", group, "url")
    with tenant("s"):
        assert await POPOTO_ASYNC_REDIS_DB.set("async-greeting", "hi")
        assert await POPOTO_ASYNC_REDIS_DB.get("async-greeting") == b"hi"
        assert await async_check_connection()
        client = await get_async_redis_db()
    assert client.connection_pool.service_name == group.service  # type: ignore[attr-defined]
    with direct(sentinel_master) as on_master:
        assert on_master.get("async-greeting") == "hi"
    assert tenant_status("s").kind == "sentinel"


def sentinel_lookups(group: SentinelGroup) -> int:
    """Clients of the sentinels whose last command was a SENTINEL one: master lookups.

    While the master is up the sentinels talk to each other with PING/PUBLISH/INFO only,
    and the harness closes its own connections, so these are the router's.
    """
    total = 0
    for sentinel in group.sentinels:
        with direct(sentinel) as client:
            total += sum(1 for c in client.client_list() if c["cmd"].startswith("sentinel"))
    return total


def test_sentinel_tenant_closes_its_sentinel_connections(
    group: SentinelGroup, sentinel_master: RedisServer
) -> None:
    idle = sentinel_lookups(group)
    register_sentinel("s", group, "url")
    # Held until the end, so that garbage collection cannot be what closes them.
    clients: list[object] = []

    async def use_async() -> None:
        assert await POPOTO_ASYNC_REDIS_DB.set("a", "1")
        clients.append(await get_async_redis_db())
        assert sentinel_lookups(group) >= idle + 2  # the sync lookup and this loop's

    with tenant("s"):
        assert POPOTO_REDIS_DB.set("s", "1")
        clients.append(get_REDIS_DB())
        assert sentinel_lookups(group) >= idle + 1
        asyncio.run(use_async())  # the loop's shutdown closes its clients
    wait_until(lambda: sentinel_lookups(group) == idle + 1, what="the async side to close")
    default_router.remove("s")
    wait_until(lambda: sentinel_lookups(group) == idle, what="the sync side to close")
    assert len(clients) == 2


# ---------------------------------------------------------------------------- cluster


@pytest.mark.parametrize("form", ["url", "keywords"])
def test_cluster_tenant_routes_by_slot_and_scans_every_key_once(
    flushed_cluster: Cluster, form: str
) -> None:
    register_cluster("c", flushed_cluster, form)
    with tenant("c"):
        for key in KEYS:
            POPOTO_REDIS_DB.set(key, key)
        assert POPOTO_REDIS_DB.get(KEYS[-1]) == KEYS[-1].encode()
        found = scan_keys("k:*")
        assert check_connection()
    assert len(found) == len(KEYS) == len(set(found))
    assert sorted(found) == sorted(key.encode() for key in KEYS)
    assert_spread_by_slot(flushed_cluster, KEYS)
    status = tenant_status("c")
    assert status.kind == "cluster"
    nodes = flushed_cluster.nodes if form == "url" else flushed_cluster.nodes[1:2]
    assert status.active == "redis+cluster://" + ",".join(node.address for node in nodes)


async def test_cluster_tenant_async_routes_by_slot_and_scans_every_key_once(
    flushed_cluster: Cluster,
) -> None:
    register_cluster("c", flushed_cluster, "url")
    with tenant("c"):
        for key in KEYS:
            await POPOTO_ASYNC_REDIS_DB.set(key, key)
        assert await POPOTO_ASYNC_REDIS_DB.get(KEYS[0]) == KEYS[0].encode()
        found = await async_scan_keys("k:*", count=50)
        assert await async_check_connection()
        with_sync = scan_keys("k:*")
    assert len(found) == len(KEYS) == len(set(found))
    assert sorted(found) == sorted(key.encode() for key in KEYS) == sorted(with_sync)
    assert_spread_by_slot(flushed_cluster, KEYS)


def test_print_redis_info_logs_one_info_per_cluster_node(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    register_cluster("c", cluster, "url")
    with tenant("c"), caplog.at_level(logging.INFO, logger="POPOTO-REDIS_DB"):
        print_redis_info()
    lines = [r.getMessage() for r in caplog.records if r.name == "POPOTO-REDIS_DB"]
    info_lines = [line for line in lines if "redis_version" in line]
    named = sorted(line.split(": ", 1)[0] for line in info_lines)
    assert named == sorted(f"node {node.address}" for node in cluster.nodes)
    for node in cluster.nodes:
        assert any(f"'tcp_port': {node.port}" in line for line in info_lines), node.address


# ----------------------------------------------------------------------- registration


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"url": "redis+sentinel://127.0.0.1:1"}, "service name"),
        ({"url": f"redis+sentinel://:{SECRET}@127.0.0.1:1"}, "service name"),
        ({"url": "redis+sentinel://127.0.0.1:x/m"}, "bad port"),
        ({"url": f"redis+sentinel://:{SECRET}@127.0.0.1:x/m"}, "bad port"),
        ({"url": "redis+sentinel://127.0.0.1:1/m/x"}, "bad db"),
        ({"url": "redis+sentinel://127.0.0.1:1,/m"}, "empty host"),
        ({"url": "redis+cluster://127.0.0.1:1/3"}, "only db 0"),
        ({"url": "redis+cluster://h:1?x=1"}, "query options"),
        ({"cluster": True, "host": "127.0.0.1", "port": 1, "db": 3}, "only db 0"),
        ({"cluster": "yes", "host": "127.0.0.1"}, "cluster must be a bool"),
        ({"sentinels": [("127.0.0.1", 1)]}, "service_name"),
        ({"sentinels": "127.0.0.1:1", "service_name": "m"}, "non-empty list"),
        (
            {"url": "redis+sentinel://127.0.0.1:1/m", "failover_urls": ["redis://127.0.0.1:2"]},
            "sentinel does its own failover",
        ),
        (
            {"url": "redis+cluster://127.0.0.1:1", "failover_urls": ["redis://127.0.0.1:2"]},
            "cluster does its own failover",
        ),
        ({"url": "redis://127.0.0.1:1/0", "sentinel_kwargs": {}}, "needs a redis+sentinel"),
        ({"url": "redis+cluster://127.0.0.1:1", "sentinel_kwargs": {}}, "needs a redis+sentinel"),
        ({"url": "redis+sentinel://127.0.0.1:1/m", "sentinel_kwargs": 3}, "must be a dict"),
        ({"url": "redis+sentinel://127.0.0.1:1/m", "cluster": True}, "not both"),
    ],
)
def test_set_REDIS_DB_settings_rejects_bad_sentinel_and_cluster_forms(
    kwargs: dict[str, Any], complaint: str
) -> None:
    set_REDIS_DB_settings("keep", url="redis+sentinel://127.0.0.1:26379/mymaster/1")
    names = default_router.names()
    with pytest.raises(TenantConfigError) as bad_new:
        set_REDIS_DB_settings("badname", **kwargs)
    with pytest.raises(TenantConfigError) as bad_replacement:
        set_REDIS_DB_settings("keep", **kwargs)
    assert "badname" not in default_router
    assert default_router.names() == names
    assert default_router.settings("keep").endpoint == (
        "redis+sentinel://127.0.0.1:26379/mymaster/1"
    )
    for error in (bad_new.value, bad_replacement.value):
        assert complaint in str(error)
        assert SECRET not in str(error)
    assert "'badname'" in str(bad_new.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"redis+sentinel://:{SECRET}@127.0.0.1:26379,127.0.0.1:26380/mymaster/2",
            "redis+sentinel://:***@127.0.0.1:26379,127.0.0.1:26380/mymaster/2",
        ),
        (
            f"redis+sentinel://alice:{SECRET}@127.0.0.1/mymaster",
            "redis+sentinel://alice:***@127.0.0.1:26379/mymaster/0",
        ),
        (
            f"redis+cluster://:{SECRET}@127.0.0.1:7000,127.0.0.1:7001",
            "redis+cluster://:***@127.0.0.1:7000,127.0.0.1:7001",
        ),
    ],
)
def test_multi_host_url_password_is_masked(url: str, shown: str) -> None:
    # Registration does no I/O, so nothing has to listen on these ports.
    set_REDIS_DB_settings("x", url=url)
    settings = default_router.settings("x")
    assert settings.endpoint == settings.async_endpoint == shown
    assert settings.redis_kwargs["password"] == SECRET  # reaches the data nodes
    texts = [
        repr(settings),
        repr(settings.topology),
        repr(live("x")),
        repr(tenant_status("x")),
    ]
    for text in texts:
        assert SECRET not in text
    assert shown in repr(settings)


# ------------------------------------------------------------- sentinel promotion (last)


async def async_set(key: str, value: str) -> bool:
    return bool(await POPOTO_ASYNC_REDIS_DB.set(key, value))


async def async_get(key: str) -> Any:
    return await POPOTO_ASYNC_REDIS_DB.get(key)


def test_sentinel_tenant_follows_promotion_after_master_is_killed(
    group: SentinelGroup, sentinel_master: RedisServer
) -> None:
    """Runs last: the group is left with one (promoted) data server."""
    register_sentinel("s", group, "url")
    replica = group.replica if sentinel_master is group.master else group.master
    loop = asyncio.new_event_loop()
    try:
        with tenant("s"):
            # Build both clients and leave a pooled connection to the old master in each.
            assert POPOTO_REDIS_DB.set("before", "sync")
            assert loop.run_until_complete(async_set("async-before", "async"))
            with direct(replica) as on_replica:
                wait_until(
                    lambda: on_replica.mget("before", "async-before") == ["sync", "async"],
                    what="the replica to receive the writes",
                )
            sentinel_master.signal(signal.SIGKILL)
            assert group.wait_for_promotion(sentinel_master.port) == replica.port

            def sync_write() -> bool:
                try:
                    return bool(POPOTO_REDIS_DB.set("after", "sync"))
                except FAILOVER_ERRORS:
                    return False

            def async_write() -> bool:
                try:
                    return loop.run_until_complete(async_set("async-after", "async"))
                except FAILOVER_ERRORS:
                    return False

            wait_until(sync_write, what="a sync write through the tenant after promotion")
            wait_until(async_write, what="an async write through the tenant after promotion")
            assert POPOTO_REDIS_DB.get("before") == b"sync"
            assert loop.run_until_complete(async_get("async-before")) == b"async"
            assert check_connection()
            assert loop.run_until_complete(async_check_connection())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    with direct(replica) as on_new_master:
        assert on_new_master.mget("after", "async-after") == ["sync", "async"]
        assert on_new_master.info("replication")["role"] == "master"


# ------------------------------------------------- cluster helpers: 1 node, 3 nodes, none


@pytest.fixture(scope="module")
def single() -> Iterator[Cluster]:
    """A cluster of one primary holding all 16384 slots."""
    started = start_cluster(1)
    try:
        yield started
    finally:
        started.stop()


def run_helper(mode: str, name: str, *args: Any) -> Any:
    """Call the sync helper ``name``, or its async twin on a fresh event loop."""
    if mode == "sync":
        return getattr(redis_db, name)(*args)
    return asyncio.run(getattr(redis_db, f"async_{name}")(*args))


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("size", [1, 3])
def test_cluster_helpers_on_one_and_three_node_clusters(
    single: Cluster, cluster: Cluster, size: int, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    nodes = single if size == 1 else cluster
    for node in nodes.nodes:
        with direct(node) as client:
            client.flushall()
    register_cluster("c", nodes, "url")
    with tenant("c"), caplog.at_level(logging.INFO, logger="POPOTO-REDIS_DB"):
        for key in KEYS:
            POPOTO_REDIS_DB.set(key, key)
        assert run_helper(mode, "check_connection") is True
        found = run_helper(mode, "scan_keys", "k:*", 50)
        print_redis_info()
    assert sorted(found) == sorted(key.encode() for key in KEYS)
    info_lines = [r.getMessage() for r in caplog.records if "redis_version" in r.getMessage()]
    assert sorted(line.split(": ", 1)[0] for line in info_lines) == sorted(
        f"node {node.address}" for node in nodes.nodes
    )
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_check_connection_false_for_unreachable_cluster(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Nobody listens on the port: the README promises ``False``, not an exception."""
    set_REDIS_DB_settings("gone", url=f"redis+cluster://127.0.0.1:{free_port()}", **FAST)
    with tenant("gone"), caplog.at_level(logging.WARNING, logger="POPOTO-REDIS_DB"):
        assert run_helper(mode, "check_connection") is False
    assert "can be reached" in caplog.text


def test_check_connection_false_when_one_cluster_node_is_down(
    single: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """The client knows the node, the node stops answering: logged by name, False."""
    register_cluster("c", single, "url")
    node = single.nodes[0]
    with tenant("c"):
        assert check_connection() is True
        assert asyncio.run(async_check_connection()) is True
        node.signal(signal.SIGSTOP)
        try:
            with caplog.at_level(logging.WARNING, logger="POPOTO-REDIS_DB"):
                assert check_connection() is False
        finally:
            node.signal(signal.SIGCONT)
    assert f"cluster node {node.address} does not answer PING" in caplog.text
