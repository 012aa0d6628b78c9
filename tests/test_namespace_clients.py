"""Namespaced clients, sync and async side by side, on a real server.

Each test body runs twice: on ``NamespacedRedis`` and on ``AsyncNamespacedRedis``
driven through :class:`Blocking` (which runs the async client's coroutines on a
private loop), so both drivers meet the same assertions. The tenant logs in as the
ACL user confined to ``~acme:*`` / ``&acme:*`` unless a test needs the default user.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from redis_tenancy._errors import NamespaceError, TenantConfigError
from redis_tenancy._keyspecs import COMMANDS
from redis_tenancy._namespace import Namespace
from redis_tenancy._nsclient import NamespacedPipeline, NamespacedPubSub, NamespacedRedis
from redis_tenancy._nsclient_async import AsyncNamespacedRedis

from .conftest import wait_until
from .namespace_harness import (
    CANARY,
    PREFIX,
    Blocking,
    NsServer,
    check_pubsub_round_trip,
    close_pubsub,
    command,
    confined_async_base,
    confined_base,
    start_server,
)


@pytest.fixture(scope="module")
def ns_server() -> Iterator[NsServer]:
    ns = start_server()
    try:
        yield ns
    finally:
        ns.admin.close()
        ns.server.stop()


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Tenants:
    """Builds namespaced clients of one mode and closes what it built."""

    def __init__(self, ns: NsServer, mode: str) -> None:
        self.ns = ns
        self.mode = mode
        self.loop = asyncio.new_event_loop() if mode == "async" else None
        self._bases: list[Any] = []

    def make(
        self,
        prefix: str = PREFIX,
        *,
        confined: bool = True,
        protocol: int = 3,
        decode: bool = False,
    ) -> Any:
        if self.mode == "sync":
            base: Any = (
                confined_base(self.ns, protocol=protocol, decode=decode)
                if confined
                else redis.Redis(
                    host=self.ns.server.host,
                    port=self.ns.server.port,
                    protocol=protocol,
                    decode_responses=decode,
                )
            )
            self._bases.append(base)
            return NamespacedRedis.wrap(base, Namespace(prefix))
        assert self.loop is not None
        abase = (
            confined_async_base(self.ns, protocol=protocol, decode=decode)
            if confined
            else redis.asyncio.Redis(
                host=self.ns.server.host,
                port=self.ns.server.port,
                protocol=protocol,
                decode_responses=decode,
            )
        )
        self._bases.append(abase)
        return Blocking(AsyncNamespacedRedis.wrap(abase, Namespace(prefix)), self.loop)

    def close(self) -> None:
        for base in self._bases:
            if self.loop is not None:
                self.loop.run_until_complete(base.aclose())
            else:
                base.close()
        if self.loop is not None:
            self.loop.close()


@pytest.fixture
def tenants(ns_server: NsServer, mode: str) -> Iterator[Tenants]:
    command(ns_server.admin, "FLUSHALL")
    command(ns_server.admin, "ACL", "LOG", "RESET")
    made = Tenants(ns_server, mode)
    yield made
    made.close()
    log = command(ns_server.admin, "ACL", "LOG")
    assert not log, f"ACL LOG: {log}"


# -- keys in, keys out -----------------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "decode"), [(2, False), (2, True), (3, False), (3, True)])
def test_client_bytes_and_str_keys_in_every_protocol(
    tenants: Tenants, protocol: int, decode: bool
) -> None:
    acme = tenants.make(protocol=protocol, decode=decode)
    admin = tenants.ns.admin

    def text(value: bytes) -> Any:
        return value.decode() if decode else value

    acme.set("s", "1")
    acme.set(b"b\xffk", b"2")  # a key that is not UTF-8 (needs decode=False to read back)
    acme.mset({"m1": "a", "m2": "b"})
    acme.set(7, "int key")
    assert acme.get("s") == text(b"1")
    assert acme.mget("m1", "m2", "nope") == [text(b"a"), text(b"b"), None]
    assert admin.get(PREFIX + "7") == b"int key"
    assert admin.get(PREFIX.encode() + b"b\xffk") == b"2"
    acme.rpush("l", "x")
    assert acme.blpop(["l"], timeout=1) in ([text(b"l"), text(b"x")], (text(b"l"), text(b"x")))
    acme.xadd("st", {"f": "v"}, id="1-0")
    streams = acme.xread({"st": 0})
    names = list(streams) if isinstance(streams, dict) else [entry[0] for entry in streams]
    assert names == [text(b"st")]
    acme.zadd("z", {"m": 1})
    assert acme.bzpopmin("z", timeout=1)[0] == text(b"z")
    if not decode:
        assert sorted(acme.keys("*")) == [b"7", b"b\xffk", b"m1", b"m2", b"s", b"st"]
    assert sorted(k for k in admin.keys("*")) == sorted(
        PREFIX.encode() + k for k in [b"7", b"b\xffk", b"m1", b"m2", b"s", b"st"]
    )


@pytest.mark.parametrize("protocol", [2, 3])
def test_client_one_key_commands_keep_the_options_that_shape_their_reply(
    tenants: Tenants, protocol: int
) -> None:
    """redis-py passes reply options (withscores, score_cast_func, never-decode...) next
    to ``keys=``; the inlined one-key path must forward all of them."""
    acme = tenants.make(protocol=protocol, decode=True)
    acme.zadd("z", {"a": 1, "b": 2})
    pairs = acme.zrange("z", 0, -1, withscores=True)
    assert [tuple(p) for p in pairs] == [("a", 1.0), ("b", 2.0)]
    assert acme.zrange("z", 0, 0, withscores=True, score_cast_func=int) in (
        [("a", 1)],
        [["a", 1]],
    )
    assert acme.zrevrange("z", 0, 0, withscores=True) in ([("b", 2.0)], [["b", 2.0]])
    assert acme.zscore("z", "b") == 2.0
    acme.set("blob", "v")
    dumped = acme.dump("blob")  # bytes although the client decodes replies
    assert isinstance(dumped, bytes)
    acme.delete("blob")
    acme.restore("blob", 0, dumped)
    assert acme.get("blob") == "v"
    assert tenants.ns.admin.get(PREFIX + "blob") == b"v"


def test_client_keys_dbsize_flushdb_cover_the_namespace_only(tenants: Tenants) -> None:
    admin = tenants.ns.admin
    # A prefix with glob characters, and a foreign key an unescaped pattern would match.
    acme = tenants.make("acm?:", confined=False)
    for i in range(2500):  # more than one SCAN page
        admin.set(f"acm?:k{i}", i)
    admin.set("acmx:k1", CANARY)
    admin.set("acm", CANARY)
    admin.set("other:k1", CANARY)
    assert acme.dbsize() == 2500
    assert len(acme.keys("*")) == 2500
    assert sorted(acme.keys("k1?")) == [f"k1{d}".encode() for d in range(10)]
    assert sorted(acme.scan_iter(match="k249*")) == sorted(
        [b"k249", *(f"k249{d}".encode() for d in range(10))]
    )
    assert acme.flushdb() is True
    assert acme.dbsize() == 0
    assert sorted(admin.keys("*")) == [b"acm", b"acmx:k1", b"other:k1"]


def test_client_flushdb_options(tenants: Tenants) -> None:
    acme = tenants.make()
    acme.set("a", 1)
    assert acme.flushdb(asynchronous=True) is True
    acme.set("a", 1)
    assert acme.execute_command("FLUSHDB", "SYNC") is True
    assert acme.dbsize() == 0
    with pytest.raises(NamespaceError, match="ASYNC or SYNC"):
        acme.execute_command("FLUSHDB", "NOW")


def test_client_scan_and_hscan_match(tenants: Tenants) -> None:
    acme = tenants.make()
    acme.hset("h", mapping={"f1": 1, "f2": 2, "g": 3})
    acme.set("k1", 1)
    assert sorted(acme.scan_iter(match="k*")) == [b"k1"]
    assert sorted(acme.scan_iter(_type="hash")) == [b"h"]
    assert sorted(acme.hscan_iter("h", match="f*")) == [(b"f1", b"1"), (b"f2", b"2")]
    cursor, keys = acme.scan(0, count=1000)
    assert cursor == 0
    assert sorted(keys) == [b"h", b"k1"]


def test_client_command_getkeys_and_keyslot_speak_logical_names(tenants: Tenants) -> None:
    acme = tenants.make()
    assert acme.execute_command("COMMAND GETKEYS", "MSET", "a", 1, "b", 2) == [b"a", b"b"]
    if tenants.ns.has_key_specs:
        flags = acme.execute_command("COMMAND GETKEYSANDFLAGS", "LMOVE", "x", "y", "LEFT", "LEFT")
        assert [entry[0] for entry in flags] == [b"x", b"y"]


def test_client_sort_by_and_get_patterns_are_prefixed(tenants: Tenants) -> None:
    acme = tenants.make(confined=False)  # Redis 7 denies BY/GET to key-restricted users
    admin = tenants.ns.admin
    acme.rpush("ids", 1, 2, 3)
    for i, weight in ((1, 30), (2, 10), (3, 20)):
        acme.set(f"w_{i}", weight)
        acme.hset(f"obj_{i}", "name", f"n{i}")
        admin.set(f"w_{i}", -weight)  # canaries under the bare names
        admin.hset(f"obj_{i}", "name", "CANARY")
    assert acme.sort("ids", by="w_*", get=["#", "obj_*->name"]) == [
        b"2",
        b"n2",
        b"3",
        b"n3",
        b"1",
        b"n1",
    ]
    assert acme.sort("ids", by="nosort", store="sorted") == 3
    assert acme.lrange("sorted", 0, -1) == [b"1", b"2", b"3"]


def test_client_refusals_are_typed(tenants: Tenants) -> None:
    acme = tenants.make()
    calls: list[Callable[[], Any]] = [
        lambda: acme.flushall(),
        lambda: acme.execute_command("SELECT", 1),
        lambda: acme.randomkey(),
        lambda: acme.swapdb(0, 1),
        lambda: acme.move("k", 1),
        lambda: acme.copy("a", "b", destination_db=1),
        lambda: acme.config_get("*"),
        lambda: acme.script_flush(),
        lambda: acme.execute_command("CLIENT", "TRACKING", "ON"),
        lambda: acme.execute_command("NOSUCHCOMMAND", "x"),
    ]
    for call in calls:
        with pytest.raises(NamespaceError):
            call()
    with pytest.raises(NamespaceError, match="MONITOR"):
        acme.monitor()
    with pytest.raises(NamespaceError, match="numkeys"):
        acme.eval("return 1", "01", "k")


# -- pipelines and transactions ----------------------------------------------------------------


def test_client_pipeline_and_transaction(tenants: Tenants) -> None:
    acme = tenants.make()
    admin = tenants.ns.admin
    pipe = acme.pipeline()
    pipe.set("p", 1)
    pipe.incr("p")
    pipe.rpush("l", "x")
    pipe.lmpop(1, "l", direction="LEFT") if tenants.ns.has_key_specs else pipe.lpop("l")
    pipe.scan(0, match="p*")
    pipe.pubsub_numsub("ch")
    results = pipe.execute()
    assert results[:3] == [True, 2, 1]
    assert results[3] in ([b"l", [b"x"]], b"x")
    assert results[4] == (0, [b"p"])
    assert results[5] == [(b"ch", 0)]
    assert admin.get(PREFIX + "p") == b"2"

    tx = acme.pipeline(transaction=True)
    tx.set("t", "a")
    tx.get("t")
    tx.scan(0, match="t*")
    assert tx.execute() == [True, b"a", (0, [b"t"])]

    watched = acme.pipeline()
    watched.watch("w")
    assert watched.get("w") is None  # immediate after WATCH, rewritten too
    watched.multi()
    watched.set("w", 1)
    assert watched.execute() == [True]
    assert admin.get(PREFIX + "w") == b"1"

    refused = acme.pipeline()
    with pytest.raises(NamespaceError, match="pipeline"):
        refused.keys("*")
    with pytest.raises(NamespaceError, match="FLUSHALL"):
        refused.flushall()
    refused.reset()


def test_client_transaction_helper_retries_on_watch(tenants: Tenants) -> None:
    if tenants.mode == "async":
        acme_async = tenants.make()
        acme_async.set("counter", 1)

        async def bump(pipe: Any) -> None:
            value = int(await pipe.get("counter"))
            pipe.multi()
            pipe.set("counter", value + 1)

        assert acme_async.transaction(bump, "counter") == [True]
    else:
        acme = tenants.make()
        acme.set("counter", 1)

        def bump_sync(pipe: Any) -> None:
            value = int(pipe.get("counter"))
            pipe.multi()
            pipe.set("counter", value + 1)

        assert acme.transaction(bump_sync, "counter") == [True]
    assert tenants.ns.admin.get(PREFIX + "counter") == b"2"


# -- pub/sub -------------------------------------------------------------------------------------


def test_client_pubsub_channels_patterns_and_handlers(tenants: Tenants) -> None:
    # ACL channel rules match PSUBSCRIBE patterns literally: the confined user may
    # only subscribe the pattern of its rule, which the tenant writes as "*".
    check_pubsub_round_trip(tenants.make(), tenants.ns.admin, pattern="*", foreign="other:")


def test_client_pubsub_pattern_messages_carry_logical_names(tenants: Tenants) -> None:
    acme = tenants.make("acm?:", confined=False)  # glob characters in the prefix
    admin = tenants.ns.admin
    ps = acme.pubsub(ignore_subscribe_messages=True)
    try:
        ps.psubscribe("ev:*")
        admin.publish("acmx:ev:1", "CANARY")  # matched by an unescaped prefix
        acme.publish("ev:1", "e1")
        got: list[Any] = []

        def arrived() -> bool:
            message = ps.get_message(timeout=0.05)
            if message is not None:
                got.append((message["pattern"], message["channel"], message["data"]))
            return bool(got)

        wait_until(arrived)
        assert got == [(b"ev:*", b"ev:1", b"e1")]
    finally:
        close_pubsub(ps)


def test_client_sharded_pubsub(tenants: Tenants) -> None:
    acme = tenants.make()
    if not tenants.ns.has_key_specs:
        with pytest.raises(redis.ResponseError, match=r"(?i)unknown command"):
            acme.execute_command("SPUBLISH", "s", "x")
        return
    ps = acme.pubsub()
    try:
        ps.ssubscribe("shard")
        acme.spublish("shard", "hello")
        got: list[Any] = []

        def arrived() -> bool:
            message = ps.get_message(timeout=0.05)
            if message is not None and message["type"] == "smessage":
                got.append((message["channel"], message["data"]))
            return bool(got)

        wait_until(arrived)
        assert got == [(b"shard", b"hello")]
        assert acme.execute_command("PUBSUB SHARDNUMSUB", "shard") in (
            [b"shard", 1],
            {b"shard": 1},
            [(b"shard", 1)],
        )
    finally:
        close_pubsub(ps)


# -- locks, scripts, client objects ----------------------------------------------------------


def test_client_lock_lives_in_the_namespace(tenants: Tenants) -> None:
    acme = tenants.make()
    admin = tenants.ns.admin
    admin.set("job", CANARY)  # a foreign lock of the same name does not block the tenant
    lock = acme.lock("job", timeout=10)
    assert lock.acquire(blocking=False)
    assert admin.exists(PREFIX + "job") == 1
    assert not acme.lock("job", timeout=10).acquire(blocking=False)
    lock.release()
    assert admin.exists(PREFIX + "job") == 0
    assert admin.get("job") == CANARY


def test_client_relies_on_redis_execute_command_only_delegating() -> None:
    """NamespacedRedis hands one-key commands to redis-py's ``_execute_command`` itself
    (one call level less). That is right only while ``redis.Redis.execute_command`` does
    nothing else: pin it, so a redis-py that adds work there fails here first."""
    code = redis.Redis.execute_command.__code__
    assert code.co_names == ("_execute_command",)
    assert len(code.co_code) < 40  # one call, one return


def test_client_wrap_shares_pool_and_callbacks_and_never_closes_the_pool(
    ns_server: NsServer,
) -> None:
    base = redis.Redis(host=ns_server.server.host, port=ns_server.server.port)
    a = NamespacedRedis.wrap(base, "t1:")
    b = NamespacedRedis.wrap(base, Namespace("t2:"))
    assert a.connection_pool is base.connection_pool is b.connection_pool
    assert a.response_callbacks is b.response_callbacks
    assert a.response_callbacks is not base.response_callbacks
    assert NamespacedRedis.wrap(a, "t3:").response_callbacks is a.response_callbacks
    assert isinstance(a.pipeline(), NamespacedPipeline)
    assert isinstance(a.pubsub(), NamespacedPubSub)
    single = a.client()
    assert isinstance(single, NamespacedRedis)
    assert single.namespace == Namespace("t1:")
    single.close()
    a.set("k", 1)
    a.close()
    del a
    assert base.ping()  # the shared pool survived
    assert b.get("k") is None
    assert repr(b).startswith("<NamespacedRedis 't2:'")
    base.close()


def test_client_wrap_works_over_any_pool_like_object(ns_server: NsServer) -> None:
    """The lead's per-tenant pool view only delegates the public ConnectionPool methods."""

    class PoolView:
        def __init__(self, pool: redis.ConnectionPool) -> None:
            self._pool = pool
            self.borrowed = 0

        def get_connection(self, *args: Any, **kwargs: Any) -> Any:
            self.borrowed += 1
            return self._pool.get_connection(*args, **kwargs)

        def release(self, connection: Any) -> None:
            self._pool.release(connection)

        def get_encoder(self) -> Any:
            return self._pool.get_encoder()

        def get_protocol(self) -> Any:
            return self._pool.get_protocol()  # type: ignore[no-untyped-call]

    base = confined_base(ns_server)
    view = PoolView(base.connection_pool)
    acme = NamespacedRedis.wrap(base, PREFIX, connection_pool=view)
    acme.set("v", 1)
    assert acme.keys("*") == [b"v"]
    pipe = acme.pipeline()
    pipe.get("v")
    assert pipe.execute() == [b"1"]
    acme.execute_command("GETDEL", "v")
    assert view.borrowed >= 4
    base.close()


def test_client_wrap_refuses_a_pool_with_client_side_caching(ns_server: NsServer) -> None:
    cached = redis.Redis(
        host=ns_server.server.host,
        port=ns_server.server.port,
        protocol=3,
        cache_config=redis.cache.CacheConfig(),
    )
    with pytest.raises(TenantConfigError, match="client-side caching"):
        NamespacedRedis.wrap(cached, PREFIX)
    cached.close()


def test_client_constructor_and_bad_prefixes(ns_server: NsServer) -> None:
    direct = NamespacedRedis(
        host=ns_server.server.host, port=ns_server.server.port, namespace="own:"
    )
    direct.set("k", 1)
    assert ns_server.admin.get("own:k") == b"1"
    direct.close()
    for bad in ("", b"\xff", 3):
        with pytest.raises(TenantConfigError):
            Namespace(bad)  # type: ignore[arg-type]


# -- commands missing from the table -------------------------------------------------------------


def test_client_unknown_command_is_looked_up_once_then_rewritten_or_refused(
    tenants: Tenants, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pretend the table never heard of RPOPLPUSH and PING: the server's COMMAND INFO
    # describes RPOPLPUSH's keys exactly (rewritten) and PING as keyless (refused: an
    # unknown keyless command may touch keys nobody can see).
    monkeypatch.delitem(COMMANDS, "rpoplpush")
    monkeypatch.delitem(COMMANDS, "ping")
    from redis_tenancy import _nsdriver

    monkeypatch.setattr(_nsdriver, "_learned", {})
    acme = tenants.make()
    acme.rpush("src", "v")
    assert acme.rpoplpush("src", "dst") == b"v"
    assert tenants.ns.admin.lrange(PREFIX + "dst", 0, -1) == [b"v"]
    with pytest.raises(NamespaceError, match="no key specification"):
        acme.ping()
    with pytest.raises(NamespaceError, match="unknown to the server"):
        acme.execute_command("NOSUCHCOMMAND", "k")
    learned = next(iter(_nsdriver._learned.values()))
    assert {"rpoplpush", "ping", "nosuchcommand"} <= set(learned)
    pipe = acme.pipeline()
    pipe.rpush("src", "w")
    pipe.rpoplpush("src", "dst")
    assert pipe.execute() == [1, b"w"]


def test_client_reply_key_outside_the_namespace_is_never_returned(
    tenants: Tenants, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Break the pattern escaping on purpose: SCAN then meets foreign keys, and the
    # client refuses the reply instead of returning them.
    acme = tenants.make(confined=False)
    tenants.ns.admin.set("foreign", CANARY)
    acme.set("mine", 1)
    monkeypatch.setattr(Namespace, "pattern", lambda self, pattern: pattern)
    with pytest.raises(NamespaceError, match="outside the namespace") as caught:
        acme.scan(0, match="*", count=1000)
    assert "foreign" not in str(caught.value)
    with pytest.raises(NamespaceError, match="outside the namespace"):
        acme.keys("*")
