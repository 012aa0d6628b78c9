"""Never less available than plain redis-py: what a ``redis.Redis`` survives, a tenant survives.

Blocking and slow commands that outlive ``socket_timeout`` (issue 8 item 7), a restart
of a tenant's only server (item 15), closing a client nobody used (item 15), and async
pub/sub reconnecting (item 14) — each side by side with a plain client where it helps.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.backoff
import redis.retry

from redis_tenancy import NoHealthyEndpointError
from redis_tenancy._embedded import RedisServer, find_redis_server
from redis_tenancy.redis_db import (
    POPOTO_ASYNC_REDIS_DB,
    POPOTO_REDIS_DB,
    default_router,
    set_REDIS_DB_settings,
    tenant,
    tenant_status,
)

from .conftest import direct, wait_until

NO_RETRY = redis.retry.Retry(redis.backoff.NoBackoff(), 0)


@pytest.fixture
def own() -> Iterator[RedisServer]:
    """A server this test alone may kill and restart."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


def debug_allowed() -> tuple[str, ...]:
    """Server arguments that allow DEBUG (a config option since Redis 7; 6.2 allows it)."""
    version = subprocess.run(
        [find_redis_server(), "--version"], capture_output=True, text=True, check=True
    ).stdout
    major = int(version.split("v=")[1].split(".")[0])
    is_valkey = "valkey" in version.lower()
    return ("--enable-debug-command", "yes") if is_valkey or major >= 7 else ()


@pytest.fixture
def backup() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


def states(name: str) -> list[str]:
    return [e.state for e in tenant_status(name).endpoints]


# -- a blocking command is not a sick server (item 7) ----------------------------------------


@pytest.mark.parametrize("with_backup", [False, True], ids=["alone", "with-backup"])
def test_blocking_pop_outliving_the_timeout_keeps_the_tenant_online(
    own: RedisServer, backup: RedisServer, with_backup: bool
) -> None:
    extra: dict[str, Any] = {"failover_urls": [backup.url]} if with_backup else {}
    set_REDIS_DB_settings("jobs", url=own.url, socket_timeout=0.5, retry=NO_RETRY, **extra)
    served = threading.Event()
    errors: list[BaseException] = []
    stop = threading.Event()

    def other_requests() -> None:
        with tenant("jobs"):
            while not stop.is_set():
                try:
                    POPOTO_REDIS_DB.incr("served")
                except BaseException as exc:
                    errors.append(exc)
                    return
                served.set()

    worker = threading.Thread(target=other_requests)
    worker.start()
    try:
        assert served.wait(10)
        with tenant("jobs"), pytest.raises(redis.exceptions.TimeoutError):
            POPOTO_REDIS_DB.blpop(["queue"], timeout=0)  # outlives socket_timeout
        served.clear()
        assert served.wait(10), "other callers are still served"
    finally:
        stop.set()
        worker.join(10)
    assert errors == []
    assert set(states("jobs")) == {"closed"}, "the server answered PING the whole time"
    assert int(direct(own).get("served") or 0) > 0
    assert direct(backup).get("served") is None


def test_slow_command_outliving_the_timeout_opens_no_circuit() -> None:
    with RedisServer(extra_args=debug_allowed()) as own:
        _slow_command_opens_no_circuit(own)


def _slow_command_opens_no_circuit(own: RedisServer) -> None:
    set_REDIS_DB_settings("slow", url=own.url, socket_timeout=0.3, retry=NO_RETRY)
    with tenant("slow"):
        with pytest.raises(redis.exceptions.TimeoutError):
            POPOTO_REDIS_DB.execute_command("DEBUG", "SLEEP", "1")  # type: ignore[no-untyped-call]
        assert states("slow") == ["closed"]
        assert POPOTO_REDIS_DB.ping()  # no NoHealthyEndpointError, no cooldown


async def test_async_blocking_pop_outliving_the_timeout_keeps_the_tenant_online(
    own: RedisServer,
) -> None:
    set_REDIS_DB_settings("ajobs", url=own.url, socket_timeout=0.3, retry=NO_RETRY)
    async with tenant("ajobs"):
        with pytest.raises(redis.exceptions.TimeoutError):
            await POPOTO_ASYNC_REDIS_DB.blpop(["queue"], timeout=0)
        assert states("ajobs") == ["closed"]
        assert await POPOTO_ASYNC_REDIS_DB.ping()


def test_read_timeout_on_a_paused_primary_is_confirmed_and_fails_over(
    own: RedisServer, backup: RedisServer
) -> None:
    # A read timeout alone now only raises a suspicion: the check (connect + PING) on
    # a paused server gets no answer, and with a backup to go to, that opens the circuit.
    # No redis-py retry: only the read timeout's check can have opened it.
    set_REDIS_DB_settings(
        "paused",
        url=own.url,
        failover_urls=[backup.url],
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=NO_RETRY,
        failover_cooldown=60,
    )
    with tenant("paused"):
        POPOTO_REDIS_DB.ping()
        own.signal(19)  # SIGSTOP
        try:
            with pytest.raises(redis.exceptions.TimeoutError):
                POPOTO_REDIS_DB.get("k")
            assert states("paused") == ["open", "closed"]
            POPOTO_REDIS_DB.set("k", "on the backup")
        finally:
            own.signal(18)  # SIGCONT
    assert direct(backup).get("k") == "on the backup"


# -- a restarted server serves at once (item 15) ------------------------------------------------


def test_restarted_only_server_serves_the_next_call_without_waiting_the_cooldown(
    own: RedisServer,
) -> None:
    set_REDIS_DB_settings("only", url=own.url, failover_cooldown=60)
    plain = redis.Redis.from_url(own.url)
    with tenant("only"):
        POPOTO_REDIS_DB.set("k", "v")
        plain.ping()
        own.kill()
        with pytest.raises(NoHealthyEndpointError):
            POPOTO_REDIS_DB.get("k")
        with pytest.raises(redis.exceptions.ConnectionError):
            plain.get("k")
        own.start()
        assert plain.ping()  # a plain client with the same settings is back...
        # ...and so is the tenant: no 60 s cooldown to wait out (at most the short
        # on-demand backoff, so poll; the deadline is far below the cooldown).
        wait_until(lambda: _answers(), timeout=10, what="the tenant after the restart")
    plain.close()


class _Counted(redis.retry.Retry):
    """A Retry that counts the attempts of its class (redis-py copies the object)."""

    attempts = 0

    def call_with_retry(
        self, do: Any, fail: Any, is_retryable: Any = None, with_failure_count: bool = False
    ) -> Any:
        def counted() -> Any:
            type(self).attempts += 1
            return do()

        return super().call_with_retry(counted, fail, is_retryable, with_failure_count)


class _PlainCounted(_Counted):
    attempts = 0


class _TenantCounted(_Counted):
    attempts = 0


def test_a_call_made_while_the_only_server_restarts_survives_as_a_plain_clients_does(
    own: RedisServer,
) -> None:
    # Both clients get the same settings: up to 400 retries 50 ms apart. The server is
    # down when both calls start and comes back while they retry: both must succeed.
    settings: dict[str, Any] = {"socket_timeout": 1, "socket_connect_timeout": 1}
    plain = redis.Redis.from_url(
        own.url, retry=_PlainCounted(redis.backoff.ConstantBackoff(0.05), 400), **settings
    )
    set_REDIS_DB_settings(
        "restarting",
        url=own.url,
        retry=_TenantCounted(redis.backoff.ConstantBackoff(0.05), 400),
        failover_cooldown=60,
        **settings,
    )
    own.kill()
    results: dict[str, object] = {}

    def call(name: str, do: Any) -> None:
        try:
            results[name] = do()
        except BaseException as exc:
            results[name] = exc

    def through_tenant() -> object:
        with tenant("restarting"):
            return POPOTO_REDIS_DB.set("k", "tenant")

    threads = [
        threading.Thread(target=call, args=("plain", lambda: plain.set("p", "plain"))),
        threading.Thread(target=call, args=("tenant", through_tenant)),
    ]
    for thread in threads:
        thread.start()
    wait_until(
        lambda: _PlainCounted.attempts >= 2 and _TenantCounted.attempts >= 2,
        what="both calls retrying against the stopped server",
    )
    own.start()
    for thread in threads:
        thread.join(60)
    assert results == {"plain": True, "tenant": True}
    assert direct(own).get("k") == "tenant"
    plain.close()


def _answers() -> bool:
    try:
        return bool(POPOTO_REDIS_DB.ping())
    except NoHealthyEndpointError:
        return False


async def test_async_restarted_only_server_serves_without_waiting_the_cooldown(
    own: RedisServer,
) -> None:
    set_REDIS_DB_settings("aonly", url=own.url, failover_cooldown=60)
    async with tenant("aonly"):
        await POPOTO_ASYNC_REDIS_DB.set("k", "v")
        own.kill()
        with pytest.raises(NoHealthyEndpointError):
            await POPOTO_ASYNC_REDIS_DB.get("k")
        own.start()
        for _ in range(1000):
            try:
                assert await POPOTO_ASYNC_REDIS_DB.ping()
                break
            except NoHealthyEndpointError:
                await asyncio.sleep(0.01)
        else:
            pytest.fail("the tenant did not come back within 10 s")


def test_closing_a_client_nobody_used_builds_nothing(own: RedisServer) -> None:
    # Its server is gone: building and connecting a client at teardown would fail.
    set_REDIS_DB_settings("unused", url=own.url)
    own.kill()
    before = default_router.stats()
    with tenant("unused"):
        POPOTO_REDIS_DB.close()
    assert default_router.stats().live_clients == before.live_clients


async def test_async_closing_a_client_nobody_used_connects_nowhere(own: RedisServer) -> None:
    set_REDIS_DB_settings("aunused", url=own.url)
    own.kill()
    before = default_router.stats()
    async with tenant("aunused"):
        await POPOTO_ASYNC_REDIS_DB.aclose()  # no error although its server is gone
    after = default_router.stats()
    assert after.open_connections <= before.open_connections
    assert default_router.status("aunused").endpoints[0].consecutive_failures == 0


# -- async pub/sub reconnects like plain redis-py (item 14) ----------------------------------


@pytest.mark.parametrize("through", ["plain", "tenant"])
async def test_async_pubsub_resubscribes_after_its_connection_drops(
    own: RedisServer, through: str
) -> None:
    set_REDIS_DB_settings("subs", url=own.url)
    async with tenant("subs"):
        client: Any = redis.asyncio.Redis.from_url(own.url) if through == "plain" else None
        source = client if client is not None else POPOTO_ASYNC_REDIS_DB
        pubsub = source.pubsub()
        await pubsub.subscribe("c")
        assert (await pubsub.get_message(timeout=1))["type"] == "subscribe"
        assert pubsub.connection is not None
        await pubsub.connection.disconnect()
        # The next read reconnects and re-subscribes (redis-py's own behaviour).
        assert (await pubsub.get_message(timeout=1))["type"] == "subscribe"
        assert await POPOTO_ASYNC_REDIS_DB.publish("c", "after") == 1
        message = await pubsub.get_message(timeout=1)
        assert message is not None
        assert message["data"] == b"after"
        await pubsub.aclose()
        if client is not None:
            await client.aclose()


async def test_async_pubsub_listen_and_handlers_survive_a_reconnect(own: RedisServer) -> None:
    set_REDIS_DB_settings("listen", url=own.url)
    got: list[bytes] = []
    handled = asyncio.Event()

    def handler(message: dict[str, Any]) -> None:
        got.append(message["data"])
        handled.set()

    async with tenant("listen"):
        pubsub = POPOTO_ASYNC_REDIS_DB.pubsub()
        await pubsub.subscribe(h=handler)
        await pubsub.subscribe("l")
        assert pubsub.connection is not None
        await pubsub.connection.disconnect()
        listener = pubsub.listen()
        kinds = [(await listener.__anext__())["type"] for _ in range(2)]
        assert kinds == ["subscribe", "subscribe"]
        await POPOTO_ASYNC_REDIS_DB.publish("l", "listened")
        assert (await listener.__anext__())["data"] == b"listened"
        await POPOTO_ASYNC_REDIS_DB.publish("h", "handled")
        while not handled.is_set():
            await pubsub.get_message(timeout=0.1)
        assert got == [b"handled"]
        await pubsub.aclose()
