"""tenant(): context manager, async context manager and decorator over a ContextVar."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from redis_tenancy import (
    InvalidTenantNameError,
    TenantConfigError,
    UnknownTenantError,
    _context,
    copy_tenant_context,
    current_tenant,
    default_router,
)
from redis_tenancy.redis_db import POPOTO_REDIS_DB, set_REDIS_DB_settings, tenant

from .conftest import Servers, direct


@pytest.fixture
def three(servers: Servers) -> Servers:
    set_REDIS_DB_settings("acme", url=servers.a.url)
    set_REDIS_DB_settings("globex", url=servers.b.url)
    set_REDIS_DB_settings("initech", url=servers.c.url)
    return servers


def test_nesting_restores_previous_tenant_even_on_exceptions(three: Servers) -> None:
    default = default_router.default_name
    assert current_tenant() == default
    with tenant("acme"):
        assert current_tenant() == "acme"
        seen: list[str] = []

        def fail_inside() -> None:
            with tenant("globex"):
                seen.append(current_tenant())
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            fail_inside()
        assert seen == ["globex"]
        assert current_tenant() == "acme"
        block = tenant("initech")
        with block:
            with block:  # one instance re-entered
                assert current_tenant() == "initech"
            assert current_tenant() == "initech"
        assert current_tenant() == "acme"
    assert current_tenant() == default


def test_unknown_tenant_raises_on_enter_not_on_construction(three: Servers) -> None:
    block = tenant("nobody")
    with pytest.raises(UnknownTenantError, match="'nobody'"):
        block.__enter__()
    assert current_tenant() == default_router.default_name


def test_decorator_applied_before_registration(servers: Servers) -> None:
    @tenant("later")
    def work() -> str:
        POPOTO_REDIS_DB.set("decorated", "yes")
        return current_tenant()

    with pytest.raises(UnknownTenantError):
        work()
    set_REDIS_DB_settings("later", url=servers.c.url)
    assert work() == "later"
    assert work.__name__ == "work"
    with direct(servers.c) as c:
        assert c.get("decorated") == "yes"


async def test_async_decorator_and_async_with(three: Servers) -> None:
    @tenant("globex")
    async def job() -> str:
        await asyncio.sleep(0)
        return current_tenant()

    assert await job() == "globex"
    async with tenant("acme"):
        assert current_tenant() == "acme"
        assert await job() == "globex"
        assert current_tenant() == "acme"
    assert current_tenant() == default_router.default_name


def test_decorated_function_is_safe_across_threads(three: Servers) -> None:
    seen: list[str] = []
    lock = threading.Lock()

    @tenant("initech")
    def work() -> None:
        with lock:
            seen.append(current_tenant())

    with ThreadPoolExecutor(8) as pool:
        for _ in range(200):
            pool.submit(work)
    assert seen == ["initech"] * 200


def test_threads_have_their_own_tenant(three: Servers) -> None:
    barrier = threading.Barrier(3)
    results: dict[str, str] = {}

    def run(name: str) -> None:
        with tenant(name):
            barrier.wait(timeout=10)
            results[name] = current_tenant()
            barrier.wait(timeout=10)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("acme", "globex", "initech")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {"acme": "acme", "globex": "globex", "initech": "initech"}


async def test_tasks_inherit_creators_tenant_at_creation(three: Servers) -> None:
    started = asyncio.Event()

    async def child() -> str:
        await started.wait()
        return current_tenant()

    with tenant("acme"):
        task = asyncio.create_task(child())
    with tenant("globex"):
        started.set()
        assert await task == "acme"
        assert current_tenant() == "globex"


def test_thread_pool_does_not_carry_tenant_without_helper(three: Servers) -> None:
    with ThreadPoolExecutor(2) as pool, tenant("acme"):
        plain = pool.submit(current_tenant).result()
        carried = pool.submit(copy_tenant_context(current_tenant)).result()
        futures = [pool.submit(copy_tenant_context(current_tenant)) for _ in range(20)]
    assert plain == default_router.default_name
    assert carried == "acme"
    assert {f.result() for f in futures} == {"acme"}


@pytest.mark.parametrize("bad", [3, b"acme", ["acme"], 1.5, object()])
def test_non_string_names_are_rejected(bad: object) -> None:
    before = default_router.names()

    def enter() -> None:
        with tenant(bad):  # type: ignore[arg-type]
            pass

    async def aenter() -> None:
        async with tenant(bad):  # type: ignore[arg-type]
            pass

    for call in (
        enter,
        lambda: asyncio.run(aenter()),
        lambda: tenant(bad)(current_tenant),  # type: ignore[arg-type]
        lambda: default_router.tenant(bad),  # type: ignore[arg-type]
        lambda: set_REDIS_DB_settings(bad, host="127.0.0.1"),  # type: ignore[arg-type]
        lambda: default_router.activate(bad),  # type: ignore[arg-type]
    ):
        with pytest.raises(TenantConfigError) as info:
            call()
        assert isinstance(info.value, TypeError)
        assert isinstance(info.value, InvalidTenantNameError)
        assert type(bad).__name__ in str(info.value)
    assert default_router.names() == before


def test_current_tenant_is_default_outside_blocks() -> None:
    assert current_tenant() == default_router.default_name
    assert repr(tenant("acme")) == "tenant('acme')"


def test_one_instance_reentered_three_deep_and_exit_without_enter(three: Servers) -> None:
    block = tenant("acme")
    with block:
        with tenant("globex"), block:
            with block:
                assert current_tenant() == "acme"
            assert current_tenant() == "acme"
        assert current_tenant() == "acme"
    assert current_tenant() == default_router.default_name
    with pytest.raises(RuntimeError, match="without being entered"):
        block.__exit__(None, None, None)


# -- tenant() hands out a free object again -------------------------------------------


@pytest.mark.parametrize("factory", ["tenant", "Router.tenant"])
def test_tenant_reuses_only_free_objects(three: Servers, factory: str) -> None:
    make = tenant if factory == "tenant" else default_router.tenant
    for name in ("acme", "globex"):  # live: the factory remembers only names it served
        with make(name):
            pass
    first = make("acme")
    assert make("acme") is first  # free: handed out again
    assert make("globex") is not first
    with first:
        inner = make("acme")
        assert inner is not first  # an entered object is never handed out
        with inner:
            assert current_tenant() == "acme"
        assert current_tenant() == "acme"
    assert current_tenant() == default_router.default_name
    assert make("acme") is inner  # the newest object, free again


def test_tenant_never_hands_out_an_object_that_turned_shared(three: Servers) -> None:
    block = tenant("acme")
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with block:
            inside.set()
            assert leave.wait(timeout=30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(timeout=30)
    with block:  # entered twice at once: keeps its entries on a stack from now on
        assert current_tenant() == "acme"
    leave.set()
    holder.join()
    assert tenant("acme") is not block


def test_tenant_reuse_remembers_only_known_names(three: Servers) -> None:
    """Names are often request input: unknown ones (of any length) are never kept."""
    unknown = "nobody-" + "x" * 10_000
    block = tenant(unknown)
    assert tenant(unknown) is not block
    with pytest.raises(UnknownTenantError):
        block.__enter__()
    assert default_router.tenant(unknown) is not default_router.tenant(unknown)


def test_tenant_reuse_cache_is_bounded(three: Servers, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_context, "REUSE_LIMIT", 2)
    for name in ("acme", "globex", "initech"):
        with tenant(name):
            pass
    first = tenant("acme")
    assert tenant("acme") is first
    tenant("globex")  # the cache is full now
    tenant("initech")  # so it starts over
    assert tenant("acme") is not first
    assert tenant("acme") is tenant("acme")


def test_tenant_objects_handed_to_two_threads_restore_each_thread(three: Servers) -> None:
    """Both threads get the same free object before either enters it."""
    block = tenant("acme")
    assert tenant("acme") is block
    barrier = threading.Barrier(2)
    seen: list[tuple[str, str]] = []
    handed: list[object] = []

    def run(outer: str) -> None:
        with tenant(outer):
            same = tenant("acme")
            handed.append(same)
            barrier.wait(timeout=30)
            with same:
                barrier.wait(timeout=30)  # both inside at once
                inside = current_tenant()
                barrier.wait(timeout=30)
            seen.append((inside, current_tenant() + "<-" + outer))

    threads = [threading.Thread(target=run, args=(n,)) for n in ("globex", "initech")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert handed == [block, block]
    assert sorted(seen) == [("acme", "globex<-globex"), ("acme", "initech<-initech")]
