"""Shared pieces of the namespace tests: an ACL-confined server, canaries, a data set.

The namespace tests run against their own ``redis-server`` (the harness's binary: Redis
7, Redis 6.2 or Valkey 9) so they can create ACL users without touching the suite's
shared servers. The tenant ``acme`` connects as the ACL user ``acme``, confined to keys
``~acme:*`` and channels ``&acme:*``, with the refused commands (and KEYS, DBSIZE,
FLUSHDB, which the namespace emulates with SCAN) removed: the server itself is the
oracle that nothing leaves the namespace. Another tenant's keys (``other:*``) and
un-prefixed keys of the same names hold canary values that must never show up in a
reply and never change.
"""

from __future__ import annotations

import asyncio
import fnmatch
import inspect
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
import redis
import redis.asyncio
import redis.connection

from redis_tenancy._embedded import RedisServer
from redis_tenancy._errors import NamespaceError
from redis_tenancy._keyspecs import COMMANDS

from .conftest import wait_until

PREFIX = "acme:"
USER = "acme"
USER_PASSWORD = "acme-pw-9f3"
CANARY = b"CANARY"
OTHER = "other:"

#: Commands the ACL user must still run: redis-py's connection handshake.
_HANDSHAKE = {"hello", "auth", "client|setinfo", "client|setname", "reset", "quit", "select"}


@dataclass
class NsServer:
    """The namespace tests' server, an admin client, and what the server is."""

    server: RedisServer
    admin: redis.Redis
    version: tuple[int, ...]
    valkey: bool
    known: set[str] = field(default_factory=set)

    @property
    def has_key_specs(self) -> bool:
        """Redis 7+ and Valkey: key specs, subcommand ACLs, COMMAND GETKEYS of subcommands."""
        return self.version >= (7, 0)

    def knows(self, name: str) -> bool | None:
        """Whether the server has ``name`` (``None``: cannot tell, Redis 6 subcommands)."""
        if "|" in name and not self.has_key_specs:
            return None if name.split("|")[0] in self.known else False
        return name in self.known


def command(client: Any, *args: Any, **options: Any) -> Any:
    """``client.execute_command`` (redis-py leaves it untyped)."""
    return client.execute_command(*args, **options)


def raw_command(client: Any, *args: Any) -> Any:
    """One command straight on a pooled connection: the raw reply, no callback."""
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_command(*args)
        return conn.read_response()
    finally:
        pool.release(conn)


def acl_rules(has_subcommand_rules: bool) -> list[str]:
    """ACL SETUSER rules confining ``acme`` to its namespace (what the proof relies on)."""
    rules = ["reset", "on", f">{USER_PASSWORD}", f"~{PREFIX}*", "resetchannels", f"&{PREFIX}*"]
    rules.append("+@all")
    denied = {"keys", "dbsize", "flushdb"}
    for name, spec in COMMANDS.items():
        if spec.refused is None or name in _HANDSHAKE:
            continue
        if "|" in name and not has_subcommand_rules:
            continue
        denied.add(name)
    rules += [f"-{name}" for name in sorted(denied)]
    return rules


def start_server() -> NsServer:
    server = RedisServer().start()
    admin = redis.Redis(host=server.host, port=server.port, protocol=2)
    info = admin.info("server")
    valkey = "valkey_version" in info
    version = tuple(int(p) for p in str(info["redis_version"]).split(".")[:2])
    known: set[str] = set()
    ns = NsServer(server, admin, version, valkey)
    for entry in raw_command(admin, "COMMAND"):
        known.add(entry[0].decode().lower())
        if len(entry) > 9:
            for sub in entry[9] or ():
                known.add(sub[0].decode().lower())
    ns.known = known
    rules = acl_rules(ns.has_key_specs)
    # Unknown command names (a table built on newer servers) are skipped one by one.
    accepted = [r for r in rules if not r.startswith("-") or _acl_accepts(admin, r)]
    command(admin, "ACL", "SETUSER", USER, *accepted)
    if ns.version >= (7, 0):
        command(
            admin,
            "FUNCTION",
            "LOAD",
            "REPLACE",
            "#!lua name=nslib\n"
            "redis.register_function('nsget', function(keys, args)"
            " return redis.call('GET', keys[1]) end)\n"
            "redis.register_function{function_name='nsget_ro', flags={'no-writes'},"
            " callback=function(keys, args) return redis.call('GET', keys[1]) end}\n",
        )
    return ns


def _acl_accepts(admin: redis.Redis, rule: str) -> bool:
    try:
        command(admin, "ACL", "SETUSER", "probe-user", rule)
    except redis.ResponseError:
        return False
    finally:
        command(admin, "ACL", "DELUSER", "probe-user")
    return True


class RecordingConnection(redis.connection.Connection):
    """A connection that remembers every command it packs (what the server received)."""

    sent: ClassVar[list[tuple[Any, ...]]] = []

    def pack_command(self, *args: Any) -> list[bytes | memoryview]:
        type(self).sent.append(args)
        return super().pack_command(*args)  # type: ignore[no-untyped-call, no-any-return]


def confined_base(
    ns: NsServer, *, protocol: int = 3, decode: bool = False, record: bool = False
) -> redis.Redis:
    """A plain client logged in as the confined ACL user (wrap it in a namespace)."""
    pool = redis.ConnectionPool(
        connection_class=RecordingConnection if record else redis.connection.Connection,
        host=ns.server.host,
        port=ns.server.port,
        username=USER,
        password=USER_PASSWORD,
        protocol=protocol,
        decode_responses=decode,
    )
    return redis.Redis(connection_pool=pool)


def confined_async_base(
    ns: NsServer, *, protocol: int = 3, decode: bool = False
) -> redis.asyncio.Redis:
    return redis.asyncio.Redis(
        host=ns.server.host,
        port=ns.server.port,
        username=USER,
        password=USER_PASSWORD,
        protocol=protocol,
        decode_responses=decode,
    )


# -- data --------------------------------------------------------------------------------


def _dataset(pipe: Any, prefix: str, value: bytes | None) -> None:
    """The keys every sample command may touch, under ``prefix``.

    ``value`` replaces every stored value (the canaries); ``None`` stores real data.
    """

    def v(real: str) -> bytes:
        return value if value is not None else real.encode()

    p = prefix
    pipe.set(p + "str", v("hello"))
    pipe.set(p + "str2", v("world"))
    pipe.set(p + "num", b"10" if value is None else value)
    pipe.setbit(p + "bits", 7, 1)
    pipe.rpush(p + "list", v("a"), v("b"), v("c"))
    pipe.rpush(p + "list2", v("x"), v("y"))
    pipe.sadd(p + "set", v("a"), b"b", b"c")
    pipe.sadd(p + "set2", b"b", b"c", v("d"))
    pipe.zadd(p + "zset", {v("a"): 1, b"b": 2, b"c": 3})
    pipe.zadd(p + "zset2", {b"b": 1, v("d"): 4})
    pipe.hset(p + "hash", mapping={"f": v("v"), "n": b"1", "g": v("w")})
    pipe.xadd(p + "stream", {"f": v("v")}, id="1-0")
    pipe.xadd(p + "stream", {"f": v("w")}, id="2-0")
    pipe.xgroup_create(p + "stream", "g", id="0")
    pipe.xreadgroup("g", "c", {p + "stream": ">"}, count=1)
    pipe.geoadd(p + "geo", (13.361389, 38.115556, v("Palermo")))
    pipe.geoadd(p + "geo", (15.087269, 37.502669, b"Catania"))
    pipe.pfadd(p + "hll", v("a"), b"b", b"c")


def reset_namespace(admin: redis.Redis) -> None:
    """Delete every ``acme:`` key and load the data set again."""
    for key in admin.scan_iter(match=PREFIX + "*", count=1000):
        admin.delete(key)
    with admin.pipeline(transaction=False) as pipe:
        _dataset(pipe, PREFIX, None)
        pipe.execute()


def plant_canaries(admin: redis.Redis) -> dict[bytes, bytes]:
    """Canary keys outside the namespace (on an emptied server); returns their DUMPs."""
    admin.flushall()
    with admin.pipeline(transaction=False) as pipe:
        for prefix in ("", OTHER, "acme", "acmeX:"):
            _dataset(pipe, prefix, CANARY)
        pipe.execute()
    return canary_dumps(admin)


def canary_dumps(admin: redis.Redis) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for key in admin.scan_iter(count=1000):
        if not key.startswith(PREFIX.encode()):
            out[key] = admin.dump(key) or b""
    return out


def leaks(reply: Any) -> list[str]:
    """What in ``reply`` must never reach a namespaced caller: canaries, real names."""
    found: list[str] = []
    for item in _walk(reply):
        raw = item.encode() if isinstance(item, str) else item
        if not isinstance(raw, bytes):
            continue
        for bad in (CANARY, OTHER.encode(), PREFIX.encode()):
            if bad in raw:
                found.append(f"{bad!r} in {raw[:60]!r}")
    return found


def _walk(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(k)
            yield from _walk(v)
    elif isinstance(value, (list, tuple, set)):
        for v in value:
            yield from _walk(v)
    else:
        yield value


# -- driving the asyncio clients with blocking calls ------------------------------------------


#: Modules whose objects :class:`Blocking` wraps in turn (pipelines, pub/sub, locks).
_ASYNC_MODULES = (
    "redis.asyncio",
    "redis_tenancy._nsclient_async",
    "redis_tenancy._nscluster_async",
)


class Blocking:
    """Drive an async client (or its pipeline / pub/sub) with blocking calls."""

    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._target = target
        self._loop = loop

    def _result(self, value: Any) -> Any:
        # Coroutines only: redis-py's asyncio cluster pipeline is awaitable itself
        # (awaiting it initializes it, which empties its queue).
        if inspect.iscoroutine(value) or asyncio.isfuture(value):
            value = self._loop.run_until_complete(value)
        if inspect.isasyncgen(value):
            return self._loop.run_until_complete(_drain(value))
        kind = type(value)
        if kind.__module__.startswith(_ASYNC_MODULES) or kind.__name__ == "AsyncScript":
            return Blocking(value, self._loop)  # pipelines, pub/sub, locks, scripts
        return value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._result(self._target(*args, **kwargs))  # scripts

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr
        return lambda *args, **kwargs: self._result(attr(*args, **kwargs))


async def _drain(gen: Any) -> list[Any]:
    return [item async for item in gen]


def close_pubsub(pubsub: Any) -> None:
    """``aclose()`` on the asyncio pub/sub (its ``close()`` is deprecated), else ``close()``."""
    closer = getattr(pubsub, "aclose", None)
    (closer or pubsub.close)()


def check_pubsub_round_trip(acme: Any, admin: Any, *, pattern: str, foreign: str) -> None:
    """Channels, a pattern and a handler through ``acme``'s pub/sub (sync, or async
    through :class:`Blocking`): subscriptions, ``PUBSUB CHANNELS``/``NUMSUB`` and every
    message speak logical names; messages published outside the namespace (un-prefixed,
    or under ``foreign``) never arrive; keyspace notifications are refused."""
    received: list[Any] = []
    lock = threading.Lock()

    def handler(message: dict[str, Any]) -> None:
        with lock:
            received.append((message["channel"], message["data"]))

    ps = acme.pubsub(ignore_subscribe_messages=True)
    try:
        ps.subscribe("news", alerts=handler)
        ps.psubscribe(pattern)
        assert sorted(acme.pubsub_channels()) == [b"alerts", b"news"]
        assert sorted(acme.pubsub_channels("n*")) == [b"news"]
        assert dict(acme.pubsub_numsub("news", "alerts", "nobody")) == {
            b"news": 1,
            b"alerts": 1,
            b"nobody": 0,
        }
        admin.publish("news", CANARY)
        admin.publish(foreign + "news", CANARY)
        acme.publish("news", "n1")
        acme.publish("alerts", "a1")
        expected = {("message", None, b"news"), ("pmessage", pattern.encode(), b"news")}
        if fnmatch.fnmatchcase("alerts", pattern):
            expected.add(("pmessage", pattern.encode(), b"alerts"))
        messages: list[Any] = []

        def drained() -> bool:
            message = ps.get_message(timeout=0.05)
            if message is not None:
                messages.append((message["type"], message["pattern"], message["channel"]))
                messages.append(message["data"])
            return expected <= set(messages) and bool(received)

        wait_until(drained, what=lambda: f"messages {messages}, handled {received}")
        assert CANARY not in messages
        assert received == [(b"alerts", b"a1")]
        ps.unsubscribe("news")
        ps.punsubscribe(pattern)
        with pytest.raises(NamespaceError, match="keyspace notifications"):
            ps.psubscribe("__keyspace@0__:*")
        with pytest.raises(NamespaceError, match="keyspace notifications"):
            ps.subscribe("__keyevent@0__:del")
    finally:
        close_pubsub(ps)
