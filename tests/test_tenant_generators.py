"""``@tenant(name)`` on generator and async-generator functions.

Every resumption of a decorated generator runs as the decorator's tenant, whoever
resumes it and from wherever; the consumer's own tenant is untouched between
resumptions. Each test writes through the proxy from inside the generator and reads
the servers directly, so a resumption that ran as the wrong tenant shows up as a key
on the wrong server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from redis_tenancy import Router, UnknownTenantError, current_tenant, default_router
from redis_tenancy.redis_db import (
    POPOTO_ASYNC_REDIS_DB,
    POPOTO_REDIS_DB,
    set_REDIS_DB_settings,
    tenant,
)

from .conftest import Servers, direct


@pytest.fixture
def acme(servers: Servers) -> Servers:
    """acme on server b, globex on server c; the default tenant stays on a."""
    set_REDIS_DB_settings("acme", url=servers.b.url)
    set_REDIS_DB_settings("globex", url=servers.c.url)
    return servers


def only_on_acme(servers: Servers, *keys: str) -> dict[str, str | None]:
    """Values of ``keys`` on acme's server; fail if any is on another server."""
    for other in (servers.a, servers.c):
        with direct(other) as client:
            assert client.exists(*keys) == 0, f"{keys} leaked to port {other.port}"
    with direct(servers.b) as client:
        return dict(zip(keys, client.mget(*keys), strict=True))


@tenant("acme")
def steps() -> Generator[str, object, str]:
    """Yields the tenant it runs as; records what it was sent, thrown and when closed."""
    try:
        POPOTO_REDIS_DB.set("started", current_tenant())
        received = yield current_tenant()
        POPOTO_REDIS_DB.set("sent", str(received))
        try:
            yield current_tenant()
        except KeyError as exc:
            POPOTO_REDIS_DB.set("thrown", str(exc))
            yield "caught as " + current_tenant()
        yield current_tenant()
    finally:
        POPOTO_REDIS_DB.set("closed", current_tenant())
    return "done"


@tenant("acme")
async def asteps() -> AsyncGenerator[str, object]:
    """The async twin of :func:`steps`."""
    try:
        await POPOTO_ASYNC_REDIS_DB.set("started", current_tenant())
        received = yield current_tenant()
        await asyncio.sleep(0)
        await POPOTO_ASYNC_REDIS_DB.set("sent", str(received))
        try:
            yield current_tenant()
        except KeyError as exc:
            await POPOTO_ASYNC_REDIS_DB.set("thrown", str(exc))
            yield "caught as " + current_tenant()
        yield current_tenant()
    finally:
        await POPOTO_ASYNC_REDIS_DB.set("closed", current_tenant())


def test_generator_send_throw_close_run_as_tenant(acme: Servers) -> None:
    with tenant("globex"):
        gen = steps()
        assert current_tenant() == "globex"
        assert next(gen) == "acme"
        assert current_tenant() == "globex"
        assert gen.send(42) == "acme"
        assert current_tenant() == "globex"
        assert gen.throw(KeyError("boom")) == "caught as acme"
        assert current_tenant() == "globex"
        gen.close()
        assert current_tenant() == "globex"
    assert current_tenant() == default_router.default_name
    assert only_on_acme(acme, "started", "sent", "thrown", "closed") == {
        "started": "acme",
        "sent": "42",
        "thrown": "'boom'",
        "closed": "acme",
    }


async def test_async_generator_asend_athrow_aclose_run_as_tenant(acme: Servers) -> None:
    async with tenant("globex"):
        agen = asteps()
        assert await agen.__anext__() == "acme"
        assert current_tenant() == "globex"
        assert await agen.asend(42) == "acme"
        assert current_tenant() == "globex"
        assert await agen.athrow(KeyError("boom")) == "caught as acme"
        assert current_tenant() == "globex"
        await agen.aclose()
        assert current_tenant() == "globex"
    assert only_on_acme(acme, "started", "sent", "thrown", "closed") == {
        "started": "acme",
        "sent": "42",
        "thrown": "'boom'",
        "closed": "acme",
    }


def test_generator_early_exit_of_for_loop_finalizes_as_tenant(acme: Servers) -> None:
    seen: list[tuple[str, str]] = []
    with tenant("globex"):
        for value in steps():
            seen.append((value, current_tenant()))
            break
        # The loop dropped the only reference: the generator was closed right there.
        assert current_tenant() == "globex"
    assert seen == [("acme", "globex")]
    assert only_on_acme(acme, "started", "closed") == {"started": "acme", "closed": "acme"}


async def test_async_generator_early_exit_then_aclose_runs_as_tenant(acme: Servers) -> None:
    agen = asteps()
    async with tenant("globex"):
        async for value in agen:
            assert (value, current_tenant()) == ("acme", "globex")
            break
        await agen.aclose()
        assert current_tenant() == "globex"
    assert only_on_acme(acme, "started", "closed") == {"started": "acme", "closed": "acme"}


def test_yield_from_a_decorated_generator_inside_others(acme: Servers) -> None:
    default = default_router.default_name

    def plain() -> Generator[str, object, None]:
        yield current_tenant()
        result = yield from steps()
        yield f"after {current_tenant()} {result}"

    @tenant("globex")
    def as_globex() -> Iterator[str]:
        yield current_tenant()
        yield from steps()
        yield current_tenant()

    assert list(plain()) == [default, "acme", "acme", "acme", f"after {default} done"]
    assert list(as_globex()) == ["globex", "acme", "acme", "acme", "globex"]
    with tenant("globex"):
        delegated = plain()
        assert next(delegated) == "globex"
        assert next(delegated) == "acme"
        assert current_tenant() == "globex"
        assert delegated.send("via yield from") == "acme"
        assert delegated.throw(KeyError("deep")) == "caught as acme"
        delegated.close()
        assert current_tenant() == "globex"
    assert only_on_acme(acme, "sent", "thrown", "closed") == {
        "sent": "via yield from",
        "thrown": "'deep'",
        "closed": "acme",
    }


def test_generator_resumed_from_other_threads(acme: Servers) -> None:
    gen = steps()
    with ThreadPoolExecutor(2) as pool, tenant("globex"):
        first = pool.submit(lambda: (next(gen), current_tenant())).result()
        second = pool.submit(lambda: (gen.send("t"), current_tenant())).result()
        assert current_tenant() == "globex"
        third = pool.submit(lambda: (gen.throw(KeyError("t")), current_tenant())).result()
        pool.submit(gen.close).result()
        # The workers' own tenant stayed the default one for later jobs.
        later = {pool.submit(current_tenant).result() for _ in range(4)}
    name = default_router.default_name
    assert (first, second, third) == (("acme", name), ("acme", name), ("caught as acme", name))
    assert later == {name}
    assert only_on_acme(acme, "started", "sent", "closed")["closed"] == "acme"


async def test_async_generator_consumed_by_other_tasks(acme: Servers) -> None:
    agen = asteps()

    async def step(tenant_name: str, value: object) -> tuple[str, str]:
        async with tenant(tenant_name):
            got = await (agen.__anext__() if value is None else agen.asend(value))
            return got, current_tenant()

    assert await asyncio.create_task(step("globex", None)) == ("acme", "globex")
    assert await asyncio.create_task(step(default_router.default_name, 7)) == (
        "acme",
        default_router.default_name,
    )
    await asyncio.create_task(agen.aclose())
    assert only_on_acme(acme, "sent", "closed") == {"sent": "7", "closed": "acme"}


def test_unknown_tenant_raises_at_first_resumption(acme: Servers) -> None:
    @tenant("nobody")
    def gen() -> Iterator[int]:
        yield 1

    @tenant("nobody")
    async def agen() -> AsyncGenerator[int, None]:
        yield 1

    async def first() -> int:
        return await agen().__anext__()

    made = gen()
    with pytest.raises(UnknownTenantError):
        next(made)
    with pytest.raises(UnknownTenantError):
        asyncio.run(first())
    assert current_tenant() == default_router.default_name


def test_router_tenant_decorates_generators(acme: Servers) -> None:
    router = Router(default_url=acme.a.url)
    router.register("acme", url=acme.b.url)

    @router.tenant("acme")
    def gen() -> Generator[str, None, None]:
        router.redis.set("router-gen", "1")
        yield router.current()
        yield router.current()

    @router.tenant("acme")
    async def agen() -> AsyncGenerator[str, None]:
        await router.async_redis.set("router-agen", "1")
        yield router.current()

    async def consume() -> list[str]:
        return [value async for value in agen()]

    try:
        made = gen()
        assert next(made) == "acme"
        assert router.current() == router.default_name
        assert list(made) == ["acme"]
        assert asyncio.run(consume()) == ["acme"]
        assert router.current() == router.default_name
    finally:
        router.close()
    assert only_on_acme(acme, "router-gen", "router-agen") == {
        "router-gen": "1",
        "router-agen": "1",
    }


def test_bare_with_around_yield_leaks_into_the_consumer(acme: Servers) -> None:
    """What the decorator is for: a ``with`` block inside a generator is the
    consumer's context while the generator is suspended (ContextVars work that way)."""

    def leaky() -> Generator[str, None, None]:
        with tenant("acme"):
            yield current_tenant()

    gen = leaky()
    assert next(gen) == "acme"
    assert current_tenant() == "acme"  # leaked: the block is still open
    gen.close()
    assert current_tenant() == default_router.default_name


def test_decorated_generator_is_still_a_generator_function() -> None:
    import inspect

    assert inspect.isgeneratorfunction(steps)
    assert inspect.isasyncgenfunction(asteps)
    assert steps.__name__ == "steps"
    assert asteps.__name__ == "asteps"
