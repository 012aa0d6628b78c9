"""Real Popoto models on namespaced tenants: two namespaces in one database of one server.

``acme`` and ``globex`` are registered through Popoto's own setter with
``namespace=True`` on server ``b``, database 0; ``redis_tenancy.popoto`` is installed.
Every key on that server must start with its tenant's prefix (checked with direct
clients, never through the router), and nothing one tenant wrote may be read by the
other. The models and helpers are ``test_popoto.py``'s (``popoto_models``).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import popoto
import popoto.redis_db as popoto_redis_db
import pytest

import redis_tenancy.popoto as rt_popoto
from redis_tenancy import current_tenant, tenant
from redis_tenancy._errors import NamespaceError
from redis_tenancy._nsclient import NamespacedPipeline, NamespacedPubSub, NamespacedRedis
from redis_tenancy._nsclient_async import AsyncNamespacedPipeline, AsyncNamespacedRedis

from .conftest import SECRET, Servers, direct, wait_until
from .popoto_models import (
    POPOTO_1_10,
    Place,
    RtCustomer,
    RtEvent,
    RtFact,
    RtPublisher,
    RtSubscriber,
    async_queries,
    consume_events,
    evals,
    interleaved_workload,
    lua_roundtrip,
    mentions,
    workload_keys,
)
from .popoto_models import installed as installed  # a fixture: used by name

NAMES = ("acme", "globex")


def fresh(server: Any) -> None:
    """No script left on ``server`` from earlier tests (the session's servers keep them)."""
    with direct(server) as client:
        client.script_flush()


@pytest.fixture
def shared(servers: Servers, installed: None) -> dict[str, Place]:
    """acme and globex: namespaces of db 0 of server b, registered through Popoto."""
    fresh(servers.b)
    for name in NAMES:
        popoto_redis_db.set_REDIS_DB_settings(name, url=servers.b.url, namespace=True)
    return {name: Place(servers.b, 0, f"{name}:") for name in NAMES}


def assert_confined(servers: Servers, places: dict[str, Place]) -> None:
    """Each tenant wrote, and only inside its namespace (or its own server).

    On a server holding namespaces every key starts with one of their prefixes; no key
    of a tenant (name or content, prefix removed) mentions another tenant; nothing
    reached the default tenant (server a).
    """
    with direct(servers.a) as client:
        assert client.dbsize() == 0, "nothing may reach the default tenant"
    prefixes: dict[Any, tuple[str, ...]] = {}
    for place in places.values():
        if place.prefix:
            prefixes[place.server] = (*prefixes.get(place.server, ()), place.prefix)
    for server, allowed in prefixes.items():
        with direct(server) as client:
            keys = client.keys()
        outside = [key for key in keys if not key.startswith(allowed)]
        assert outside == [], f"keys outside every namespace on a shared server: {outside}"
    for name, place in places.items():
        assert mentions(place, name), f"{name} wrote nothing"
        for other in places:
            if other != name:
                assert mentions(place, other) == [], f"{other}'s data in {name}'s keys"


# -- models, sync and async -----------------------------------------------------------------


def test_namespaced_models_create_get_filter_delete_stay_in_their_namespace(
    servers: Servers, shared: dict[str, Place]
) -> None:
    for name in NAMES:
        with tenant(name):
            RtCustomer.create(name="Ada", tier=name)
            RtCustomer.create(name=f"only{name}", tier=name)
    for name, other in (("acme", "globex"), ("globex", "acme")):
        with tenant(name):
            client = popoto_redis_db.get_REDIS_DB()
            assert isinstance(client, popoto_redis_db.GuardedRedis)
            assert isinstance(client, NamespacedRedis)
            ada = RtCustomer.query.get(name="Ada")
            assert ada is not None
            assert ada.tier == name
            assert {c.name for c in RtCustomer.query.all()} == {"Ada", f"only{name}"}
            assert {c.name for c in RtCustomer.query.filter(tier=name)} == {"Ada", f"only{name}"}
            assert RtCustomer.query.filter(tier=other) == []
            assert RtCustomer.query.get(name=f"only{other}") is None
            assert RtCustomer.query.count() == 2
            # The proxy Popoto's modules hold sees the namespace too, in logical names.
            assert popoto_redis_db.POPOTO_REDIS_DB.exists(f"RtCustomer:only{name}") == 1
            assert popoto_redis_db.POPOTO_REDIS_DB.exists(f"RtCustomer:only{other}") == 0
    assert "RtCustomer:onlyacme" in shared["acme"].stored()
    assert "RtCustomer:onlyacme" not in shared["globex"].stored()
    assert_confined(servers, shared)
    with tenant("acme"):
        RtCustomer.query.get(name="Ada").delete()
        assert RtCustomer.query.get(name="Ada") is None
    assert "RtCustomer:Ada" not in shared["acme"].stored()
    assert "RtCustomer:Ada" in shared["globex"].stored()
    with tenant("globex"):
        assert RtCustomer.query.get(name="Ada").tier == "globex"


def test_namespaced_proxy_repr_names_the_namespace_and_hides_the_password(
    servers: Servers, installed: None
) -> None:
    popoto_redis_db.set_REDIS_DB_settings("secret", url=servers.auth.url, namespace=True)
    with tenant("secret"):
        proxy = popoto_redis_db.POPOTO_REDIS_DB
        assert proxy.set("k", "v")
        for shown in (repr(proxy), repr(proxy.pipeline()), repr(popoto_redis_db.get_REDIS_DB())):
            assert SECRET not in shown
        assert "'secret:'" in repr(proxy)
    with direct(servers.auth) as client:
        assert client.keys() == ["secret:k"]


async def test_namespaced_async_queries_and_pipelines_follow_the_task_tenant(
    servers: Servers, shared: dict[str, Place]
) -> None:
    async def in_namespace(name: str, client: Any) -> None:
        assert isinstance(client, AsyncNamespacedRedis)
        pipe = client.pipeline()
        assert isinstance(pipe, popoto_redis_db.GuardedAsyncPipeline)
        assert isinstance(pipe, AsyncNamespacedPipeline)
        pipe.hget(f"RtCustomer:{name}0", "tier")
        pipe.exists("RtCustomer:acme0", "RtCustomer:globex0")
        tier, both = await pipe.execute()
        assert tier is not None
        assert both == 1, "the other tenant's record is not in this namespace"

    acme, globex = await asyncio.gather(
        async_queries("acme", 6, in_namespace), async_queries("globex", 4, in_namespace)
    )
    assert acme == sorted(f"acme{i}" for i in range(6))
    assert globex == sorted(f"globex{i}" for i in range(4))
    assert_confined(servers, shared)


def test_namespaced_threads_and_tasks_interleaved_never_cross(
    servers: Servers, shared: dict[str, Place]
) -> None:
    assert interleaved_workload(NAMES) == []
    for name in NAMES:
        assert workload_keys(name) <= shared[name].stored()
    assert_confined(servers, shared)


# -- Lua, pipelines and batch() ---------------------------------------------------------------


def test_namespaced_lua_backed_fields_are_correct_and_only_wrapped_scripts_run(
    servers: Servers, shared: dict[str, Place]
) -> None:
    for name in NAMES:
        with tenant(name):
            lua_roundtrip(name)
    for name in NAMES:  # again, after the other tenant wrote the same names
        with tenant(name):
            assert [f.name for f in RtFact.query.top_by_decay(n=2)] == [f"{name}f1", f"{name}f2"]
    scripts = rt_popoto._installation.scripts  # type: ignore[union-attr]
    callers = scripts.shas()
    assert callers, "Popoto queued no script on a pipeline"
    wrapped = [scripts.wrapped_sha(scripts.text(sha) or "") for sha in callers]
    with direct(servers.b) as client:
        # A script loaded as the caller wrote it would run outside the namespace.
        assert not any(client.script_exists(*callers))
        assert all(client.script_exists(*wrapped))
    assert_confined(servers, shared)


@pytest.mark.parametrize("opener", ["pipeline", "batch"])
def test_namespaced_pipelines_and_batch_stay_in_the_namespace_and_recover(
    servers: Servers, shared: dict[str, Place], opener: str
) -> None:
    if opener == "batch" and not POPOTO_1_10:
        pytest.skip("popoto.batch() is new in Popoto 1.10")

    def open_pipe() -> NamespacedPipeline:
        pipe = popoto.batch() if opener == "batch" else popoto_redis_db.POPOTO_REDIS_DB.pipeline()
        assert isinstance(pipe, popoto_redis_db.GuardedPipeline)
        if opener == "batch":
            assert isinstance(pipe, sys.modules["popoto.batch"].Batch)
        assert isinstance(pipe, NamespacedPipeline)
        return pipe

    with tenant("acme"):
        RtFact.create(name="warm", topic="x", tags=["a", "acme"])  # loads the wrapped scripts
    with direct(servers.b) as client:
        client.config_resetstat()
    with tenant("globex"):  # the same endpoint: one wrapped script serves every namespace
        pipe = open_pipe()
        RtFact.create(name="cold", topic="y", tags=["b", "globex"], pipeline=pipe)
        assert not any(isinstance(r, Exception) for r in pipe.execute())
    assert evals(shared["globex"]) == 0, "the wrapped scripts were there: no recovery"

    with direct(servers.b) as client:
        client.script_flush()  # a restart or SCRIPT FLUSH: the script cache is now wrong
        client.config_resetstat()
    with tenant("acme"):
        pipe = open_pipe()
        RtFact.create(name="afterflush", topic="z", tags=["a", "acme"], pipeline=pipe)
        results = pipe.execute()
        assert not any(isinstance(r, Exception) for r in results)
        assert evals(shared["acme"]) >= 1, "recovered by re-running the wrapped body"
        assert RtFact.query.get(name="afterflush") is not None
        assert RtFact.bloom.might_exist(RtFact, "z") is True
        assert {f.name for f in RtFact.query.filter(tags__contains="a")} == {"warm", "afterflush"}
        assert RtFact.query.get(name="cold") is None
    with tenant("globex"):
        assert {f.name for f in RtFact.query.filter(tags__contains="b")} == {"cold"}
        assert RtFact.query.filter(tags__contains="a") == []
        assert RtFact.bloom.definitely_missing(RtFact, "z") is True
    assert {"RtFact:warm", "RtFact:afterflush"} <= shared["acme"].stored()
    assert "RtFact:cold" in shared["globex"].stored()
    with direct(servers.b) as client:
        assert not any(client.script_exists(*rt_popoto._installation.scripts.shas()))  # type: ignore[union-attr]
    assert_confined(servers, shared)


# -- the flush guard -------------------------------------------------------------------------


def test_namespaced_flushdb_empties_only_the_namespace_and_flushall_stays_refused(
    servers: Servers, shared: dict[str, Place]
) -> None:
    refused = popoto_redis_db.Db0FlushRefusedError
    for name in NAMES:
        with tenant(name):
            RtCustomer.create(name=f"{name}1")
    with direct(servers.b) as client:
        client.set("bystander", "not a tenant's")
    with tenant("acme"):
        client = popoto_redis_db.get_REDIS_DB()
        with pytest.raises(refused):
            client.flushall()
        with pytest.raises(refused):
            popoto_redis_db.POPOTO_REDIS_DB.flushall()
        with pytest.raises(refused):
            client.pipeline().flushall()
        if POPOTO_1_10:
            with pytest.raises(refused):
                popoto.batch().flushall()
        with pytest.raises(NamespaceError, match="FLUSHDB"):
            client.pipeline().flushdb()  # emulated with SCAN: not in a pipeline
        assert shared["acme"].stored(), "nothing was flushed yet"
        assert client.flushdb() is True  # database 0, but only acme's keys
        assert shared["acme"].stored() == set()
        assert "RtCustomer:globex1" in shared["globex"].stored()

    async def async_side() -> None:
        async with tenant("globex"):
            aclient = await popoto_redis_db.get_async_redis_db()
            with pytest.raises(refused):
                await aclient.flushall()
            with pytest.raises(refused):
                aclient.pipeline().flushall()
            assert await aclient.flushdb() is True

    asyncio.run(async_side())
    assert shared["globex"].stored() == set()
    with direct(servers.b) as client:
        assert client.keys() == ["bystander"]


# -- pub/sub and streams -----------------------------------------------------------------------


def test_namespaced_pubsub_channels_are_the_tenants_own(
    servers: Servers, shared: dict[str, Place]
) -> None:
    with tenant("acme"):
        subscriber = RtSubscriber()  # binds pubsub() to acme at construction
    try:
        with direct(servers.b) as client:
            wait_until(
                lambda: client.pubsub_numsub("acme:rt-news") == [("acme:rt-news", 1)],
                what="acme's subscription",
            )
            publisher = RtPublisher()
            with tenant("globex"):
                # One server and db, the same channel name: another namespace's channel.
                assert publisher.publish({"from": "globex"}, channel_name="rt-news") == 0
            with tenant("acme"):
                assert publisher.publish({"from": "acme"}, channel_name="rt-news") == 1
            assert client.pubsub_channels() == ["acme:rt-news"]

        def poll() -> bool:
            subscriber()
            return bool(subscriber.received)

        wait_until(poll, what="acme's message")
        assert subscriber.received == [{"from": "acme"}]
    finally:
        subscriber.pubsub.close()

    seen: list[tuple[str | None, Any]] = []
    with tenant("globex"):
        pubsub = popoto_redis_db.POPOTO_REDIS_DB.pubsub()
        assert isinstance(pubsub, NamespacedPubSub)
        pubsub.subscribe(
            **{"rt-thread": lambda message: seen.append((current_tenant(), message["channel"]))}
        )
        worker = pubsub.run_in_thread(sleep_time=0.01, daemon=True)
    try:
        with tenant("globex"):
            wait_until(lambda: popoto_redis_db.get_REDIS_DB().publish("rt-thread", "x") == 1)
        wait_until(lambda: bool(seen), what="the handler to run")
        assert seen[0] == ("globex", b"rt-thread")  # its tenant, its logical channel name
    finally:
        worker.stop()
        worker.join(timeout=5)


def test_namespaced_event_streams_and_stream_consumers_stay_in_the_namespace(
    servers: Servers, shared: dict[str, Place]
) -> None:
    for name, count in (("acme", 3), ("globex", 2)):
        with tenant(name):
            for i in range(count):
                RtEvent.create(name=f"{name}{i}")
    for name, count in (("acme", 3), ("globex", 2)):
        with direct(servers.b) as client:
            entries = client.xrange(f"{name}:stream:rt_events")
        assert len(entries) == count
        assert all(fields["pk"] == f"RtEvent:{name}{i}" for i, (_, fields) in enumerate(entries))

    handled: dict[str, list[str]] = {"acme": [], "globex": []}
    with tenant("globex"):
        assert consume_events("globex", handled) == 2
    with tenant("acme"):
        assert consume_events("acme", handled) == 3
    assert sorted(handled["globex"]) == ["RtEvent:globex0", "RtEvent:globex1"]
    assert sorted(handled["acme"]) == [f"RtEvent:acme{i}" for i in range(3)]
    with direct(servers.b) as client:
        assert client.xinfo_groups("acme:stream:rt_events")[0]["name"] == "rt-group"
        assert client.xinfo_groups("globex:stream:rt_events")[0]["pending"] == 0
    assert_confined(servers, shared)


# -- namespaced and plain tenants together ------------------------------------------------------


def test_a_namespaced_and_a_plain_tenant_on_another_server_never_cross(
    servers: Servers, installed: None
) -> None:
    fresh(servers.b)
    fresh(servers.c)
    popoto_redis_db.set_REDIS_DB_settings("acme", url=servers.b.url, namespace=True)
    popoto_redis_db.set_REDIS_DB_settings("globex", url=servers.c.url)
    places = {"acme": Place(servers.b, 0, "acme:"), "globex": Place(servers.c, 0)}
    for name in NAMES:
        with tenant(name):
            lua_roundtrip(name)
    assert interleaved_workload(NAMES) == []
    for name in NAMES:
        assert workload_keys(name) <= places[name].stored()
        with tenant(name):
            pipe = popoto_redis_db.POPOTO_REDIS_DB.pipeline()
            assert isinstance(pipe, NamespacedPipeline) == (name == "acme")
            RtFact.create(name=f"{name}piped", topic=name, tags=["piped"], pipeline=pipe)
            pipe.execute()
            assert {f.name for f in RtFact.query.filter(tags__contains="piped")} == {f"{name}piped"}
    on_c = places["globex"].stored()
    assert not [key for key in on_c if key.startswith("acme:")]
    assert "RtFact:globexf1" in on_c
    # Each server holds the scripts as its tenant runs them: wrapped on the namespaced one.
    scripts = rt_popoto._installation.scripts  # type: ignore[union-attr]
    callers = scripts.shas()
    wrapped = [scripts.wrapped_sha(scripts.text(sha) or "") for sha in callers]
    with direct(servers.b) as b, direct(servers.c) as c:
        assert not any(b.script_exists(*callers))
        assert all(b.script_exists(*wrapped))
        assert all(c.script_exists(*callers))
        assert not any(c.script_exists(*wrapped))
    assert_confined(servers, places)


def test_a_namespaced_pipeline_loads_its_wrapped_script_where_a_plain_tenant_loaded_the_original(
    servers: Servers, installed: None
) -> None:
    # A plain tenant on the very endpoint of a namespaced one: the script cache must
    # record what the server holds (the wrapped SHA), not the caller's SHA.
    fresh(servers.b)
    popoto_redis_db.set_REDIS_DB_settings("plain", url=servers.b.url)
    popoto_redis_db.set_REDIS_DB_settings("acme", url=servers.b.url, namespace=True)
    with tenant("plain"):
        pipe = popoto_redis_db.POPOTO_REDIS_DB.pipeline()
        RtFact.create(name="plain1", topic="p", tags=["p"], pipeline=pipe)
        pipe.execute()
    with direct(servers.b) as client:
        client.config_resetstat()
    with tenant("acme"):
        pipe = popoto_redis_db.POPOTO_REDIS_DB.pipeline()
        RtFact.create(name="acme1", topic="a", tags=["a"], pipeline=pipe)
        assert not any(isinstance(r, Exception) for r in pipe.execute())
        assert {f.name for f in RtFact.query.filter(tags__contains="a")} == {"acme1"}
    assert evals(Place(servers.b, 0)) == 0, "loaded before the pipeline ran: no recovery"
    assert "RtFact:acme1" in Place(servers.b, 0, "acme:").stored()
    assert "RtFact:plain1" in Place(servers.b, 0).stored()
    assert "RtFact:acme1" not in Place(servers.b, 0).stored()
