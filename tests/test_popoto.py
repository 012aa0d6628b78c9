"""Real Popoto models on two tenants, on two servers and on two dbs of one server.

Every test installs ``redis_tenancy.popoto`` for itself and uninstalls it afterwards.
Keys are checked with direct clients: what a tenant writes must be on its own
server/db and nowhere else, and nothing one tenant wrote may be read by the other.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import popoto
import popoto.redis_db as popoto_redis_db
import popoto.testing
import pytest
import redis
from popoto.embeddings import AbstractEmbeddingProvider

import redis_tenancy.popoto as rt_popoto
from redis_tenancy import (
    NoActiveTenantError,
    Router,
    copy_tenant_context,
    current_tenant,
    default_router,
    set_REDIS_DB_settings,
    tenant,
)

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


def register_places(layout: str, servers: Servers) -> dict[str, Place]:
    """acme and globex, registered through Popoto's own setter; the default tenant is on a."""
    if layout == "two_servers":
        found = {"acme": Place(servers.b, 0), "globex": Place(servers.c, 0)}
    else:
        found = {"acme": Place(servers.b, 1), "globex": Place(servers.b, 2)}
        for db in (1, 2):
            with direct(servers.b, db) as client:
                client.flushdb()
    for name, place in found.items():
        popoto_redis_db.set_REDIS_DB_settings(name, url=place.url)
    return found


@pytest.fixture(params=["two_servers", "two_dbs"])
def places(request: pytest.FixtureRequest, servers: Servers, installed: None) -> dict[str, Place]:
    """The two tenants on two servers, then on two dbs of one server."""
    return register_places(request.param, servers)


@pytest.fixture
def apart(servers: Servers, installed: None) -> dict[str, Place]:
    """The two tenants on two servers (for what the db layout does not change)."""
    return register_places("two_servers", servers)


def elsewhere(servers: Servers, places: dict[str, Place], mine: str) -> set[str]:
    """Every key on every server and db the test uses, except tenant ``mine``'s place."""
    seen: set[str] = set()
    spots = {(s, 0) for s in (servers.a, servers.b, servers.c)}
    spots |= {(p.server, p.db) for p in places.values()}
    for server, db in spots:
        if (server, db) != (places[mine].server, places[mine].db):
            with direct(server, db) as client:
                seen |= set(client.keys())
    return seen


def assert_isolated(servers: Servers, places: dict[str, Place]) -> None:
    """Both tenants wrote; not one key or value of one is on the other's place.

    The tests mark every record with its tenant's name (in its key, a field or a tag),
    so any key on acme's place that mentions "globex" is a cross-tenant write.
    """
    with direct(servers.a) as client:
        assert client.dbsize() == 0, "nothing may reach the default tenant"
    if places["acme"].server is places["globex"].server:
        with direct(places["acme"].server) as client:
            assert client.dbsize() == 0, "nothing may reach db 0 of the shared server"
    for name, other in (("acme", "globex"), ("globex", "acme")):
        assert mentions(places[name], name), f"{name} wrote nothing"
        assert mentions(places[name], other) == [], f"{other}'s data on {name}'s place"


# -- install / uninstall ------------------------------------------------------------------


def _replaced_names() -> dict[tuple[str, str], object]:
    """Everything install() replaces, as it is now."""
    import popoto.fields.content_field as content_field
    import popoto.fields.embedding_field as embedding_field
    import popoto.models.base
    import popoto.models.query
    import popoto.streams.consumer

    found: dict[tuple[str, str], object] = {}
    for name in (
        "POPOTO_REDIS_DB",
        "_POPOTO_ASYNC_REDIS_DB",
        "get_REDIS_DB",
        "get_async_redis_db",
        "set_REDIS_DB_settings",
        "set_async_redis_db_settings",
        "run_lua",
    ):
        found["popoto.redis_db", name] = getattr(popoto_redis_db, name)
    copies = 0
    for module, name in (
        (popoto.models.base, "get_REDIS_DB"),  # 1.10
        (popoto.models.base, "POPOTO_REDIS_DB"),  # 1.9 copied the client itself
        (popoto.models.base, "run_lua"),
        (popoto.models.query, "get_async_redis_db"),
        (popoto.streams.consumer, "get_async_redis_db"),
        (popoto, "get_async_redis_db"),
        (popoto, "POPOTO_REDIS_DB"),  # 1.9; 1.10 serves it from a module __getattr__
        (popoto.testing, "set_REDIS_DB_settings"),
        (popoto.testing, "get_REDIS_DB"),
        (embedding_field, "_get_embeddings_dir"),
        (embedding_field, "_embedding_cache"),
        (embedding_field, "_listener_threads"),
        (content_field, "get_default_store"),
    ):
        if name in vars(module):
            found[module.__name__, name] = vars(module)[name]
            copies += 1
    assert copies >= 11
    found["ContentField", "store"] = vars(content_field.ContentField)["store"]
    renewer = getattr(sys.modules["popoto.fields.existence_filter"], "BloomLockRenewer", None)
    if renewer is not None:
        found["BloomLockRenewer", "_run"] = vars(renewer)["_run"]
        found["BloomLockRenewer", "__enter__"] = vars(renewer)["__enter__"]
    if POPOTO_1_10:
        found["popoto.batch", "batch"] = vars(sys.modules["popoto.batch"])["batch"]
        found["popoto", "batch"] = vars(popoto)["batch"]
    return found


def test_install_replaces_every_path_and_uninstall_restores_exactly_the_originals() -> None:
    before = _replaced_names()
    rt_popoto.install()
    rt_popoto.install()  # idempotent
    try:
        during = _replaced_names()
        assert rt_popoto.installed_router() is default_router
        for key, original in before.items():
            assert during[key] is not original, key
        # A copy in another module is the very object redis_db holds now.
        assert during["popoto.models.base", "run_lua"] is popoto_redis_db.run_lua
        assert during["popoto.testing", "set_REDIS_DB_settings"] is (
            popoto_redis_db.set_REDIS_DB_settings
        )
        assert isinstance(popoto_redis_db.POPOTO_REDIS_DB, popoto_redis_db.GuardedRedis)
    finally:
        rt_popoto.uninstall()
        rt_popoto.uninstall()  # idempotent
    after = _replaced_names()
    for key, original in before.items():
        assert after[key] is original, key
    assert rt_popoto.installed_router() is None


def test_install_for_a_second_router_is_refused_until_uninstalled(installed: None) -> None:
    other = Router(default_url="redis://127.0.0.1:1/0")
    with pytest.raises(rt_popoto.PopotoIntegrationError, match="uninstall"):
        rt_popoto.install(other)
    assert rt_popoto.installed_router() is default_router
    rt_popoto.uninstall()
    rt_popoto.install(other)
    assert rt_popoto.installed_router() is other


@pytest.mark.parametrize("version", ["1.8.9", "1.11.0", "2.0", "unknown"])
def test_install_refuses_an_unsupported_popoto_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    before = _replaced_names()
    monkeypatch.setattr(rt_popoto, "_installed_version", lambda: version)
    with pytest.raises(rt_popoto.PopotoNotSupportedError, match=r"1\.9\.x and 1\.10\.x"):
        rt_popoto.install()
    assert isinstance(rt_popoto.PopotoNotSupportedError("x"), ImportError)
    assert rt_popoto.installed_router() is None
    assert _replaced_names() == before


@pytest.mark.parametrize("version", ["1.9.0", "1.9.7", "1.10.1", "1.10.12rc1"])
def test_check_version_accepts_the_supported_range(version: str) -> None:
    assert rt_popoto.check_version(version) in {(1, 9), (1, 10)}


def test_install_and_uninstall_from_many_threads_leave_a_consistent_state() -> None:
    before = _replaced_names()
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def churn() -> None:
        barrier.wait()
        try:
            for _ in range(5):
                rt_popoto.install()
                rt_popoto.uninstall()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _replaced_names() == before


def test_install_warns_about_a_module_that_copied_popotos_client_before(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import types

    stale = types.ModuleType("app_models_stale")
    stale.POPOTO_REDIS_DB = popoto_redis_db.POPOTO_REDIS_DB  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "app_models_stale", stale)
    with caplog.at_level("WARNING", logger="POPOTO-REDIS_DB"):
        rt_popoto.install()
        rt_popoto.uninstall()
    assert "app_models_stale.POPOTO_REDIS_DB" in caplog.text


def test_install_before_popoto_is_imported_patches_it_as_it_loads(servers: Servers) -> None:
    from .conftest import run_python

    done = run_python(
        f"""
        import sys
        import redis
        import redis_tenancy.popoto
        from redis_tenancy import set_REDIS_DB_settings, tenant

        redis_tenancy.popoto.install()
        assert "popoto" not in sys.modules
        import popoto
        import popoto.models.base as base
        from popoto import redis_db

        assert base.run_lua is redis_db.run_lua
        assert redis_db.get_REDIS_DB.__self__.router is redis_tenancy.default_router

        class Late(popoto.Model):
            name = popoto.KeyField()

        set_REDIS_DB_settings("late", url="{servers.b.url}")
        with tenant("late"):
            Late.create(name="x")
        assert redis.Redis.from_url("{servers.b.url}").exists("Late:x")

        redis_tenancy.popoto.uninstall()
        assert base.run_lua is redis_db.run_lua
        assert redis_db.get_REDIS_DB.__module__ == "popoto.redis_db"
        assert redis_db.run_lua.__module__ == "popoto.redis_db"
        assert not any(type(f).__name__ == "PostImportHook" for f in sys.meta_path)
        print("ok")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# -- models, sync and async -----------------------------------------------------------------


def test_models_create_get_filter_delete_stay_on_their_tenant(
    servers: Servers, places: dict[str, Place]
) -> None:
    for name in ("acme", "globex"):
        with tenant(name):
            RtCustomer.create(name="Ada", tier=name)
            RtCustomer.create(name=f"only{name}", tier=name)
    for name, tier in (("acme", "acme"), ("globex", "globex")):
        with tenant(name):
            ada = RtCustomer.query.get(name="Ada")
            assert ada is not None
            assert ada.tier == tier
            assert {c.name for c in RtCustomer.query.all()} == {"Ada", f"only{name}"}
            other = "globex" if name == "acme" else "acme"
            assert RtCustomer.query.get(name=f"only{other}") is None
            assert RtCustomer.query.count() == 2
    assert "RtCustomer:onlyacme" in places["acme"].stored()
    assert "RtCustomer:onlyacme" not in elsewhere(servers, places, "acme")
    assert "RtCustomer:onlyglobex" not in elsewhere(servers, places, "globex")
    assert_isolated(servers, places)
    with tenant("acme"):
        RtCustomer.query.get(name="Ada").delete()
    assert "RtCustomer:Ada" not in places["acme"].stored()
    assert "RtCustomer:Ada" in places["globex"].stored()


async def test_async_queries_follow_the_active_task_tenant(
    servers: Servers, places: dict[str, Place]
) -> None:
    acme, globex = await asyncio.gather(async_queries("acme", 6), async_queries("globex", 4))
    assert acme == sorted(f"acme{i}" for i in range(6))
    assert globex == sorted(f"globex{i}" for i in range(4))
    assert_isolated(servers, places)


async def test_popotos_async_cache_reset_is_rebuilt_as_the_routing_proxy(
    apart: dict[str, Place],
) -> None:
    popoto_redis_db._POPOTO_ASYNC_REDIS_DB = None  # as StreamConsumer and the plugin do
    async with tenant("globex"):
        await popoto_redis_db.get_async_redis_db()
        cached = popoto_redis_db._POPOTO_ASYNC_REDIS_DB
        assert isinstance(cached, popoto_redis_db.GuardedAsyncRedis)
        await cached.set("via-cache", "globex")
    async with tenant("acme"):
        assert await cached.get("via-cache") is None  # resolves per tenant, not cached
    assert "via-cache" in apart["globex"].stored()


def test_threads_and_tasks_interleaved_never_cross(
    servers: Servers, places: dict[str, Place]
) -> None:
    assert interleaved_workload(("acme", "globex")) == []
    for name in ("acme", "globex"):
        assert workload_keys(name) <= places[name].stored()
    assert_isolated(servers, places)


def test_a_thread_pool_task_needs_the_tenant_context_copied(apart: dict[str, Place]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def create() -> str:
        RtCustomer.create(name="pooled")
        return current_tenant()

    with ThreadPoolExecutor(1) as pool, tenant("globex"):
        assert pool.submit(copy_tenant_context(create)).result() == "globex"
    assert "RtCustomer:pooled" in apart["globex"].stored()


# -- Lua ----------------------------------------------------------------------------------


def test_lua_backed_fields_work_per_tenant_and_load_scripts_on_each_server(
    servers: Servers, places: dict[str, Place]
) -> None:
    for name in ("acme", "globex"):
        with tenant(name):
            lua_roundtrip(name)
    scripts = rt_popoto._installation.scripts  # type: ignore[union-attr]
    for name, place in places.items():
        with tenant(name):
            endpoint = default_router.status().active
        assert endpoint is not None
        assert endpoint.endswith(f":{place.server.port}/{place.db}")
        shas = [sha for sha in _known_shas(scripts) if scripts.loaded(endpoint, sha)]
        assert shas, f"no script recorded as loaded on {name}'s endpoint"
        with place.client() as client:
            assert all(client.script_exists(*shas))
    assert_isolated(servers, places)


def _known_shas(scripts: Any) -> list[str]:
    return list(scripts.shas())


def test_pipeline_lua_on_a_second_server_loads_the_script_there_first(
    places: dict[str, Place],
) -> None:
    # Popoto's own process-wide _LOADED_SHAS sends a bare EVALSHA to globex here.
    for place in places.values():
        with place.client() as client:
            client.config_resetstat()
    with tenant("acme"):
        RtFact.create(name="warm", topic="x", tags=["a"])
    with tenant("globex"):
        pipe = popoto_redis_db.get_REDIS_DB().pipeline()
        RtFact.create(name="cold", topic="y", tags=["b"], pipeline=pipe)
        pipe.execute()
        assert RtFact.query.get(name="cold") is not None
        assert RtFact.bloom.might_exist(RtFact, "y")
    assert evals(places["globex"]) == 0, "the pipeline needed no recovery: loaded first"


@pytest.mark.parametrize("opener", ["pipeline", "batch"])
def test_pipeline_recovers_when_its_server_forgot_the_scripts(
    apart: dict[str, Place], opener: str
) -> None:
    if opener == "batch" and not POPOTO_1_10:
        pytest.skip("popoto.batch() is new in Popoto 1.10")
    with tenant("acme"):
        RtFact.create(name="warm", topic="x", tags=["a"])  # loads and records the scripts
        with apart["acme"].client() as client:
            client.script_flush()  # a restart or SCRIPT FLUSH: the cache is now wrong
            client.config_resetstat()
        pipe = popoto.batch() if opener == "batch" else popoto_redis_db.POPOTO_REDIS_DB.pipeline()
        assert isinstance(pipe, popoto_redis_db.GuardedPipeline)
        if opener == "batch":
            assert isinstance(pipe, sys.modules["popoto.batch"].Batch)
        RtFact.create(name="afterflush", topic="z", tags=["a"], pipeline=pipe)
        results = pipe.execute()
        assert not any(isinstance(r, Exception) for r in results)
        assert evals(apart["acme"]) >= 1, "recovered by re-running the script body"
        assert RtFact.query.get(name="afterflush") is not None
        assert RtFact.bloom.might_exist(RtFact, "z") is True
        assert {f.name for f in RtFact.query.filter(tags__contains="a")} == {"warm", "afterflush"}


def test_recovered_pipeline_still_reports_other_errors(apart: dict[str, Place]) -> None:
    with tenant("acme"):
        client = popoto_redis_db.get_REDIS_DB()
        client.set("plain", "x")
        pipe = client.pipeline()
        popoto_redis_db.run_lua(pipe, "return redis.call('INCR', KEYS[1])", 1, "counter")
        with apart["acme"].client() as direct_client:
            direct_client.script_flush()
        pipe.incr("plain")  # WRONGTYPE-ish: not an integer
        with pytest.raises(redis.ResponseError, match="not an integer"):
            pipe.execute()
        assert client.get("counter") == b"1"  # the script was re-run once, as EVAL


def test_bloom_rebuild_lock_renewer_thread_runs_under_the_rebuilding_tenant(
    apart: dict[str, Place], monkeypatch: pytest.MonkeyPatch
) -> None:
    existence_filter = sys.modules["popoto.fields.existence_filter"]
    if not hasattr(existence_filter, "BloomLockRenewer"):
        pytest.skip("Popoto 1.9 starts no renewal thread")
    renewer_class = existence_filter.BloomLockRenewer
    monkeypatch.setattr(renewer_class, "interval_s", staticmethod(lambda: 0.01))
    renewed_as: list[str] = []

    class Lock:
        def _renew_v2_rebuild(self, model_class: Any, token: str) -> bool:
            renewed_as.append(current_tenant())
            return True

        def _rebuild_lock_key(self, model_class: Any) -> str:
            return "lock"

    with tenant("globex"), renewer_class(RtFact, [(Lock(), "token")]):
        wait_until(lambda: bool(renewed_as), what="a renewal")
    assert set(renewed_as) == {"globex"}


# -- guard, pool swaps, setters --------------------------------------------------------------


def test_flush_guard_still_refuses_db0_through_every_client(places: dict[str, Place]) -> None:
    refused = popoto_redis_db.Db0FlushRefusedError
    with tenant("acme"):
        on_db0 = places["acme"].db == 0
        client = popoto_redis_db.get_REDIS_DB()
        if on_db0:
            with pytest.raises(refused):
                client.flushdb()
            with pytest.raises(refused):
                popoto_redis_db.POPOTO_REDIS_DB.flushdb()
            pipe = client.pipeline()
            with pytest.raises(refused):
                pipe.flushdb()
        else:
            RtCustomer.create(name="gone")
            client.flushdb()  # allowed on a db other than 0
            assert "RtCustomer:gone" not in places["acme"].stored()
        with pytest.raises(refused):
            client.flushall()
        if POPOTO_1_10:
            with pytest.raises(refused):
                popoto.batch().flushall()

        async def async_flush() -> None:
            aclient = await popoto_redis_db.get_async_redis_db()
            with pytest.raises(refused):
                await aclient.flushall()

        asyncio.run(async_flush())


def test_in_place_pool_swaps_are_refused_and_change_nothing(apart: dict[str, Place]) -> None:
    import popoto.pytest_plugin

    with tenant("acme"):
        before = popoto_redis_db.get_REDIS_DB()
        pool = before.connection_pool
        with pytest.raises(rt_popoto.PoolSwapRefusedError, match="tenant 'acme'"):
            popoto.pytest_plugin._swap_db(7)
        with pytest.raises(rt_popoto.PoolSwapRefusedError):
            before.connection_pool = redis.ConnectionPool()
        # Re-asserting the db the tenant already uses (the plugin does, per test) is fine.
        popoto.pytest_plugin._swap_db(apart["acme"].db)
        if POPOTO_1_10:
            from popoto.integrations.config import MemoryConfig, bind_connection

            other = apart["globex"].url.rsplit("/", 1)[0] + "/9"
            with pytest.raises(rt_popoto.PoolSwapRefusedError):
                bind_connection(MemoryConfig(url=other, url_is_explicit=True))
        assert popoto_redis_db.get_REDIS_DB() is before
        assert before.connection_pool is pool
        RtCustomer.create(name="stillhere")
    assert "RtCustomer:stillhere" in apart["acme"].stored()


async def test_popotos_setters_register_tenants_in_the_router(servers: Servers) -> None:
    rt_popoto.install()
    try:
        popoto_redis_db.set_REDIS_DB_settings("initech", url=servers.c.url)
        assert default_router.settings("initech").endpoint == f"redis://{servers.c.address}/0"
        popoto.testing.use_test_db(3)  # Popoto's helper: the default tenant, db 3
        assert default_router.settings("").endpoint.endswith("/3")
        await popoto_redis_db.set_async_redis_db_settings("initech", url=servers.b.url)
        async with tenant("initech"):
            client = await popoto_redis_db.get_async_redis_db()
            await client.set("async-side", 1)
        with tenant("initech"):
            popoto_redis_db.get_REDIS_DB().set("sync-side", 1)
    finally:
        rt_popoto.uninstall()
    with direct(servers.b) as b, direct(servers.c) as c:
        assert b.exists("async-side")
        assert not c.exists("async-side")
        assert c.exists("sync-side")
        assert not b.exists("sync-side")


def test_proxy_is_a_guarded_client_and_its_repr_hides_the_password(
    servers: Servers, installed: None
) -> None:
    set_REDIS_DB_settings("secret", url=servers.auth.url)
    proxy = popoto_redis_db.POPOTO_REDIS_DB
    assert isinstance(proxy, popoto_redis_db.GuardedRedis)
    with tenant("secret"):
        assert SECRET not in repr(proxy)
        assert "secret" in repr(proxy)
        assert proxy.ping()
        assert isinstance(popoto.get_redis(), popoto_redis_db.GuardedRedis)


def test_strict_router_refuses_models_outside_a_tenant(servers: Servers) -> None:
    strict = Router(require_tenant=True, default_url=servers.a.url)
    strict.register("acme", url=servers.b.url)
    rt_popoto.install(strict)
    try:
        with pytest.raises(NoActiveTenantError):
            RtCustomer.create(name="nobody")
        with strict.tenant("acme"):
            RtCustomer.create(name="somebody")
        assert repr(popoto_redis_db.POPOTO_REDIS_DB).endswith("(unresolvable)>")
    finally:
        rt_popoto.uninstall()
        strict.close()
    with direct(servers.b) as client:
        assert client.exists("RtCustomer:somebody")


def test_cluster_tenant_gets_a_clear_error_before_popoto_runs(installed: None) -> None:
    from .topologies import start_cluster

    cluster = start_cluster(1)
    try:
        set_REDIS_DB_settings("clustered", url=cluster.url())
        with tenant("clustered"):
            with pytest.raises(rt_popoto.ClusterTenantError, match="tenant 'clustered'"):
                RtCustomer.create(name="x")
            with pytest.raises(TypeError, match="Cluster"):
                popoto_redis_db.get_REDIS_DB()

            async def async_side() -> None:
                with pytest.raises(rt_popoto.ClusterTenantError):
                    await popoto_redis_db.get_async_redis_db()

            asyncio.run(async_side())
    finally:
        cluster.stop()


# -- pub/sub and streams -------------------------------------------------------------------


def test_subscriber_listens_on_its_tenant_and_publish_routes_per_call(
    places: dict[str, Place],
) -> None:
    shared_server = places["acme"].server is places["globex"].server
    with tenant("acme"):
        subscriber = RtSubscriber()  # binds pubsub() to acme at construction
    try:
        publisher = RtPublisher()
        with tenant("globex"):
            # Redis channels ignore the db: on one server globex reaches acme's
            # subscriber (docs/POPOTO.md); on its own server nobody hears it.
            heard = publisher.publish({"from": "globex"}, channel_name="rt-news")
            assert heard == int(shared_server)
        with tenant("acme"):
            assert publisher.publish({"from": "acme"}, channel_name="rt-news") == 1

        def poll() -> bool:
            subscriber()
            return bool(subscriber.received) and subscriber.received[-1] == {"from": "acme"}

        wait_until(poll, what="acme's message")
        expected = [{"from": "globex"}] if shared_server else []
        assert subscriber.received == [*expected, {"from": "acme"}]
    finally:
        subscriber.pubsub.close()


def test_pubsub_thread_handlers_run_under_the_tenant_that_subscribed(
    apart: dict[str, Place],
) -> None:
    seen: list[str] = []
    with tenant("acme"):
        pubsub = popoto_redis_db.POPOTO_REDIS_DB.pubsub()
        pubsub.subscribe(**{"rt-thread": lambda message: seen.append(current_tenant())})
        worker = pubsub.run_in_thread(sleep_time=0.01, daemon=True)
    try:
        with tenant("acme"):
            wait_until(lambda: popoto_redis_db.get_REDIS_DB().publish("rt-thread", "x") == 1)
        wait_until(lambda: bool(seen), what="the handler to run")
        assert seen[0] == "acme"
    finally:
        worker.stop()
        worker.join(timeout=5)


def test_event_streams_and_stream_consumers_stay_on_their_tenant(
    places: dict[str, Place],
) -> None:
    for name in ("acme", "globex"):
        with tenant(name):
            for i in range(3 if name == "acme" else 2):
                RtEvent.create(name=f"{name}{i}")
    for name, count in (("acme", 3), ("globex", 2)):
        with places[name].client() as client:
            entries = client.xrange("stream:rt_events")
        assert len(entries) == count
        assert all(fields["pk"].startswith(f"RtEvent:{name}") for _, fields in entries)

    handled: dict[str, list[str]] = {"acme": [], "globex": []}
    with tenant("globex"):
        assert consume_events("globex", handled) == 2
    with tenant("acme"):
        assert consume_events("acme", handled) == 3
    assert sorted(handled["globex"]) == ["RtEvent:globex0", "RtEvent:globex1"]
    assert all(pk.startswith("RtEvent:acme") for pk in handled["acme"])


# -- state outside Redis ---------------------------------------------------------------------


def test_content_field_files_are_split_by_tenant(
    apart: dict[str, Place], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import popoto.fields.content_field as content_field

    monkeypatch.setenv("POPOTO_CONTENT_PATH", str(tmp_path))
    monkeypatch.setattr(content_field, "_default_content_store", None)

    class RtDoc(popoto.Model):
        name = popoto.KeyField()
        body = popoto.ContentField()

    for name in ("acme", "globex"):
        with tenant(name):
            RtDoc.create(name="readme", body=f"{name}'s secret plan")
    for name in ("acme", "globex"):
        with tenant(name):
            assert RtDoc.query.get(name="readme").body == f"{name}'s secret plan"
    assert (tmp_path / ".tenants" / "t_acme" / "RtDoc" / "readme.txt").read_text() == (
        "acme's secret plan"
    )
    assert (tmp_path / ".tenants" / "t_globex" / "RtDoc" / "readme.txt").exists()
    assert not (tmp_path / "RtDoc").exists(), "the default tenant wrote nothing"
    with tenant("globex"):  # Popoto's accessor too, for code that asks it directly
        assert content_field.get_default_store().base_path == str(
            tmp_path / ".tenants" / "t_globex"
        )
    assert content_field.get_default_store().base_path == str(tmp_path)


def test_content_field_with_its_own_store_is_refused_for_a_second_tenant(
    apart: dict[str, Place],
) -> None:
    class MemoryStore:
        def __init__(self) -> None:
            self.files: dict[str, bytes] = {}

        def save(self, content: bytes, key: str, model_class_name: str) -> str:
            self.files[key] = content
            return f"$CF:x:{model_class_name}/{key}"

        def load(self, reference: str) -> bytes:
            return self.files[reference.rsplit("/", 1)[1]]

    class RtNote(popoto.Model):
        name = popoto.KeyField()
        body = popoto.ContentField(store=MemoryStore())

    with tenant("acme"):
        RtNote.create(name="n", body="acme")
        RtNote.create(name="m", body="acme again")  # the same tenant may keep using it
    with tenant("globex"), pytest.raises(rt_popoto.SharedStateError, match="tenant 'acme'"):
        RtNote.create(name="n", body="globex")
    assert "RtNote:n" not in apart["globex"].stored()


class FakeEmbeddings(AbstractEmbeddingProvider):
    """A deterministic embedding provider: one dimension per known word."""

    WORDS = ("alpha", "beta", "gamma", "delta")

    def embed(self, texts: list[str], input_type: str | None = None) -> list[list[float]]:
        return [[float(w in text) + 0.01 for w in self.WORDS] for text in texts]

    @property
    def dimensions(self) -> int:
        return len(self.WORDS)

    @property
    def max_batch_size(self) -> int:
        return 8


def test_embedding_files_cache_and_listeners_are_per_tenant(
    places: dict[str, Place], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("numpy")
    import popoto.fields.embedding_field as embedding_field

    monkeypatch.setenv("POPOTO_CONTENT_PATH", str(tmp_path))
    monkeypatch.setattr(embedding_field, "_INVALIDATION_MODE", "pubsub")

    class RtMemory(popoto.Model):
        name = popoto.KeyField()
        text = popoto.Field(type=str)
        embedding = popoto.EmbeddingField(source="text", provider=FakeEmbeddings())

    for name, text in (("acme", "alpha beta"), ("globex", "gamma delta")):
        with tenant(name):
            RtMemory.create(name="m1", text=text)
    try:
        for name in ("acme", "globex"):
            with tenant(name):
                matrix, keys = popoto.EmbeddingField.load_embeddings(RtMemory)
                assert keys == ["RtMemory:m1"]
                assert bool(matrix[0][0] > 0.5) == (name == "acme")  # its own vector
        acme_dir = tmp_path / ".tenants" / "t_acme" / ".embeddings" / "RtMemory"
        assert len(list(acme_dir.glob("*.npy"))) == 1
        assert not (tmp_path / ".embeddings").exists(), "the default tenant wrote nothing"
        cache = embedding_field._embedding_cache
        with tenant("acme"):
            assert "RtMemory" in cache
        listeners = embedding_field._listener_threads
        assert set(listeners.tenants()) >= {"acme", "globex"}
        # Another worker process saved to acme: only acme's cache is dropped, by the
        # listener thread subscribed on acme's server.
        with places["acme"].client() as client:
            wait_until(
                lambda: (
                    client.publish("popoto:embedding:invalidate:RtMemory", "RtMemory:peer") >= 1
                ),
                what="acme's invalidation listener to subscribe",
            )
        with tenant("acme"):
            wait_until(lambda: "RtMemory" not in cache, what="acme's cache to be invalidated")
        if places["acme"].server is not places["globex"].server:
            # (On one server globex's listener hears it too: channels ignore the db.)
            with tenant("globex"):
                assert "RtMemory" in cache
        threads = listeners.values()
        assert threads
        assert all(thread.is_alive() for thread in threads)
    finally:
        rt_popoto.uninstall()  # stops every tenant's listener thread
    assert not any(thread.is_alive() for thread in threads)
    assert not isinstance(embedding_field._listener_threads, type(listeners))


def test_tenant_dirname_is_safe_and_injective() -> None:
    from redis_tenancy.popoto._state import tenant_dirname

    names = ["..", ".", "a/b", "a%2Fb", "ü", "", "acme"]
    dirs = [tenant_dirname(n) for n in names]
    assert len(set(dirs)) == len(dirs)
    assert all(os.sep not in d and d not in {".", ".."} for d in dirs)


def test_example_app_runs_against_two_servers(servers: Servers) -> None:
    example = Path(__file__).parent.parent / "examples" / "popoto_app.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS", "ENV"))}
    env.update(ACME_REDIS_URL=servers.b.url, GLOBEX_REDIS_URL=servers.c.url)
    done = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: every tenant saw only its own customers" in done.stdout
