"""Failover against real servers that the tests kill (-9), pause (SIGSTOP) and restart.

Each test gets its own primary and backup ``redis-server`` so it can destroy them.
Timeouts are short (0.5 s) so the suite stays quick; the behaviour does not depend
on them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio.retry
import redis.backoff
import redis.retry

from redis_tenancy import (
    FailoverEvent,
    NoHealthyEndpointError,
    PopotoException,
    TenantConfigError,
    UnknownTenantError,
)
from redis_tenancy._embedded import RedisServer
from redis_tenancy.redis_db import (
    POPOTO_ASYNC_REDIS_DB,
    POPOTO_REDIS_DB,
    default_router,
    get_REDIS_DB,
    register_failover_url,
    set_REDIS_DB_settings,
    tenant,
    tenant_status,
)

from .conftest import SECRET, direct, wait_until

TIMEOUT = 0.5
FAST: dict[str, Any] = {"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT}
NO_RETRY = redis.retry.Retry(redis.backoff.NoBackoff(), 0)


@pytest.fixture
def pair() -> Iterator[tuple[RedisServer, RedisServer]]:
    """A primary and a backup that this test alone may kill."""
    started: list[RedisServer] = []
    try:
        started += [RedisServer().start(), RedisServer().start()]
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()


def kill(server: RedisServer) -> None:
    """SIGKILL and wait until the process is gone (its port refuses connections)."""
    server.kill()
    assert not server.running


def shown(server: RedisServer, db: int = 0) -> str:
    return f"redis://{server.address}/{db}"


def clients_on(server: RedisServer) -> int:
    """Connections the server has, other than the one asking."""
    with direct(server) as client:
        return len(client.client_list()) - 1


# -- kill -9 under load --------------------------------------------------------------------


def test_kill_primary_under_load_moves_every_later_command_to_the_backup(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, backup = pair
    set_REDIS_DB_settings(
        "ft",
        url=primary.url,
        failover_urls=[backup.url],
        failover_cooldown=60,
        max_connections=400,
        # A kill means refused connects, not timeouts. Short timeouts would let one slow
        # connect or reply at the backup (200 tasks reconnecting at once on one loop, on
        # a busy 2-core CI machine) open its circuit as well, and with this cooldown
        # stall the tenant for a minute: a CI run under load saw that once.
        socket_timeout=5.0,
        socket_connect_timeout=5.0,
    )
    stop = threading.Event()
    results: list[tuple[float, bool, str]] = []  # (start, succeeded, key)

    def sync_worker(n: int) -> None:
        with tenant("ft"):
            i = 0
            while not stop.is_set():
                key, start = f"s{n}:{i}", time.monotonic()
                try:
                    POPOTO_REDIS_DB.set(key, 1)
                    results.append((start, True, key))
                except redis.RedisError:
                    results.append((start, False, key))
                i += 1

    async def async_worker(n: int) -> None:
        i = 0
        while not stop.is_set():
            key, start = f"a{n}:{i}", time.monotonic()
            try:
                await POPOTO_ASYNC_REDIS_DB.set(key, 1)
                results.append((start, True, key))
            except redis.RedisError:
                results.append((start, False, key))
            i += 1

    async def async_main() -> None:
        with tenant("ft"):
            await asyncio.gather(*(async_worker(n) for n in range(200)))

    threads = [threading.Thread(target=sync_worker, args=(n,)) for n in range(8)]
    threads.append(threading.Thread(target=asyncio.run, args=(async_main(),)))
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: sum(ok for _, ok, _ in results) >= 2000, what="load on the primary")
        kill(primary)
        killed_at = time.monotonic()
        wait_until(
            lambda: sum(ok for start, ok, _ in list(results) if start > killed_at) >= 3000,
            timeout=30,
            what=lambda: (
                f"load on the backup: {sum(not ok for _, ok, _ in list(results))} failed;"
                f" {tenant_status('ft')}"
            ),
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    failures = [r for r in results if not r[1]]
    after = [r for r in results if r[0] > killed_at]
    # Only commands already running when the process died may fail: at most one per worker.
    assert all(start <= killed_at for start, _, _ in failures)
    assert len(failures) <= 8 + 200
    assert all(ok for _, ok, _ in after)
    with direct(backup) as check:
        pipe = check.pipeline(transaction=False)
        for _, _, key in after:
            pipe.exists(key)
        assert all(pipe.execute())
    status = tenant_status("ft")
    assert status.active == shown(backup)
    assert status.failovers == 1
    assert status.endpoints[0].state == "open"


# -- SIGSTOP: accepts connections, never answers ----------------------------------------------


def test_paused_primary_costs_one_timeout_then_nobody_waits(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, backup = pair
    # A longer timeout than FAST's: "nobody waits" is told apart from "met the paused
    # server" by a call's duration, and a busy machine must not blur the two.
    timeout = 2.0
    set_REDIS_DB_settings(
        "fs",
        url=primary.url,
        failover_urls=[backup.url],
        failover_cooldown=60,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    barrier = threading.Barrier(8)

    def burst(durations: list[float]) -> None:
        with tenant("fs"):
            barrier.wait()
            for i in range(20):
                start = time.monotonic()
                POPOTO_REDIS_DB.incr(f"n{i}")
                durations.append(time.monotonic() - start)

    def run_burst() -> list[float]:
        durations: list[float] = []
        threads = [threading.Thread(target=burst, args=(durations,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return durations

    assert len(run_burst()) == 160  # the pool now holds connections to the primary
    assert clients_on(primary) >= 2
    primary.signal(signal.SIGSTOP)
    with tenant("fs"):
        start = time.monotonic()
        POPOTO_REDIS_DB.set("first", "on-backup")
        first = time.monotonic() - start
    assert first >= timeout, "the first caller meets the paused primary's read timeout"
    assert direct(backup).get("first") == "on-backup"
    durations = run_burst()
    assert len(durations) == 160
    # Once the circuit is open nobody meets the paused server again: pooled
    # connections to it are dropped when taken, new ones go to the backup.
    assert max(durations) < timeout
    status = tenant_status("fs")
    assert status.endpoints[0].state == "open"
    assert status.endpoints[0].consecutive_failures == 1
    assert status.endpoints[0].last_error is not None
    assert "Timeout" in status.endpoints[0].last_error
    assert status.active == shown(backup)
    assert direct(backup).get("n0") == "8"


# -- restart: failback ------------------------------------------------------------------------


def test_restarted_primary_gets_the_tenant_back_after_the_cooldown(
    pair: tuple[RedisServer, RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    primary, backup = pair
    cooldown = 0.3
    events: list[FailoverEvent] = []
    unhook = default_router.on_failover(events.append)
    try:
        set_REDIS_DB_settings(
            "fb",
            url=primary.url,
            failover_urls=[backup.url],
            failover_cooldown=cooldown,
            **FAST,
        )
        caplog.set_level(logging.WARNING, logger="POPOTO-REDIS_DB")
        with tenant("fb"):
            POPOTO_REDIS_DB.set("k", "primary-1")
            kill(primary)
            POPOTO_REDIS_DB.set("k", "backup-1")
            assert direct(backup).get("k") == "backup-1"
            assert tenant_status().active == shown(backup)
            primary.start()

            def back_on_primary() -> bool:
                POPOTO_REDIS_DB.incr("after")
                return tenant_status().active == shown(primary)

            # When the probe goes out is the plan's business, tested on a fake clock
            # (test_failover_plan.py); here: it does happen, with a generous deadline.
            wait_until(back_on_primary, timeout=10, what="failback")
            # Workers keep going; their connections to the backup are dropped.
            threads = [
                threading.Thread(target=lambda: [POPOTO_REDIS_DB.ping() for _ in range(50)])
                for _ in range(4)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            POPOTO_REDIS_DB.set("k", "primary-2")
    finally:
        unhook()
    assert direct(primary).get("k") == "primary-2"
    assert clients_on(backup) == 0, "no connection to the backup is left open"
    assert [(e.kind, e.from_endpoint, e.to_endpoint) for e in events] == [
        ("failover", shown(primary), shown(backup)),
        ("failback", shown(backup), shown(primary)),
    ]
    status = tenant_status("fb")
    assert (status.failovers, status.failbacks) == (1, 1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"'fb' failover: {shown(primary)} -> {shown(backup)}" in w for w in warnings)
    assert any(f"'fb' failback: {shown(backup)} -> {shown(primary)}" in w for w in warnings)


# -- runtime registration ---------------------------------------------------------------------


def test_failover_url_registered_while_the_primary_is_down_serves_the_next_call(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, backup = pair
    set_REDIS_DB_settings("fr", url=primary.url, **FAST)
    with tenant("fr"):
        client = get_REDIS_DB()
        POPOTO_REDIS_DB.set("k", 1)
        kill(primary)
        with pytest.raises(NoHealthyEndpointError):
            POPOTO_REDIS_DB.get("k")
        register_failover_url("fr", backup.url)
        POPOTO_REDIS_DB.set("k", "on-backup")
        assert get_REDIS_DB() is client, "adding a failover url rebuilds no client"
    assert direct(backup).get("k") == "on-backup"


async def test_async_failover_url_registered_at_runtime_serves_the_next_call(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, backup = pair
    set_REDIS_DB_settings("fa", url=primary.url, **FAST)
    with tenant("fa"):
        await POPOTO_ASYNC_REDIS_DB.set("k", 1)
        kill(primary)
        with pytest.raises(NoHealthyEndpointError):
            await POPOTO_ASYNC_REDIS_DB.get("k")
        default_router.add_failover("fa", backup.url)
        await POPOTO_ASYNC_REDIS_DB.set("k", "async-on-backup")
    assert direct(backup).get("k") == "async-on-backup"


# -- everything down ---------------------------------------------------------------------------


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "pooled"])
def test_all_endpoints_down_is_one_typed_error_naming_each_endpoint(
    pair: tuple[RedisServer, RedisServer], warm: bool
) -> None:
    primary, backup = pair
    set_REDIS_DB_settings("fd", url=primary.url, failover_urls=[backup.url], retry=NO_RETRY, **FAST)
    with tenant("fd"):
        if warm:  # a pooled connection meets the dead server mid-command first
            POPOTO_REDIS_DB.ping()
        kill(primary)
        kill(backup)
        with pytest.raises(NoHealthyEndpointError) as info:
            POPOTO_REDIS_DB.get("k")
        # Each endpoint was tried once in the call (no retries were asked for).
        assert [e.consecutive_failures for e in tenant_status("fd").endpoints] == [1, 1]
        # With nowhere left to fail over to, the next call probes again at once
        # (a plain client would try to connect too), still once per endpoint.
        with pytest.raises(NoHealthyEndpointError):
            POPOTO_REDIS_DB.get("k")
        assert [e.consecutive_failures for e in tenant_status("fd").endpoints] == [2, 2]
    error = info.value
    assert isinstance(error, redis.exceptions.ConnectionError)
    assert isinstance(error, PopotoException)
    assert "tenant 'fd'" in str(error)
    assert shown(primary) in str(error)
    assert shown(backup) in str(error)
    assert str(error).count("Connection refused") == 2


async def test_async_all_endpoints_down_is_one_typed_error(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, backup = pair
    set_REDIS_DB_settings("fe", url=primary.url, failover_urls=[backup.url], retry=NO_RETRY, **FAST)
    with tenant("fe"):
        await POPOTO_ASYNC_REDIS_DB.ping()
        kill(primary)
        kill(backup)
        # No retries asked for: the pooled connection's own error comes first...
        with pytest.raises(redis.exceptions.ConnectionError):
            await POPOTO_ASYNC_REDIS_DB.get("k")
        # ...then the plan tries each endpoint once and gives the typed error.
        with pytest.raises(NoHealthyEndpointError, match="no healthy endpoint"):
            await POPOTO_ASYNC_REDIS_DB.get("k")
    assert [e.consecutive_failures for e in tenant_status("fe").endpoints] == [1, 1]


class CountingRetry(redis.retry.Retry):
    """A user's own Retry subclass: it counts the attempts it makes."""

    attempts = 0

    def call_with_retry(
        self, do: Any, fail: Any, is_retryable: Any = None, with_failure_count: bool = False
    ) -> Any:
        def counted() -> Any:
            CountingRetry.attempts += 1
            return do()

        return super().call_with_retry(counted, fail, is_retryable, with_failure_count)


class AsyncCountingRetry(redis.asyncio.retry.Retry):
    attempts = 0

    async def call_with_retry(
        self, do: Any, fail: Any, is_retryable: Any = None, with_failure_count: bool = False
    ) -> Any:
        async def counted() -> Any:
            AsyncCountingRetry.attempts += 1
            return await do()

        return await super().call_with_retry(counted, fail, is_retryable, with_failure_count)


@pytest.mark.parametrize("on", ["tenant", "plain redis-py"])
def test_all_down_is_retried_as_a_plain_client_retries_a_refused_connect(
    pair: tuple[RedisServer, RedisServer], on: str
) -> None:
    # The router adds failover, never an outage: with every endpoint down, the call is
    # retried exactly as the connection's Retry says, as for a plain client (which is
    # how a plain client survives a restart), each attempt costing at most one connect
    # per endpoint and none while another caller probes.
    primary, backup = pair
    retry = CountingRetry(redis.backoff.ConstantBackoff(0.01), 3)
    kill(primary)
    kill(backup)
    CountingRetry.attempts = 0
    if on == "plain redis-py":
        with pytest.raises(redis.exceptions.ConnectionError):
            redis.Redis.from_url(primary.url, retry=retry, **FAST).get("k")
    else:
        set_REDIS_DB_settings("fq", url=primary.url, failover_urls=[backup.url], retry=retry)
        with tenant("fq"), pytest.raises(NoHealthyEndpointError, match="tenant 'fq'"):
            POPOTO_REDIS_DB.get("k")
        failures = [e.consecutive_failures for e in tenant_status("fq").endpoints]
        assert min(failures) >= 1, failures
        assert max(failures) <= 4, failures
    assert CountingRetry.attempts == 4  # 1 + 3 retries, the same either way


async def test_async_all_down_is_retried_as_the_users_retry_says(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, backup = pair
    retry = AsyncCountingRetry(redis.backoff.ConstantBackoff(0.01), 3)
    set_REDIS_DB_settings("fu", url=primary.url, failover_urls=[backup.url], retry=retry, **FAST)
    with tenant("fu"):
        await POPOTO_ASYNC_REDIS_DB.ping()
        kill(primary)
        kill(backup)
        AsyncCountingRetry.attempts = 0
        with pytest.raises(NoHealthyEndpointError):
            await POPOTO_ASYNC_REDIS_DB.get("k")
    # The command met the dead server, then redis-py's retries reconnected by the plan:
    # 1 + 3 attempts, as for a plain client with this Retry.
    assert AsyncCountingRetry.attempts == 4


# -- every kind of command follows the plan ------------------------------------------------------


def test_pipelines_transactions_lua_and_pubsub_follow_the_failover(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, backup = pair
    set_REDIS_DB_settings(
        "fp", url=primary.url, failover_urls=[backup.url], failover_cooldown=60, **FAST
    )
    with tenant("fp"):
        pubsub = POPOTO_REDIS_DB.pubsub()  # type: ignore[no-untyped-call]
        pubsub.subscribe("news")
        assert pubsub.get_message(timeout=1) is not None  # subscribe confirmation
        kill(primary)
        pipe = POPOTO_REDIS_DB.pipeline(transaction=False)
        pipe.set("p", 1)
        pipe.incr("p")
        assert pipe.execute() == [True, 2]
        with POPOTO_REDIS_DB.pipeline() as tx:
            tx.multi()
            tx.set("t", "x")
            tx.get("t")
            assert tx.execute() == [True, b"x"]
        assert POPOTO_REDIS_DB.eval("return redis.call('INCR', KEYS[1])", 1, "lua") == 1

        # The subscriber reconnects by the same plan and re-subscribes on the backup.
        def delivered() -> bool:
            with direct(backup) as publisher:
                publisher.publish("news", "hello")
            try:
                message = pubsub.get_message(timeout=0.1)
            except redis.ConnectionError:
                return False
            return message is not None and message.get("data") == b"hello"

        wait_until(delivered, what="a message through the backup")
        pubsub.close()
    with direct(backup) as check:
        assert (check.get("p"), check.get("t"), check.get("lua")) == ("2", "x", "1")


# -- changing the endpoint list -------------------------------------------------------------


def test_removed_failover_endpoint_loses_its_connections(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, backup = pair
    set_REDIS_DB_settings(
        "fx", url=primary.url, failover_urls=[backup.url], failover_cooldown=60, **FAST
    )
    with tenant("fx"):
        kill(primary)
        POPOTO_REDIS_DB.set("k", 1)
        assert clients_on(backup) == 1
        default_router.remove_failover("fx", backup.url)
        with pytest.raises(NoHealthyEndpointError):
            POPOTO_REDIS_DB.get("k")
    assert clients_on(backup) == 0
    assert tenant_status("fx").endpoints[1:] == ()


def test_failover_endpoint_may_carry_its_own_credentials_and_db(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, _ = pair
    with RedisServer(password=SECRET) as locked:
        set_REDIS_DB_settings(
            "fc",
            url=primary.url,
            failover_urls=[f"redis://:{SECRET}@{locked.address}/4"],
            failover_cooldown=60,
            **FAST,
        )
        with tenant("fc"):
            kill(primary)
            POPOTO_REDIS_DB.set("k", "v")
        assert direct(locked, db=4).get("k") == "v"
        status = tenant_status("fc")
        assert status.active == f"redis://:***@{locked.address}/4"
        assert SECRET not in repr(status)


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failover_urls": "redis://127.0.0.1:2/0"}, "failover_urls must be a list"),
        ({"failover_urls": [7]}, "a failover url must be a str"),
        ({"failover_urls": ["http://127.0.0.1:2"]}, "invalid url"),
        ({"failover_urls": ["rediss://127.0.0.1:2"]}, "must use redis://"),
        ({"failover_urls": ["unix:///tmp/x.sock"]}, "unix sockets cannot fail over"),
        ({"failover_urls": ["redis://127.0.0.1:2/0?socket_timeout=1"]}, "drop socket_timeout"),
        ({"failover_urls": ["redis://127.0.0.1:1/0"]}, "already an endpoint"),
        ({"failover_urls": ["redis://127.0.0.1:2", "redis://127.0.0.1:2/0"]}, "already an"),
        ({"failover_cooldown": -1}, "failover_cooldown"),
        ({"failover_threshold": 0}, "failover_threshold"),
        (
            {"unix_socket_path": "/tmp/x.sock", "failover_urls": ["redis://127.0.0.1:2"]},
            "connection is given as is",
        ),
    ],
)
def test_bad_failover_settings_are_rejected_and_change_nothing(
    kwargs: dict[str, Any], message: str
) -> None:
    base = {"url": "redis://127.0.0.1:1/0"}
    if "unix_socket_path" in kwargs:
        base = {}
    with pytest.raises(TenantConfigError, match=message):
        set_REDIS_DB_settings("bad", **base, **kwargs)
    assert "bad" not in default_router


def test_runtime_failover_changes_are_checked_too(pair: tuple[RedisServer, RedisServer]) -> None:
    primary, backup = pair
    with pytest.raises(UnknownTenantError):
        register_failover_url("nobody", backup.url)
    set_REDIS_DB_settings("fk", url=primary.url, failover_urls=[backup.url])
    before = default_router.settings("fk")
    with pytest.raises(TenantConfigError, match="already an endpoint"):
        register_failover_url("fk", backup.url)
    with pytest.raises(TenantConfigError, match="not one of its failover urls"):
        default_router.remove_failover("fk", "redis://127.0.0.1:9/0")
    with pytest.raises(TenantConfigError, match="at least one url"):
        default_router.add_failover("fk")
    assert default_router.settings("fk") is before
    assert "failover_urls" not in before.redis_kwargs
    # db 0 written out or left to the primary's (0) is the same endpoint
    default_router.remove_failover("fk", backup.url.removesuffix("/0"))
    assert default_router.settings("fk").topology.failover == ()
    # None and "" name the default tenant, as in set_REDIS_DB_settings
    register_failover_url(None, backup.url)
    assert [e.port for e in default_router.settings("").topology.failover] == [backup.port]


def test_failover_passwords_never_reach_logs_or_status(
    pair: tuple[RedisServer, RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    primary, _ = pair
    caplog.set_level(logging.DEBUG)
    set_REDIS_DB_settings(
        "fz",
        url=primary.url,
        failover_urls=[f"redis://:{SECRET}@127.0.0.1:1/0"],
        failover_cooldown=60,
        **FAST,
    )
    with tenant("fz"):
        kill(primary)
        with pytest.raises(NoHealthyEndpointError) as info:
            POPOTO_REDIS_DB.get("k")
    texts = [caplog.text, str(info.value), repr(tenant_status("fz"))]
    texts.append(repr(default_router.settings("fz")))
    assert all(SECRET not in text for text in texts)
    assert "redis://:***@127.0.0.1:1/0" in str(info.value)


def test_re_registering_keeps_failover_urls_added_at_runtime(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, backup = pair
    set_REDIS_DB_settings("keep", url=primary.url, **FAST)
    register_failover_url("keep", backup.url)
    set_REDIS_DB_settings("keep", url=primary.url, socket_timeout=0.4)  # only a timeout
    assert [e.url for e in tenant_status("keep").endpoints] == [shown(primary), shown(backup)]
    kill(primary)
    with tenant("keep"):
        POPOTO_REDIS_DB.set("k", "kept backup")
    assert direct(backup).get("k") == "kept backup"
    # Passing failover_urls= says the list exactly: [] means none.
    default_router.register_many({"keep": {"url": primary.url, "failover_urls": []}})
    assert [e.url for e in tenant_status("keep").endpoints] == [shown(primary)]
