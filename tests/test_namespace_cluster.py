"""Namespaced tenants on a real 3-primary Redis Cluster: ``{tag}:`` prefixes.

A hash-tagged prefix puts every key of a tenant in one slot, so multi-key commands,
transactions and Lua scripts that compute key names work; two tenants on the same
cluster never see each other's keys.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import redis.cluster
from redis.crc import key_slot

from redis_tenancy._errors import NamespaceError
from redis_tenancy._namespace import Namespace
from redis_tenancy._nscluster import NamespacedRedisCluster, hash_tag

from .topologies import Cluster, start_cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    started = start_cluster(3)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def shared(cluster: Cluster) -> Iterator[redis.cluster.RedisCluster]:
    node = cluster.nodes[0]
    client = redis.cluster.RedisCluster(host=node.host, port=node.port)
    for primary in client.get_primaries():  # type: ignore[no-untyped-call]
        client.flushall(target_nodes=primary)
    yield client
    client.close()


def _slots(client: redis.cluster.RedisCluster) -> set[int]:
    return {
        key_slot(key)
        for primary in client.get_primaries()  # type: ignore[no-untyped-call]
        for key in client.scan_iter(target_nodes=primary)
    }


def test_cluster_hash_tag() -> None:
    assert hash_tag("{acme}:") == "acme"
    assert hash_tag("acme:") is None
    assert hash_tag("{}:") is None


def test_cluster_tenant_keys_share_one_slot_and_multikey_commands_work(
    shared: redis.cluster.RedisCluster,
) -> None:
    acme = NamespacedRedisCluster.wrap(shared, Namespace("{acme}:"))
    beta = NamespacedRedisCluster.wrap(shared, "{beta}:")
    acme.mset({"a": 1, "b": 2, "c": 3})
    beta.set("a", "beta")
    assert acme.mget("a", "b", "c") == [b"1", b"2", b"3"]
    assert acme.sunionstore("u", ["a_set", "b_set"]) == 0
    acme.rpush("l", "x")
    assert acme.lmove("l", "l2", "LEFT", "LEFT") == b"x"
    assert acme.blpop(["l2"], timeout=1) in ((b"l2", b"x"), [b"l2", b"x"])
    assert sorted(acme.keys("*")) == [b"a", b"b", b"c"]
    assert acme.dbsize() == 3
    assert sorted(acme.scan_iter()) in ([b"a", b"b", b"c"], sorted([b"a", b"b", b"c"]))
    assert shared.get("{beta}:a") == b"beta"
    assert {key_slot(b"{acme}:a")} | {key_slot(b"{beta}:a")} == _slots(shared)
    assert acme.flushdb() is True
    assert acme.dbsize() == 0
    assert beta.get("a") == b"beta"


def test_cluster_scripts_compute_keys_in_the_tenant_slot(
    shared: redis.cluster.RedisCluster,
) -> None:
    acme = NamespacedRedisCluster.wrap(shared, "{acme}:")
    acme.hset("ptrs", "p", "target")
    script = acme.register_script(
        "local t = redis.call('HGET', KEYS[1], 'p') redis.call('SET', t, ARGV[1]) "
        "return redis.call('GET', t)"
    )
    assert script(keys=["ptrs"], args=["v"]) == b"v"
    assert shared.get("{acme}:target") == b"v"
    assert acme.eval("return KEYS[1]", 1, "k") == b"k"


def test_cluster_pipeline_and_transaction(shared: redis.cluster.RedisCluster) -> None:
    acme = NamespacedRedisCluster.wrap(shared, "{acme}:")
    pipe = acme.pipeline()
    pipe.set("p", 1)
    pipe.incr("p")
    pipe.rpush("q", "x")
    pipe.zadd("z", {"m": 1})
    pipe.bzpopmin("z", timeout=1)  # a reply carrying a key name, fixed after execute()
    results = pipe.execute()
    assert results[:4] == [True, 2, 1, 1]
    assert tuple(results[4]) == (b"z", b"m", 1.0)
    tx = acme.pipeline(transaction=True)
    tx.set("t1", "a")
    tx.set("t2", "b")
    tx.get("t1")
    assert tx.execute()[2] == b"a"  # (redis-py's cluster transactions skip SET's callback)
    assert acme.get("t2") == b"b"
    with pytest.raises(NamespaceError, match="pipeline"):
        acme.pipeline().execute_command("DBSIZE")


def test_cluster_refusals_and_untagged_emulation(shared: redis.cluster.RedisCluster) -> None:
    acme = NamespacedRedisCluster.wrap(shared, "{acme}:")
    with pytest.raises(NamespaceError):
        acme.flushall()
    with pytest.raises(NamespaceError):
        acme.pubsub()
    untagged = NamespacedRedisCluster.wrap(shared, "plain:")
    untagged.set("k", 1)
    assert shared.get("plain:k") == b"1"
    with pytest.raises(NamespaceError, match="hash tag"):
        untagged.keys("*")


def test_cluster_wrapper_never_closes_the_shared_client(
    shared: redis.cluster.RedisCluster,
) -> None:
    acme = NamespacedRedisCluster.wrap(shared, "{acme}:")
    acme.set("k", 1)
    acme.close()
    del acme
    assert shared.get("{acme}:k") == b"1"
