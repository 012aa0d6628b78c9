# Popoto ships no type information: its classes are Any to mypy (as in pyproject.toml's
# override for tests/test_popoto.py).
# mypy: disallow-subclassing-any=False
"""Popoto models and helpers shared by the Popoto integration tests.

``test_popoto.py`` puts tenants on servers and databases of their own;
``test_popoto_namespaced.py`` puts them in namespaces of one database. Both look at the
servers through :class:`Place` with direct clients (never through the router).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import popoto
import popoto.redis_db as popoto_redis_db
import pytest
import redis
from popoto.fields.existence_filter import ExistenceFilter
from popoto.fields.validity_field import ValidityField
from popoto.pubsub.publisher import Publisher
from popoto.pubsub.subscriber import Subscriber
from popoto.streams.consumer import StreamConsumer

import redis_tenancy.popoto as rt_popoto
from redis_tenancy import tenant
from redis_tenancy._embedded import RedisServer

from .conftest import direct

__all__ = [
    "POPOTO_1_10",
    "Place",
    "RtCustomer",
    "RtEvent",
    "RtFact",
    "RtPublisher",
    "RtSubscriber",
    "async_queries",
    "consume_events",
    "evals",
    "installed",
    "interleaved_workload",
    "lua_roundtrip",
    "mentions",
    "workload_keys",
]

POPOTO_1_10 = hasattr(popoto, "batch")


class RtCustomer(popoto.Model):
    name = popoto.KeyField()
    tier = popoto.Field(type=str, default="free")


class RtFact(popoto.Model):
    """One field of each Lua-backed kind Popoto has."""

    name = popoto.UniqueKeyField()
    topic = popoto.Field(type=str, default="misc")
    tags = popoto.TagField()
    importance = popoto.FloatField(default=1.0)
    relevance = popoto.DecayingSortedField(base_score_field="importance")
    validity = ValidityField()
    bloom = ExistenceFilter(error_rate=0.01, capacity=1000, fingerprint_fn=lambda f: f.topic)


class RtEvent(popoto.EventStreamMixin, popoto.Model):
    name = popoto.UniqueKeyField()
    _stream_name = "rt_events"


class RtPublisher(Publisher):
    pass


class RtSubscriber(Subscriber):
    sub_channel_names: ClassVar[list[str]] = ["rt-news"]

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        super().__init__()

    def handle(self, channel: str, data: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        self.received.append(data)


@dataclass(frozen=True)
class Place:
    """Where a tenant's data lives: a server, a database and, for a namespaced tenant,
    the key prefix the server stores its keys under."""

    server: RedisServer
    db: int
    prefix: str = ""

    @property
    def url(self) -> str:
        return self.server.url.rsplit("/", 1)[0] + f"/{self.db}"

    def stored(self) -> set[str]:
        """The tenant's keys as the tenant names them (a namespace's prefix removed).

        Filtered client-side with ``startswith``: the oracle shares no code with the
        namespace's own glob escaping."""
        with direct(self.server, self.db) as client:
            keys = client.keys()
        return {k[len(self.prefix) :] for k in keys if k.startswith(self.prefix)}

    def client(self) -> redis.Redis:
        return direct(self.server, self.db)


@pytest.fixture
def installed() -> Iterator[None]:
    rt_popoto.install()
    try:
        yield
    finally:
        rt_popoto.uninstall()


def mentions(place: Place, marker: str) -> list[str]:
    """The tenant's keys on ``place`` whose name (without the prefix) or content contains
    ``marker`` (any data type)."""
    needle = marker.encode()
    prefix = place.prefix.encode()
    found = []
    with redis.Redis(host=place.server.host, port=place.server.port, db=place.db) as client:
        for key in client.scan_iter(count=1000):
            if not key.startswith(prefix):
                continue
            kind = client.type(key)
            if kind == b"string":
                parts: list[Any] = [client.get(key)]
            elif kind == b"hash":
                parts = [b"".join(kv) for kv in client.hgetall(key).items()]
            elif kind == b"set":
                parts = list(client.smembers(key))
            elif kind == b"zset":
                parts = list(client.zrange(key, 0, -1))
            elif kind == b"list":
                parts = list(client.lrange(key, 0, -1))
            else:  # stream
                parts = [repr(entry).encode() for entry in client.xrange(key)]
            if needle in key[len(prefix) :] or any(needle in (part or b"") for part in parts):
                found.append(key.decode())
    return found


def lua_roundtrip(name: str) -> None:
    """Every Lua-backed field of :class:`RtFact` written and read under tenant ``name``
    (the other tenant's records must be invisible)."""
    other = "globex" if name == "acme" else "acme"
    RtFact.create(name=f"{name}f1", topic=f"{name}topic", tags=[name, "common"], importance=2.0)
    RtFact.create(name=f"{name}f2", topic=f"{name}misc", tags=["common"])
    assert {f.name for f in RtFact.query.filter(tags__contains=name)} == {f"{name}f1"}
    assert {f.name for f in RtFact.query.filter(tags__contains="common")} == {
        f"{name}f1",
        f"{name}f2",
    }
    assert RtFact.bloom.might_exist(RtFact, f"{name}topic") is True
    assert RtFact.bloom.definitely_missing(RtFact, f"{other}topic") is True
    assert [f.name for f in RtFact.query.top_by_decay(n=1)] == [f"{name}f1"]
    current = {f.name for f in RtFact.query.filter(validity__current=True)}
    assert current == {f"{name}f1", f"{name}f2"}


def evals(place: Place) -> int:
    """How many ``EVAL`` (script body) commands the server ran: only recovery sends one."""
    with place.client() as client:
        stats = client.info("commandstats")
    return int(stats.get("cmdstat_eval", {}).get("calls", 0))


def interleaved_workload(names: tuple[str, str], rounds: int = 10) -> list[str]:
    """Model traffic of two tenants at once, from threads and asyncio tasks.

    One thread per tenant creates :class:`RtFact` records (Lua-backed fields; every
    other one in a pipeline) and reads them back by tag; two more threads each run an
    event loop with one task per tenant creating and listing :class:`RtCustomer`
    records. Everything a tenant reads that is not its own is returned (must be
    empty); :func:`workload_keys` names what each tenant must have stored.
    """
    wrong: list[str] = []
    barrier = threading.Barrier(4)

    def sync_worker(name: str) -> None:
        with tenant(name):
            barrier.wait()
            for i in range(rounds):
                if i % 2:
                    pipe = popoto_redis_db.POPOTO_REDIS_DB.pipeline()
                    RtFact.create(name=f"{name}t{i}", topic=name, tags=[name], pipeline=pipe)
                    pipe.execute()
                else:
                    RtFact.create(name=f"{name}t{i}", topic=name, tags=[name])
                for fact in RtFact.query.filter(tags__contains=name):
                    if not fact.name.startswith(name):
                        wrong.append(fact.name)

    async def async_worker(name: str) -> None:
        async with tenant(name):
            for i in range(rounds):
                await RtCustomer.async_create(name=f"{name}a{i}", tier=name)
                for customer in await RtCustomer.query.async_all():
                    if customer.tier != name:
                        wrong.append(customer.name)

    def loop_worker() -> None:
        barrier.wait()

        async def both() -> None:
            await asyncio.gather(*(async_worker(name) for name in names))

        asyncio.run(both())

    threads = [threading.Thread(target=sync_worker, args=(name,)) for name in names]
    threads += [threading.Thread(target=loop_worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return wrong


def workload_keys(name: str, rounds: int = 10) -> set[str]:
    """The record keys :func:`interleaved_workload` writes for tenant ``name``."""
    facts = {f"RtFact:{name}t{i}" for i in range(rounds)}
    return facts | {f"RtCustomer:{name}a{i}" for i in range(rounds)}


async def async_queries(
    name: str, n: int, check: Callable[[str, Any], Awaitable[None]] | None = None
) -> list[str]:
    """Create ``n`` customers as tenant ``name`` (yielding to other tasks between them),
    query them back every async way, and return their names; ``check(name, client)``
    adds assertions on the tenant's async client."""
    async with tenant(name):
        for i in range(n):
            await RtCustomer.async_create(name=f"{name}{i}", tier=name)
            await asyncio.sleep(0)  # interleave with the other tenant's task
        got = await RtCustomer.query.async_get(name=f"{name}0")
        assert got is not None
        assert got.tier == name
        assert await RtCustomer.query.async_count() == n
        filtered = await RtCustomer.query.async_filter(tier=name)
        everything = await RtCustomer.query.async_all()  # an async pipeline of HGETALLs
        assert {c.name for c in filtered} == {c.name for c in everything}
        client = await popoto_redis_db.get_async_redis_db()
        assert isinstance(client, popoto_redis_db.GuardedAsyncRedis)
        assert await client.exists(f"RtCustomer:{name}0") == 1
        if check is not None:
            await check(name, client)
        return sorted(c.name for c in everything)


def consume_events(name: str, handled: dict[str, list[str]]) -> int:
    """Run one batch of a ``StreamConsumer`` on ``stream:rt_events`` as the active tenant
    (XGROUP, XREADGROUP, XACK; ``asyncio.run`` and Popoto's cache reset inside), adding
    the handled records' keys to ``handled[name]``; returns how many it processed."""

    async def handler(batch: list[tuple[str, dict[str, str]]]) -> None:
        handled[name].extend(fields["pk"] for _, fields in batch)

    consumer = StreamConsumer("stream:rt_events", "rt-group", "c1", handler, block_ms=10)
    processed: int = consumer.process_batch_sync()
    return processed
