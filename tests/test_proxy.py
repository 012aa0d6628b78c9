"""POPOTO_REDIS_DB and POPOTO_ASYNC_REDIS_DB: proxies that are never stale."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any
from unittest import mock

import pytest
import redis
import redis.asyncio

from redis_tenancy import NoActiveTenantError, NoEventLoopError, Router

# Taken at import, before any test registers or replaces anything: the reference's
# bind-at-import bug would leave these pointing at the import-time connection.
from redis_tenancy.redis_db import (
    POPOTO_ASYNC_REDIS_DB,
    POPOTO_REDIS_DB,
    get_async_redis_db,
    get_REDIS_DB,
    set_REDIS_DB_settings,
    tenant,
)

from .conftest import SECRET, Servers, direct, server_port


def test_proxy_imported_before_registration_reaches_new_connection(servers: Servers) -> None:
    set_REDIS_DB_settings(url=servers.b.url)
    POPOTO_REDIS_DB.set("where", "b")
    set_REDIS_DB_settings("late", url=servers.c.url)
    with tenant("late"):
        POPOTO_REDIS_DB.set("where", "c")
    with direct(servers.b) as b, direct(servers.c) as c:
        assert (b.get("where"), c.get("where")) == ("b", "c")


def test_proxy_is_a_redis_client_and_get_redis_db_is_concrete(servers: Servers) -> None:
    assert isinstance(POPOTO_REDIS_DB, redis.Redis)
    assert isinstance(POPOTO_ASYNC_REDIS_DB, redis.asyncio.Redis)
    concrete = get_REDIS_DB()
    assert type(concrete) is redis.Redis
    assert concrete is get_REDIS_DB()
    assert POPOTO_REDIS_DB.connection_pool is concrete.connection_pool


def test_proxy_repr_names_tenant_and_redacts_endpoint(servers: Servers) -> None:
    set_REDIS_DB_settings("acme", url=servers.auth.url)
    with tenant("acme"):
        text = repr(POPOTO_REDIS_DB)
    assert "tenant='acme'" in text
    assert f"127.0.0.1:{servers.auth.port}" in text
    assert SECRET not in text
    assert "***" in text
    assert "tenant=" in repr(POPOTO_ASYNC_REDIS_DB)
    strict = Router(require_tenant=True, default_url=servers.a.url)
    assert "no active tenant" in repr(strict.redis)
    assert "no active tenant" in str(strict.async_redis)


def test_attribute_writes_and_deletes_go_to_active_client(servers: Servers) -> None:
    set_REDIS_DB_settings("acme", url=servers.a.url)
    with tenant("acme"):
        POPOTO_REDIS_DB.custom_marker = 42  # type: ignore[attr-defined]
        assert get_REDIS_DB().custom_marker == 42  # type: ignore[attr-defined]
        del POPOTO_REDIS_DB.custom_marker  # type: ignore[attr-defined]
        assert not hasattr(get_REDIS_DB(), "custom_marker")
    assert not hasattr(get_REDIS_DB(), "custom_marker")


def test_mock_patch_object_on_proxy_patches_active_client(servers: Servers) -> None:
    with mock.patch.object(POPOTO_REDIS_DB, "hset", return_value=7) as patched:
        assert POPOTO_REDIS_DB.hset("h", "f", "v") == 7
        assert get_REDIS_DB().hset("h", "f", "v") == 7
    assert patched.call_count == 2
    assert POPOTO_REDIS_DB.hset("h", "f", "v") == 1
    with direct(servers.a) as a:
        assert a.hget("h", "f") == "v"


def test_connection_pool_swap_through_proxy(servers: Servers) -> None:
    pool = redis.ConnectionPool(host=servers.b.host, port=servers.b.port)
    original = get_REDIS_DB().connection_pool
    try:
        POPOTO_REDIS_DB.connection_pool = pool
        POPOTO_REDIS_DB.set("swapped", 1)
    finally:
        POPOTO_REDIS_DB.connection_pool = original
        pool.disconnect()
    with direct(servers.b) as b, direct(servers.a) as a:
        assert (b.get("swapped"), a.get("swapped")) == ("1", None)


def test_patch_on_concrete_client_is_seen_at_once(servers: Servers) -> None:
    assert POPOTO_REDIS_DB.get("nothing") is None
    with mock.patch.object(get_REDIS_DB(), "get", return_value=b"patched"):
        assert POPOTO_REDIS_DB.get("nothing") == b"patched"
    assert POPOTO_REDIS_DB.get("nothing") is None


def test_replacing_tenant_inside_open_block_is_seen_on_next_access(servers: Servers) -> None:
    set_REDIS_DB_settings("acme", url=servers.a.url)
    with tenant("acme"):
        POPOTO_REDIS_DB.set("k", "before")
        set_REDIS_DB_settings("acme", url=servers.b.url)
        POPOTO_REDIS_DB.set("k", "after")
        assert server_port(get_REDIS_DB()) == servers.b.port
    with direct(servers.a) as a, direct(servers.b) as b:
        assert (a.get("k"), b.get("k")) == ("before", "after")


@pytest.mark.parametrize("factory", ["pipeline", "pubsub", "lock", "register_script"])
def test_created_objects_stay_bound_to_their_tenant(servers: Servers, factory: str) -> None:
    set_REDIS_DB_settings("acme", url=servers.a.url)
    set_REDIS_DB_settings("globex", url=servers.b.url)
    obj: Any
    with tenant("acme"):
        if factory == "pipeline":
            obj = POPOTO_REDIS_DB.pipeline()
            assert type(obj) is redis.client.Pipeline
            obj.set("made", "acme")
        elif factory == "pubsub":
            obj = POPOTO_REDIS_DB.pubsub()  # type: ignore[no-untyped-call]
            assert type(obj) is redis.client.PubSub
        elif factory == "lock":
            obj = POPOTO_REDIS_DB.lock("made", timeout=10)
            assert isinstance(obj, redis.lock.Lock)
        else:
            obj = POPOTO_REDIS_DB.register_script("return redis.call('SET', KEYS[1], ARGV[1])")
            assert isinstance(obj, redis.commands.core.Script)
    with tenant("globex"):
        if factory == "pipeline":
            obj.execute()
        elif factory == "pubsub":
            obj.subscribe("chan")
            obj.get_message(timeout=1.0)
            POPOTO_REDIS_DB.publish("chan", "to-globex")
            with direct(servers.a) as a:
                assert a.publish("chan", "to-acme") == 1
            message = obj.get_message(timeout=2.0)
            assert message is not None
            assert message["data"] == b"to-acme"
            obj.close()
        elif factory == "lock":
            assert obj.acquire(blocking=False)
        else:
            obj(keys=["made"], args=["acme"])
    if factory == "pubsub":
        return
    with direct(servers.a) as a, direct(servers.b) as b:
        assert a.exists("made") == 1
        assert b.exists("made") == 0


async def test_async_pipeline_bound_to_creating_tenant(servers: Servers) -> None:
    set_REDIS_DB_settings("acme", url=servers.a.url)
    set_REDIS_DB_settings("globex", url=servers.b.url)
    async with tenant("acme"):
        pipe = POPOTO_ASYNC_REDIS_DB.pipeline()
        pipe.set("apipe", "acme")
    async with tenant("globex"):
        await pipe.execute()
    with direct(servers.a) as a, direct(servers.b) as b:
        assert (a.get("apipe"), b.get("apipe")) == ("acme", None)


def test_unresolvable_proxy_gives_attribute_error_for_dunders(servers: Servers) -> None:
    strict = Router(require_tenant=True, default_url=servers.a.url)
    assert isinstance(strict.redis, redis.Redis)
    assert isinstance(POPOTO_ASYNC_REDIS_DB, redis.asyncio.Redis)
    for proxy in (strict.redis, POPOTO_ASYNC_REDIS_DB):  # strict; async with no loop
        for dunder in ("__test__", "__wrapped__", "__class_getitem__x__"):
            with pytest.raises(AttributeError) as info:
                getattr(proxy, dunder)
            assert not isinstance(info.value, LookupError)
        assert not hasattr(proxy, "__wrapped__")
        assert inspect.unwrap(proxy) is proxy  # type: ignore[arg-type]
    with pytest.raises(NoActiveTenantError):
        strict.redis.get("x")
    with pytest.raises(NoEventLoopError):
        POPOTO_ASYNC_REDIS_DB.get  # noqa: B018


def test_strict_router_works_inside_tenant_block(servers: Servers) -> None:
    strict = Router(require_tenant=True, default_url=servers.a.url)
    strict.register("acme", url=servers.b.url)
    with strict.tenant("acme"):
        strict.redis.set("strict", 1)
    with strict.tenant(""):
        strict.redis.set("strict-default", 1)
    with pytest.raises(NoActiveTenantError):
        strict.current()
    with direct(servers.b) as b, direct(servers.a) as a:
        assert (b.get("strict"), a.get("strict-default")) == ("1", "1")
    strict.close()


def test_dir_lists_client_methods() -> None:
    names = dir(POPOTO_REDIS_DB)
    assert "get" in names
    assert "pipeline" in names


async def test_async_proxy_follows_loop_and_tenant(servers: Servers) -> None:
    set_REDIS_DB_settings("acme", url=servers.b.url)
    async with tenant("acme"):
        first = POPOTO_ASYNC_REDIS_DB.connection_pool
        assert first is POPOTO_ASYNC_REDIS_DB.connection_pool
        assert server_port(POPOTO_ASYNC_REDIS_DB) == servers.b.port

    def other_loop() -> object:
        async def inner() -> object:
            async with tenant("acme"):
                return POPOTO_ASYNC_REDIS_DB.connection_pool

        return asyncio.run(inner())

    assert await asyncio.to_thread(other_loop) is not first


async def test_dir_lists_the_active_tenants_own_attributes(servers: Servers) -> None:
    """``dir(proxy)`` is the active client's ``dir()``, not the client class's."""
    set_REDIS_DB_settings("acme", url=servers.a.url)
    set_REDIS_DB_settings("globex", url=servers.b.url)
    with tenant("acme"):
        get_REDIS_DB().only_on_acme = 1  # type: ignore[attr-defined]
        (await get_async_redis_db()).only_on_async_acme = 1  # type: ignore[attr-defined]
    with tenant("globex"):
        get_REDIS_DB().only_on_globex = 1  # type: ignore[attr-defined]
        listed = dir(POPOTO_REDIS_DB)
        assert "only_on_globex" in listed
        assert "only_on_acme" not in listed
        assert "only_on_async_acme" not in dir(POPOTO_ASYNC_REDIS_DB)
    with tenant("acme"):
        assert "only_on_acme" in dir(POPOTO_REDIS_DB)
        assert "only_on_globex" not in dir(POPOTO_REDIS_DB)
        assert "only_on_async_acme" in dir(POPOTO_ASYNC_REDIS_DB)
