"""Namespaced tenants on a real 3-primary Redis Cluster: ``{tag}:`` prefixes.

A hash-tagged prefix puts every key of a tenant in one slot, so multi-key commands,
transactions and Lua scripts that compute key names work; two tenants on the same
cluster never see each other's keys. Each test body runs twice: on
``NamespacedRedisCluster`` and on ``AsyncNamespacedRedisCluster`` driven through
:class:`~tests.namespace_harness.Blocking`, so both drivers meet the same assertions.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio.cluster
import redis.cluster
from redis.crc import key_slot
from redis.typing import Subscription

from redis_tenancy._errors import NamespaceError
from redis_tenancy._keyspecs import COMMANDS
from redis_tenancy._namespace import Namespace
from redis_tenancy._nscluster import NamespacedRedisCluster, hash_tag
from redis_tenancy._nscluster_async import AsyncNamespacedRedisCluster
from redis_tenancy.redis_db import (
    POPOTO_ASYNC_REDIS_DB,
    POPOTO_REDIS_DB,
    async_scan_keys,
    get_async_redis_db,
    set_REDIS_DB_settings,
    tenant,
)

from .conftest import direct, wait_until
from .namespace_harness import Blocking, check_pubsub_round_trip, close_pubsub
from .topologies import Cluster, start_cluster

CANARY = b"CANARY"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    started = start_cluster(3)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def admin(cluster: Cluster) -> Iterator[redis.cluster.RedisCluster]:
    """A plain client of the cluster, flushed: what the servers really hold."""
    node = cluster.nodes[0]
    client = redis.cluster.RedisCluster(host=node.host, port=node.port)
    for primary in client.get_primaries():  # type: ignore[no-untyped-call]
        client.flushall(target_nodes=primary)
    yield client
    client.close()


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Tenants:
    """Namespaced Cluster clients of one mode, all views of one shared client."""

    def __init__(self, cluster: Cluster, admin: redis.cluster.RedisCluster, mode: str) -> None:
        node = cluster.nodes[0]
        self.admin = admin
        self.mode = mode
        self.loop = asyncio.new_event_loop() if mode == "async" else None
        self.shared: Any = (
            redis.asyncio.cluster.RedisCluster(host=node.host, port=node.port, client_name="shared")
            if mode == "async"
            else redis.cluster.RedisCluster(host=node.host, port=node.port, client_name="shared")
        )

    def make(self, prefix: str | Namespace = "{acme}:") -> Any:
        if self.loop is None:
            return NamespacedRedisCluster.wrap(self.shared, prefix)
        return Blocking(AsyncNamespacedRedisCluster.wrap(self.shared, prefix), self.loop)

    def close(self) -> None:
        if self.loop is None:
            self.shared.close()
            return
        self.loop.run_until_complete(self.shared.aclose())
        self.loop.close()

    def stored(self) -> list[bytes]:
        """Every key of the cluster, sorted."""
        return sorted(
            key
            for primary in self.admin.get_primaries()  # type: ignore[no-untyped-call]
            for key in self.admin.scan_iter(target_nodes=primary)
        )

    def redis_7(self) -> bool:
        version = str(self.admin.info("server")["redis_version"])
        return int(version.split(".")[0]) >= 7


@pytest.fixture
def tenants(cluster: Cluster, admin: redis.cluster.RedisCluster, mode: str) -> Iterator[Tenants]:
    made = Tenants(cluster, admin, mode)
    yield made
    made.close()


def test_cluster_hash_tag() -> None:
    assert hash_tag("{acme}:") == "acme"
    assert hash_tag("acme:") is None
    assert hash_tag("{}:") is None


# -- commands and replies ------------------------------------------------------------------------


def test_cluster_tenant_keys_share_one_slot_and_multikey_commands_work(tenants: Tenants) -> None:
    acme = tenants.make(Namespace("{acme}:"))
    beta = tenants.make("{beta}:")
    acme.mset({"a": 1, "b": 2, "c": 3})
    beta.set("a", "beta")
    assert acme.mget("a", "b", "c") == [b"1", b"2", b"3"]
    assert acme.sunionstore("u", ["a_set", "b_set"]) == 0
    acme.rpush("l", "x")
    assert acme.lmove("l", "l2", "LEFT", "LEFT") == b"x"
    assert acme.blpop(["l2"], timeout=1) in ((b"l2", b"x"), [b"l2", b"x"])
    assert sorted(acme.keys("*")) == [b"a", b"b", b"c"]
    assert acme.dbsize() == 3
    assert sorted(acme.scan_iter()) == [b"a", b"b", b"c"]
    assert sorted(acme.scan_iter(match="a*")) == [b"a"]
    assert tenants.admin.get("{beta}:a") == b"beta"
    assert {key_slot(key) for key in tenants.stored()} == {
        key_slot(b"{acme}:a"),
        key_slot(b"{beta}:a"),
    }
    # The commands redis-py's cluster client splits by slot itself.
    assert acme.exists("a", "b", "nope") == 2
    assert all(acme.mset_nonatomic({"m1": 1, "m2": 2}))
    assert acme.mget_nonatomic("m1", "m2") == [b"1", b"2"]
    assert acme.delete("m1", "m2") == 2
    assert acme.unlink("c") == 1
    assert acme.flushdb() is True
    assert acme.dbsize() == 0
    assert beta.get("a") == b"beta"
    assert tenants.stored() == [b"{beta}:a"]


def test_cluster_replies_never_carry_another_tenants_keys(
    tenants: Tenants, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = tenants.make()
    acme.set("mine", 1)
    # Same hash tag, outside the namespace: on the node SCAN visits for acme.
    tenants.admin.set("{acme}foreign", CANARY)
    assert acme.keys("*") == [b"mine"]
    # Break the pattern escaping on purpose: SCAN then meets the foreign key, and the
    # client refuses the reply instead of returning it.
    monkeypatch.setattr(Namespace, "pattern", lambda self, pattern: pattern)
    with pytest.raises(NamespaceError, match="outside the namespace") as caught:
        acme.keys("*")
    assert "foreign" not in str(caught.value)
    with pytest.raises(NamespaceError, match="outside the namespace"):
        list(acme.scan_iter(match="*", count=1000))


def test_cluster_scripts_compute_keys_in_the_tenant_slot(tenants: Tenants) -> None:
    acme = tenants.make()
    acme.hset("ptrs", "p", "target")
    acme.sadd("names", "from-set")
    script = acme.register_script(
        "local t = redis.call('HGET', KEYS[1], 'p') redis.call('SET', t, ARGV[1]) "
        "for _, n in ipairs(redis.call('SMEMBERS', KEYS[2])) do redis.call('SET', n, 1) end "
        "return redis.call('GET', t)"
    )
    assert script(keys=["ptrs", "names"], args=["v"]) == b"v"
    assert tenants.admin.get("{acme}:target") == b"v"
    assert tenants.admin.get("{acme}:from-set") == b"1"
    assert acme.eval("return KEYS[1]", 1, "k") == b"k"
    sha = acme.script_load("return redis.call('GET', ARGV[1])")
    # (one declared key routes the script to the tenant's slot, where ARGV[1] lives)
    assert acme.evalsha(sha, 1, "ptrs", "target") == b"v"
    assert tenants.stored() == [
        b"{acme}:from-set",
        b"{acme}:names",
        b"{acme}:ptrs",
        b"{acme}:target",
    ]


def test_cluster_unknown_command_is_looked_up_on_the_default_node(
    tenants: Tenants, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(COMMANDS, "lmove")  # neither on the fast path nor blocked in pipelines
    from redis_tenancy import _nsdriver

    monkeypatch.setattr(_nsdriver, "_learned", {})
    acme = tenants.make()
    if tenants.mode == "async":
        pipe = acme.pipeline()
        with pytest.raises(NamespaceError, match="call it once on the client"):
            pipe.lmove("src", "dst")
    acme.rpush("src", "v")
    assert acme.lmove("src", "dst") == b"v"
    assert tenants.admin.lrange("{acme}:dst", 0, -1) == [b"v"]
    pipe = acme.pipeline()
    pipe.rpush("src", "w")
    pipe.lmove("src", "dst")
    assert pipe.execute() == [1, b"w"]


# -- pipelines and transactions --------------------------------------------------------------


def test_cluster_pipeline_and_transaction(tenants: Tenants) -> None:
    acme = tenants.make()
    acme.set("known", 1)  # connects the shared client before any transaction
    pipe = acme.pipeline()
    pipe.set("p", 1)
    pipe.incr("p")
    pipe.rpush("q", "x")
    pipe.zadd("z", {"m": 1})
    pipe.bzpopmin("z", timeout=1)  # a reply carrying a key name, fixed after execute()
    pipe.delete("q")  # queued by redis-py without execute_command
    pipe.unlink("p")
    results = pipe.execute()
    assert results[:4] == [True, 2, 1, 1]
    assert tuple(results[4]) == (b"z", b"m", 1.0)
    assert results[5:] == [1, 1]
    assert tenants.stored() == [b"{acme}:known"]
    tx = acme.pipeline(transaction=True)
    tx.set("t1", "a")
    tx.set("t2", "b")
    tx.get("t1")
    assert tx.execute()[2] == b"a"  # (redis-py's cluster transactions skip SET's callback)
    assert acme.get("t2") == b"b"
    acme.rpush("wl", "x")
    tx = acme.pipeline(transaction=True)
    tx.watch("w")  # WATCH, and the commands until MULTI, run at once
    assert tx.blpop(["wl"], timeout=1) in ((b"wl", b"x"), [b"wl", b"x"])
    tx.multi()
    tx.set("w", "done")
    assert tx.execute() in ([True], [b"OK"])
    assert tenants.admin.get("{acme}:w") == b"done"
    with pytest.raises(NamespaceError, match="pipeline"):
        acme.pipeline().execute_command("DBSIZE")


def test_cluster_lock_lives_in_the_namespace(tenants: Tenants) -> None:
    acme = tenants.make()
    tenants.admin.set("job", CANARY)  # a foreign lock of the same name does not block
    lock = acme.lock("job", timeout=10)
    assert lock.acquire(blocking=False)
    assert tenants.admin.exists("{acme}:job") == 1
    assert not acme.lock("job", timeout=10).acquire(blocking=False)
    lock.release()
    assert tenants.admin.exists("{acme}:job") == 0
    assert tenants.admin.get("job") == CANARY


# -- refusals and the client objects ---------------------------------------------------------


def test_cluster_refusals_and_untagged_emulation(tenants: Tenants) -> None:
    acme = tenants.make()
    with pytest.raises(NamespaceError, match="FLUSHALL"):
        acme.flushall()
    with pytest.raises(NamespaceError, match="RANDOMKEY"):
        acme.randomkey()
    with pytest.raises(NamespaceError, match="MONITOR"):
        acme.monitor()
    untagged = tenants.make("plain:")
    untagged.set("k", 1)
    assert tenants.admin.get("plain:k") == b"1"
    with pytest.raises(NamespaceError, match="hash tag"):
        untagged.keys("*")


def _shared_connection_ids(cluster: Cluster) -> set[str]:
    ids: set[str] = set()
    for node in cluster.nodes:
        with direct(node) as client:
            ids |= {c["id"] for c in client.client_list() if c["name"] == "shared"}
    return ids


def test_cluster_wrapper_never_closes_the_shared_client(tenants: Tenants, cluster: Cluster) -> None:
    acme = tenants.make()
    acme.set("k", 1)
    opened = _shared_connection_ids(cluster)
    assert opened
    if tenants.mode == "async":
        acme.aclose()
    else:
        acme.close()
    del acme
    gc.collect()  # a dropped view warns about nothing (warnings are errors here)
    assert tenants.make().get("k") == b"1"
    assert opened <= _shared_connection_ids(cluster)  # the same connections, still open
    assert tenants.admin.get("{acme}:k") == b"1"


def _connections(cluster: Cluster) -> int:
    """Client connections the cluster's nodes hold (each count's own included)."""
    total = 0
    for node in cluster.nodes:
        with direct(node) as client:
            total += len(client.client_list())
    return total


def test_cluster_closing_the_shared_client_closes_what_its_views_opened(
    cluster: Cluster, admin: redis.cluster.RedisCluster, mode: str
) -> None:
    before = _connections(cluster)
    made = Tenants(cluster, admin, mode)
    acme = made.make()
    assert acme.keys("*") == []  # a view's first command: it connects the shared client
    assert acme.pipeline().set("k", 1).get("k").execute() == [True, b"1"]
    made.close()
    wait_until(lambda: _connections(cluster) <= before, what=lambda: f"{_connections(cluster)}")


def _slot_table_reads(cluster: Cluster) -> int:
    """How many CLUSTER SLOTS the nodes have answered: one per client initialization.

    Redis 6.2 counts every CLUSTER subcommand under one name; the clients here send no
    other CLUSTER subcommand, so there that total is the same count.
    """
    total = 0
    for node in cluster.nodes:
        with direct(node) as client:
            stats = client.info("commandstats")
        split = any(key.startswith("cmdstat_cluster|") for key in stats)  # Redis 7+
        name = "cmdstat_cluster|slots" if split else "cmdstat_cluster"
        total += int(stats.get(name, {}).get("calls", 0))
    return total


def test_cluster_views_of_one_client_initialize_it_once(
    cluster: Cluster, admin: redis.cluster.RedisCluster, mode: str
) -> None:
    made = Tenants(cluster, admin, mode)  # (sync clients initialize when made)
    before = _slot_table_reads(cluster)
    try:
        for name in ("acme", "beta", "gamma"):
            view = made.make(f"{{{name}}}:")
            assert view.dbsize() == 0  # a slow command first: emulated by SCAN
            assert view.get("k") is None
    finally:
        made.close()
    assert _slot_table_reads(cluster) - before == (1 if mode == "async" else 0)


# -- pub/sub ---------------------------------------------------------------------------------


def test_cluster_pubsub_channels_patterns_and_handlers(tenants: Tenants) -> None:
    check_pubsub_round_trip(tenants.make(), tenants.admin, pattern="n*", foreign="{beta}:")


def test_cluster_pubsub_connects_to_the_node_of_the_tenants_slot(tenants: Tenants) -> None:
    acme = tenants.make()
    acme.set("k", 1)  # the client knows its slots
    ps = acme.pubsub()
    try:
        ps.psubscribe("n*")  # a first pattern would pick its node by the pattern's slot
        ps.subscribe("news")
        wait_until(lambda: acme.pubsub_channels() == [b"news"])
    finally:
        close_pubsub(ps)


def test_cluster_sharded_pubsub(tenants: Tenants) -> None:
    acme = tenants.make()
    if not tenants.redis_7():
        # the server says so, or redis-py's cluster client before sending (it asks the
        # server's COMMAND table where the key is)
        with pytest.raises(redis.RedisError, match=r"(?i)unknown command|doesn't exist"):
            acme.spublish("s", "x")
        return
    received: list[Any] = []

    def handler(message: dict[str, Any]) -> None:
        received.append((message["type"], message["channel"], message["data"]))

    ps = acme.pubsub()
    try:
        ps.ssubscribe("shard", Subscription("other", handler))
        assert sorted(acme.pubsub_shardchannels()) == [b"other", b"shard"]
        assert dict(acme.pubsub_shardnumsub("shard")) == {b"shard": 1}
        tenants.admin.spublish("shard", CANARY)  # a namesake outside the namespace
        assert acme.spublish("shard", "hello") == 1
        acme.spublish("other", "h2")
        got: list[Any] = []

        def arrived() -> bool:
            message = ps.get_sharded_message(timeout=0.05)
            if message is not None:
                got.append((message["type"], message["channel"], message["data"]))
            return ("smessage", b"shard", b"hello") in got and bool(received)

        wait_until(arrived, what=lambda: f"got {got}, handled {received}")
        assert ("ssubscribe", b"shard", 1) in got
        assert [entry for entry in got if entry[0] == "smessage"] == [
            ("smessage", b"shard", b"hello")
        ]
        assert received == [("smessage", b"other", b"h2")]
        ps.sunsubscribe("shard")
        left: list[Any] = []

        def unsubscribed() -> bool:
            message = ps.get_sharded_message(timeout=0.05)
            if message is not None:
                left.append((message["type"], message["channel"]))
            return ("sunsubscribe", b"shard") in left

        wait_until(unsubscribed, what=lambda: f"got {left}")
        assert acme.pubsub_shardchannels() == [b"other"]
    finally:
        close_pubsub(ps)


# -- through the router --------------------------------------------------------------------


async def test_cluster_namespaced_tenant_async_client_through_the_router(
    cluster: Cluster, admin: redis.cluster.RedisCluster
) -> None:
    set_REDIS_DB_settings("shop", url=cluster.url(), namespace=True)
    set_REDIS_DB_settings("mall", url=cluster.url(), namespace="{mall}:")
    with tenant("shop"):
        client = await get_async_redis_db()
        assert isinstance(client, AsyncNamespacedRedisCluster)
        assert client.namespace.prefix == "{shop}:"
        await POPOTO_ASYNC_REDIS_DB.set("user:1", "s1")
        await POPOTO_ASYNC_REDIS_DB.rpush("q", "x")
        assert await POPOTO_ASYNC_REDIS_DB.blpop(["q"], timeout=1) in ((b"q", b"x"), [b"q", b"x"])
        assert await POPOTO_ASYNC_REDIS_DB.keys("*") == [b"user:1"]
        assert await async_scan_keys("user:*") == [b"user:1"]
        assert POPOTO_REDIS_DB.get("user:1") == b"s1"  # the sync client, same namespace
        pipe = POPOTO_ASYNC_REDIS_DB.pipeline()
        pipe.incr("n")
        pipe.get("user:1")
        assert await pipe.execute() == [1, b"s1"]
        ps = POPOTO_ASYNC_REDIS_DB.pubsub(ignore_subscribe_messages=True)
        await ps.subscribe("news")
        await POPOTO_ASYNC_REDIS_DB.publish("news", "hi")
        message = None
        deadline = time.monotonic() + 10
        while message is None and time.monotonic() < deadline:
            message = await ps.get_message(timeout=0.05)
        await ps.aclose()
        assert message is not None
        assert (message["channel"], message["data"]) == (b"news", b"hi")
        await client.aclose()  # a view: the tenant's shared client stays open
        assert await POPOTO_ASYNC_REDIS_DB.get("user:1") == b"s1"
    with tenant("mall"):
        assert await POPOTO_ASYNC_REDIS_DB.get("user:1") is None
        assert await POPOTO_ASYNC_REDIS_DB.dbsize() == 0
        await POPOTO_ASYNC_REDIS_DB.set("user:1", "m1")
    stored = sorted(
        key for primary in admin.get_primaries() for key in admin.scan_iter(target_nodes=primary)
    )
    assert stored == [b"{mall}:user:1", b"{shop}:n", b"{shop}:user:1"]
