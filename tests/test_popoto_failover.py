"""Popoto's Lua under failover: no ``NoScriptError`` may reach the caller.

Each test gets its own primary and backup ``redis-server`` so it can pause (SIGSTOP)
or kill (-9) the primary. The backup has never seen a script when the switch happens:
the per-endpoint cache must load scripts there, and a pipeline already queued for the
primary, which redis-py retries on the backup, must recover.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import popoto.redis_db as popoto_redis_db
import pytest
import redis

import redis_tenancy.popoto as rt_popoto
from redis_tenancy import set_REDIS_DB_settings, tenant, tenant_status
from redis_tenancy._embedded import RedisServer

from .conftest import direct, wait_until
from .popoto_models import RtFact


@pytest.fixture
def pair() -> Iterator[tuple[RedisServer, RedisServer]]:
    """A primary and a backup that this test alone may pause or kill."""
    started: list[RedisServer] = []
    try:
        started += [RedisServer().start(), RedisServer().start()]
        rt_popoto.install()
        yield started[0], started[1]
    finally:
        rt_popoto.uninstall()
        for server in started:
            server.stop()


def shown(server: RedisServer) -> str:
    return f"redis://{server.address}/0"


def scripts_on(server: RedisServer) -> int:
    """How many of the scripts Popoto ran are loaded on ``server``."""
    registry = rt_popoto._installation.scripts  # type: ignore[union-attr]
    shas = registry.shas()
    with direct(server) as client:
        return sum(client.script_exists(*shas)) if shas else 0


def test_pipeline_in_flight_on_a_paused_primary_recovers_on_the_backup(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, backup = pair
    set_REDIS_DB_settings(
        "ft",
        url=primary.url,
        failover_urls=[backup.url],
        failover_cooldown=60,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
    )
    with tenant("ft"):
        RtFact.create(name="warm", topic="t0", tags=["x"])  # scripts now on the primary
        pipe = popoto_redis_db.get_REDIS_DB().pipeline()
        # Queued for the primary, which has every script: plain EVALSHA commands.
        RtFact.create(name="inflight", topic="t1", tags=["x"], pipeline=pipe)
        assert scripts_on(backup) == 0
        primary.signal(signal.SIGSTOP)
        try:
            # Sent to the paused primary, timed out, retried by redis-py on the backup.
            results = pipe.execute()
        finally:
            primary.signal(signal.SIGCONT)
        assert not any(isinstance(r, Exception) for r in results)
        assert tenant_status("ft").active == shown(backup)
    with direct(backup) as client:
        assert client.exists("RtFact:inflight")
        assert client.info("commandstats")["cmdstat_eval"]["calls"] >= 1  # recovered
    registry = rt_popoto._installation.scripts  # type: ignore[union-attr]
    assert not any(registry.loaded(shown(primary), sha) for sha in registry.shas())


def test_killed_primary_under_lua_traffic_no_noscript_reaches_the_caller(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, backup = pair
    set_REDIS_DB_settings(
        "fk",
        url=primary.url,
        failover_urls=[backup.url],
        failover_cooldown=60,
        # A kill means refused connects; long timeouts keep one slow connect to the
        # backup on a busy machine from opening its circuit too (see test_failover.py).
        socket_timeout=5.0,
        socket_connect_timeout=5.0,
    )
    stop = threading.Event()
    done: list[tuple[float, str]] = []  # (start, record name) of each succeeded write
    errors: list[tuple[float, BaseException]] = []

    def write_and_read(name: str, n: int) -> None:
        start = time.monotonic()
        try:
            pipe = popoto_redis_db.get_REDIS_DB().pipeline()
            RtFact.create(name=name, topic=f"topic{n % 5}", tags=[f"tag{n % 3}"], pipeline=pipe)
            pipe.execute()
            RtFact.bloom.might_exist(RtFact, f"topic{n % 5}")
            RtFact.query.filter(tags__contains=f"tag{n % 3}")
            done.append((start, name))
        except Exception as exc:
            errors.append((start, exc))

    def sync_worker(w: int) -> None:
        with tenant("fk"):
            i = 0
            while not stop.is_set():
                write_and_read(f"s{w}n{i}", i)
                i += 1

    async def async_worker(w: int) -> None:
        i = 0
        while not stop.is_set():
            start = time.monotonic()
            try:
                await RtFact.async_create(name=f"a{w}n{i}", topic=f"topic{i % 5}", tags=["async"])
                done.append((start, f"a{w}n{i}"))
            except Exception as exc:
                errors.append((start, exc))
            i += 1

    async def async_main() -> None:
        async with tenant("fk"):
            await asyncio.gather(*(async_worker(w) for w in range(3)))

    threads = [threading.Thread(target=sync_worker, args=(w,)) for w in range(3)]
    threads.append(threading.Thread(target=asyncio.run, args=(async_main(),)))
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(done) >= 30, timeout=30, what="Lua traffic on the primary")
        primary.kill()
        killed_at = time.monotonic()
        wait_until(
            lambda: sum(start > killed_at for start, _ in list(done)) >= 30,
            timeout=30,
            what=lambda: f"traffic on the backup; errors: {errors[-3:]}",
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    noscript = [exc for _, exc in errors if isinstance(exc, redis.exceptions.NoScriptError)]
    assert noscript == []
    # Only operations already running when the primary died may fail at all.
    assert all(start <= killed_at for start, _ in errors), errors
    after = [name for start, name in done if start > killed_at]
    with direct(backup) as client:
        pipe = client.pipeline(transaction=False)
        for name in after:
            pipe.exists(f"RtFact:{name}")
        assert all(pipe.execute())
    assert tenant_status("fk").failovers == 1
    assert scripts_on(backup) >= 3


def test_failover_forgets_the_scripts_of_both_endpoints(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, backup = pair
    set_REDIS_DB_settings(
        "ff", url=primary.url, failover_urls=[backup.url], failover_cooldown=60, socket_timeout=1
    )
    registry: Any = rt_popoto._installation.scripts  # type: ignore[union-attr]
    registry.mark(shown(backup), "stale-sha")  # e.g. from before the backup restarted
    with tenant("ff"):
        RtFact.create(name="warm", topic="t", tags=["x"], pipeline=None)
        pipe = popoto_redis_db.get_REDIS_DB().pipeline()
        RtFact.create(name="p", topic="t", tags=["x"], pipeline=pipe)
        pipe.execute()
        assert set(registry.endpoints()) == {shown(backup), shown(primary)}
        primary.kill()
        RtFact.create(name="after", topic="t", tags=["x"])  # fails over to the backup
    assert shown(primary) not in registry.endpoints()
    assert not registry.loaded(shown(backup), "stale-sha")
