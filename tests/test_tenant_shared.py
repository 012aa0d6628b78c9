"""One ``tenant()`` object shared by many threads and tasks at once.

A module-level ``ACME = tenant("acme")`` is entered by concurrent requests: every exit
must restore exactly what its own thread or task had before, whatever order the
others leave in. Barriers keep every worker inside the shared block at the same time,
so the exits really interleave; each iteration checks the active tenant inside the
block and after it.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from redis_tenancy import PopotoException, TenantContext, _context, current_tenant, default_router
from redis_tenancy._context import STACK_ONLY
from redis_tenancy._errors import TenantContextError
from redis_tenancy.redis_db import (
    POPOTO_REDIS_DB,
    _DefaultTenant,
    set_REDIS_DB_settings,
    tenant,
)

from .conftest import Servers, direct

OUTER = ["globex", "initech", ""]  # "" is the default tenant

THREADS = 8
ROUNDS = 40
TASKS = 50


@pytest.fixture
def names(servers: Servers) -> Servers:
    set_REDIS_DB_settings("acme", url=servers.b.url)
    set_REDIS_DB_settings("globex", url=servers.c.url)
    set_REDIS_DB_settings("initech", url=servers.c.url.removesuffix("/0") + "/1")
    return servers


@pytest.fixture(params=["tenant", "Router.tenant", "free-threaded"])
def make_shared(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], TenantContext]:
    """How the shared object is made: ``tenant()``, ``Router.tenant()``, or as on a
    free-threaded interpreter (no slot claims: every entry on its context's stack)."""
    if request.param == "tenant":
        return lambda: tenant("acme")
    if request.param == "Router.tenant":
        return lambda: default_router.tenant("acme")
    monkeypatch.setattr(_context, "ATOMIC_SLOTS", False)
    enter, exit_ = _context.fast_paths(default_router)
    free_threaded = type(
        "free_threaded_tenant",
        (_DefaultTenant,),
        {"__slots__": (), "__enter__": enter, "__exit__": exit_},
    )

    def make() -> TenantContext:
        made: TenantContext = free_threaded("acme")
        return made

    return make


def expect(name: str) -> str:
    return name or default_router.default_name


def test_one_object_entered_by_many_threads_at_once(
    names: Servers, make_shared: Callable[[], TenantContext]
) -> None:
    acme = make_shared()
    inside = threading.Barrier(THREADS)
    errors: list[str] = []

    def worker(index: int) -> None:
        outer = OUTER[index % len(OUTER)]
        rng = random.Random(index)
        try:
            for round_ in range(ROUNDS):
                with tenant(outer):
                    with acme:
                        inside.wait(timeout=30)  # everybody is inside the shared block
                        if current_tenant() != "acme":
                            errors.append(f"{index}/{round_}: {current_tenant()} inside")
                        if rng.random() < 0.3:
                            with tenant("initech"), acme:  # re-entered, nested
                                if current_tenant() != "acme":
                                    errors.append(f"{index}/{round_}: nested")
                            if current_tenant() != "acme":
                                errors.append(f"{index}/{round_}: {current_tenant()} after nested")
                        for _ in range(rng.randrange(3)):
                            threading.Event().wait(0)  # let others leave first
                    if current_tenant() != expect(outer):
                        errors.append(f"{index}/{round_}: {current_tenant()} after exit")
                if current_tenant() != default_router.default_name:
                    errors.append(f"{index}/{round_}: {current_tenant()} after outer")
        except Exception as exc:  # reported with the others below
            errors.append(f"{index}: {type(exc).__name__}: {exc}")
            inside.abort()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


async def test_one_object_entered_by_many_tasks_at_once(
    names: Servers, make_shared: Callable[[], TenantContext]
) -> None:
    acme = make_shared()
    arrived = 0
    everyone_in = asyncio.Event()
    errors: list[str] = []

    async def inside(index: int, rng: random.Random) -> None:
        nonlocal arrived
        arrived += 1
        if arrived == TASKS:
            everyone_in.set()
        await everyone_in.wait()  # every task is inside the shared block
        if current_tenant() != "acme":
            errors.append(f"{index}: {current_tenant()} inside")
        if index % 3 == 0:
            with tenant("initech"), acme:  # re-entered, nested
                await asyncio.sleep(0)
                if current_tenant() != "acme":
                    errors.append(f"{index}: nested")
            if current_tenant() != "acme":
                errors.append(f"{index}: {current_tenant()} after nested")
        for _ in range(rng.randrange(4)):
            await asyncio.sleep(0)  # leave in a random order

    async def request(index: int) -> None:
        outer = OUTER[index % len(OUTER)]
        rng = random.Random(index)
        async with tenant(outer):
            if index % 2:
                async with acme:
                    await inside(index, rng)
            else:
                with acme:
                    await inside(index, rng)
            if current_tenant() != expect(outer):
                errors.append(f"{index}: {current_tenant()} after exit")

    await asyncio.gather(*(request(i) for i in range(TASKS)))
    assert errors == []
    assert current_tenant() == default_router.default_name


def test_thread_pool_workers_never_keep_the_shared_tenant(names: Servers) -> None:
    acme = tenant("acme")
    workers = 4
    inside = threading.Barrier(workers)

    def job(index: int) -> str:
        with acme:
            inside.wait(timeout=30)
            POPOTO_REDIS_DB.set(f"job:{index}", "acme")
            return current_tenant()

    def later(index: int) -> str:
        POPOTO_REDIS_DB.set(f"later:{index}", "default")
        return current_tenant()

    with ThreadPoolExecutor(workers) as pool:
        for _ in range(5):
            assert list(pool.map(job, range(workers))) == ["acme"] * workers
        after = list(pool.map(later, range(20)))
    assert after == [default_router.default_name] * 20
    with direct(names.b) as on_acme, direct(names.a) as on_default:
        assert on_acme.exists(*(f"job:{i}" for i in range(workers))) == workers
        assert on_acme.exists(*(f"later:{i}" for i in range(20))) == 0
        assert on_default.exists(*(f"later:{i}" for i in range(20))) == 20


def test_exit_without_enter_or_twice_is_a_typed_error(
    names: Servers, make_shared: Callable[[], TenantContext]
) -> None:
    block = make_shared()
    with pytest.raises(TenantContextError, match="without being entered") as never:
        block.__exit__(None, None, None)
    assert isinstance(never.value, PopotoException)
    assert isinstance(never.value, RuntimeError)
    block.__enter__()
    block.__exit__(None, None, None)
    with pytest.raises(TenantContextError):
        block.__exit__(None, None, None)
    assert current_tenant() == default_router.default_name


def test_exit_in_another_thread_than_the_enter_is_refused(names: Servers) -> None:
    block = tenant("acme")
    block.__enter__()
    try:
        with ThreadPoolExecutor(1) as pool:
            failed = pool.submit(block.__exit__, None, None, None).exception()
        assert isinstance(failed, TenantContextError)
        assert current_tenant() == "acme"  # still open here, in its own thread
    finally:
        block.__exit__(None, None, None)
    assert current_tenant() == default_router.default_name


async def test_child_task_does_not_exit_its_parents_entry(names: Servers) -> None:
    block = tenant("acme")
    with block, block:  # the second entry goes on this task's stack
        child = asyncio.create_task(asyncio.to_thread(lambda: None))
        await child

        async def exit_parents() -> None:
            block.__exit__(None, None, None)

        with pytest.raises(TenantContextError):
            await asyncio.create_task(exit_parents())
        assert current_tenant() == "acme"
    assert current_tenant() == default_router.default_name


def test_free_threaded_mode_keeps_every_entry_on_its_stack(
    names: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_context, "ATOMIC_SLOTS", False)
    block = _context.TenantContext(default_router, "acme")  # the generic class
    with block:
        assert block._token is STACK_ONLY
        with tenant("globex"), block:
            assert current_tenant() == "acme"
        assert current_tenant() == "acme"
    assert current_tenant() == default_router.default_name


class _SlowResetVar:
    """The router's ContextVar, but ``reset`` runs ``after_reset`` before returning:
    a thread switch at the worst moment of an exit, made to happen every time."""

    def __init__(self, var: Any, after_reset: Callable[[], None]) -> None:
        self.set = var.set
        self._reset = var.reset
        self.after_reset = after_reset

    def reset(self, token: Any) -> None:
        self._reset(token)
        self.after_reset()


def test_exit_never_clears_a_slot_another_thread_changed_meanwhile(names: Servers) -> None:
    """Thread B enters the object between A's reset and A's clearing of the slot; A
    must leave B's record in place, or B's own exit can no longer find its token."""
    b_inside, b_may_leave = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}
    hooked = True

    def b_enters_now() -> None:
        nonlocal hooked
        if hooked:
            hooked = False
            thread.start()
            assert b_inside.wait(timeout=30)

    var = _SlowResetVar(default_router.var, b_enters_now)
    router = type(
        "SlowRouter",
        (),
        {"var": var, "lookup": default_router.lookup, "activate": default_router.activate},
    )()
    enter, exit_ = _context.fast_paths(router)
    cls = type(
        "slow_tenant", (_DefaultTenant,), {"__slots__": (), "__enter__": enter, "__exit__": exit_}
    )
    block = cls("acme")

    def b() -> None:
        try:
            with tenant("globex"):
                with block:
                    outcome["inside"] = current_tenant()
                    b_inside.set()
                    assert b_may_leave.wait(timeout=30)
                outcome["after"] = current_tenant()
        except Exception as exc:  # reported below
            outcome["error"] = repr(exc)
            b_inside.set()

    thread = threading.Thread(target=b)
    with block:  # A: holds the slot; its exit lets B in right after the reset
        assert current_tenant() == "acme"
    assert current_tenant() == default_router.default_name
    b_may_leave.set()
    thread.join()
    assert outcome == {"inside": "acme", "after": "globex"}


def test_nested_entry_of_the_first_holder_exits_before_its_outer_one(names: Servers) -> None:
    """The thread holding the slot re-enters after another thread made the object
    shared: its inner exit resets the inner entry, its outer exit the outer one."""
    block = tenant("acme")
    other_inside, other_may_leave = threading.Event(), threading.Event()

    def other() -> None:
        with block:
            other_inside.set()
            assert other_may_leave.wait(timeout=30)

    thread = threading.Thread(target=other)
    with tenant("globex"):
        with block:
            thread.start()
            assert other_inside.wait(timeout=30)
            with tenant("initech"):
                with block:
                    assert current_tenant() == "acme"
                assert current_tenant() == "initech"
            assert current_tenant() == "acme"
        assert current_tenant() == "globex"
    other_may_leave.set()
    thread.join()
    assert current_tenant() == default_router.default_name
