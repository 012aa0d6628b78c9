"""A managed connection's handshake: one write after AUTH/HELLO, same session as redis-py's.

Each test opens the same connection twice on a real server, once with redis-py's own
connection class and once with ours, and compares what the server says about the
session (``CLIENT INFO``) and how many writes the handshake took.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import pytest
import redis
import redis.asyncio
from redis.maint_notifications import MaintNotificationsConfig

from redis_tenancy import _handshake
from redis_tenancy._clients import build
from redis_tenancy._connection import AsyncManagedConnection, ManagedConnection, PoolState
from redis_tenancy._embedded import RedisServer
from redis_tenancy._failover import EndpointPlan
from redis_tenancy._settings import STANDALONE
from redis_tenancy.redis_db import POPOTO_REDIS_DB, set_REDIS_DB_settings, tenant

from .conftest import Servers, direct

# The CLIENT INFO fields a handshake sets; the rest (id, addr, age, ...) differ anyway.
FIELDS = ("name", "db", "resp", "lib-name", "lib-ver", "user")


class Counting(ManagedConnection):
    writes = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).writes += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


class AsyncCounting(AsyncManagedConnection):
    writes = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).writes += 1
        await super().send_packed_command(command, check_health)


def managed(kwargs: dict[str, Any], connection_class: type | None = None) -> Any:
    """A client whose pool opens managed connections, as the router builds them."""
    plan = EndpointPlan([(None, "shown")])
    client = build(kwargs, STANDALONE, lambda: plan, PoolState())
    client.auto_close_connection_pool = True  # this test owns it: close its pool with it
    if connection_class is not None:
        client.connection_pool.connection_class = connection_class
    return client


def amanaged(kwargs: dict[str, Any], connection_class: type | None = None) -> Any:
    plan = EndpointPlan([(None, "shown")])
    client = build(kwargs, STANDALONE, lambda: plan, PoolState(), asynchronous=True)
    client.auto_close_connection_pool = True
    if connection_class is not None:
        client.connection_pool.connection_class = connection_class
    return client


def unpipelined(auth: bool, protocol: int) -> int:
    """Writes of redis-py's own handshake plus CLIENT INFO (see the fallback test)."""
    return (1 if auth or protocol == 3 else 0) + (protocol == 3) + 5


def session(info: dict[str, Any]) -> dict[str, str]:
    return {field: str(info.get(field, "")) for field in FIELDS}


def settings(server: RedisServer, protocol: int) -> dict[str, Any]:
    return {
        "host": server.host,
        "port": server.port,
        "password": server.password,
        "db": 3,
        "client_name": "hand-shake",
        "protocol": protocol,
        "decode_responses": True,
    }


CASES = [(protocol, auth) for protocol in (2, 3) for auth in (False, True)]


@pytest.mark.parametrize(("protocol", "auth"), CASES)
def test_sync_handshake_sends_its_tail_in_one_write(
    servers: Servers, protocol: int, auth: bool
) -> None:
    server = servers.auth if auth else servers.a
    kwargs = settings(server, protocol)
    with redis.Redis(**kwargs) as plain:
        expected = session(plain.client_info())
    client = managed(kwargs, Counting)
    Counting.writes = 0
    with client:
        assert session(client.client_info()) == expected
    # AUTH/HELLO when there is one, then the whole tail at once, then CLIENT INFO. (A
    # redis-py release the contract was not checked against gets its own handshake.)
    head = 1 if auth or protocol == 3 else 0
    assert Counting.writes == (head + 2 if _handshake.trusted() else unpipelined(auth, protocol))
    assert expected["name"] == "hand-shake"
    assert expected["db"] == "3"


@pytest.mark.parametrize(("protocol", "auth"), CASES)
async def test_async_handshake_sends_its_tail_in_one_write(
    servers: Servers, protocol: int, auth: bool
) -> None:
    server = servers.auth if auth else servers.a
    kwargs = settings(server, protocol)
    async with redis.asyncio.Redis(**kwargs) as plain:
        expected = session(await plain.client_info())
    client = amanaged(kwargs, AsyncCounting)
    AsyncCounting.writes = 0
    async with client:
        assert session(await client.client_info()) == expected
    head = 1 if auth or protocol == 3 else 0
    expected_writes = head + 2 if _handshake.trusted() else unpipelined(auth, protocol)
    assert AsyncCounting.writes == expected_writes


def test_handshake_refusals_are_redis_pys_errors_and_close_the_connection(
    servers: Servers,
) -> None:
    # A database the server does not have, and a client name it refuses: the caller
    # sees the error plain redis-py shows, and no half-set-up connection stays open.
    for bad in ({"db": 99}, {"client_name": "has space"}):
        with pytest.raises(redis.ResponseError) as plain_error:
            redis.Redis(host="127.0.0.1", port=servers.b.port, **bad).ping()
        with direct(servers.b) as check:
            before = int(check.info("clients")["connected_clients"])
        set_REDIS_DB_settings("bad", host="127.0.0.1", port=servers.b.port, **bad)
        with tenant("bad"), pytest.raises(redis.ResponseError) as ours:
            POPOTO_REDIS_DB.ping()
        assert str(ours.value) == str(plain_error.value)
        with direct(servers.b) as check:
            assert int(check.info("clients")["connected_clients"]) == before


def test_async_handshake_refusal_closes_the_connection(servers: Servers) -> None:
    async def main() -> str:
        client = amanaged({"host": "127.0.0.1", "port": servers.b.port, "db": 99})
        state = client.connection_pool.connection_kwargs["pool_state"]
        async with client:
            with pytest.raises(redis.ResponseError) as error:
                await client.ping()
            assert state.counts() == (0, 0)
            return str(error.value)

    assert "DB index is out of range" in asyncio.run(main())


@pytest.mark.parametrize("enabled", [True, "auto"])
def test_maintenance_notifications_refused_by_the_server_behave_as_in_redis_py(
    servers: Servers, enabled: bool | Literal["auto"]
) -> None:
    # Redis < 8 has no CLIENT MAINT_NOTIFICATIONS: "auto" shrugs, True is an error.
    kwargs: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": servers.b.port,
        "protocol": 3,
        "maint_notifications_config": MaintNotificationsConfig(enabled=enabled),
    }
    outcomes: list[tuple[str, object]] = []
    for ours in (False, True):
        client = managed(kwargs) if ours else redis.Redis(**kwargs)
        with client:
            try:
                outcomes.append(("ok", client.ping()))
            except redis.ResponseError as exc:
                outcomes.append(("error", str(exc)))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == ("error" if enabled is True else "ok")


@pytest.mark.parametrize("protocol", [2, 3])
def test_untrusted_redis_py_gets_its_own_handshake_back(
    servers: Servers, protocol: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A redis-py release the contract above was not checked against: the managed
    # connection must not touch its handshake at all (one write per command).
    monkeypatch.setattr(_handshake, "_TRUSTED", False)
    kwargs = settings(servers.auth, protocol)
    with redis.Redis(**kwargs) as plain:
        expected = session(plain.client_info())
    client = managed(kwargs, Counting)
    Counting.writes = 0
    with client:
        assert session(client.client_info()) == expected
    # AUTH or HELLO, (RESP3: CLIENT MAINT_NOTIFICATIONS), CLIENT SETNAME, SETINFO x2,
    # SELECT, then CLIENT INFO: one write each
    assert Counting.writes == 6 + (protocol == 3)
