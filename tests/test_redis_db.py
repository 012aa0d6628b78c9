"""The popoto.redis_db surface: same names, same signatures, routed per tenant."""

from __future__ import annotations

import inspect
import logging
import types

import pytest
import redis
import redis.asyncio

import redis_tenancy
from redis_tenancy import redis_db
from redis_tenancy._embedded import free_port
from redis_tenancy._steps import run_steps
from redis_tenancy.redis_db import (
    POPOTO_ASYNC_REDIS_DB,
    POPOTO_REDIS_DB,
    async_check_connection,
    async_scan_keys,
    check_connection,
    get_async_redis_db,
    get_REDIS_DB,
    print_redis_info,
    scan_keys,
    set_async_redis_db_settings,
    set_REDIS_DB_settings,
    tenant,
)

from .conftest import Servers, direct, run_python, server_port

# The reference's parameters: (name, kind, default) in order.
_SETTINGS: list[tuple[str, str, object]] = [
    ("env_partition_name", "POSITIONAL_OR_KEYWORD", ""),
    ("args", "VAR_POSITIONAL", None),
    ("kwargs", "VAR_KEYWORD", None),
]
_SCAN: list[tuple[str, str, object]] = [
    ("pattern", "POSITIONAL_OR_KEYWORD", None),
    ("count", "POSITIONAL_OR_KEYWORD", 1000),
]
REFERENCE_SIGNATURES: dict[str, list[tuple[str, str, object]]] = {
    "get_REDIS_DB": [],
    "set_REDIS_DB_settings": _SETTINGS,
    "get_async_redis_db": [],
    "set_async_redis_db_settings": _SETTINGS,
    "check_connection": [],
    "async_check_connection": [],
    "scan_keys": _SCAN,
    "async_scan_keys": _SCAN,
    "print_redis_info": [],
}


@pytest.mark.parametrize("name", sorted(REFERENCE_SIGNATURES))
def test_redis_db_signature_matches_reference(name: str) -> None:
    func = getattr(redis_db, name)
    assert getattr(redis_tenancy, name) is func
    params = [
        (p.name, p.kind.name, None if p.default is inspect.Parameter.empty else p.default)
        for p in inspect.signature(func).parameters.values()
    ]
    assert params == REFERENCE_SIGNATURES[name]
    is_async = name in {
        "get_async_redis_db",
        "set_async_redis_db_settings",
        "async_check_connection",
        "async_scan_keys",
    }
    assert inspect.iscoroutinefunction(func) is is_async


def test_redis_db_seed_names_exported_from_both_modules() -> None:
    seed = [
        "POPOTO_REDIS_DB",
        "POPOTO_ASYNC_REDIS_DB",
        "PopotoException",
        "BEGINNING_OF_TIME",
        "ENCODING",
        *REFERENCE_SIGNATURES,
    ]
    for name in seed:
        assert getattr(redis_db, name) is getattr(redis_tenancy, name), name
    assert redis_db.ENCODING == "utf-8"
    assert issubclass(redis_tenancy.PopotoException, Exception)


def test_package_all_is_complete_without_duplicates() -> None:
    # Order is ruff's job (RUF022); here: every public name is listed exactly once.
    assert len(redis_tenancy.__all__) == len(set(redis_tenancy.__all__))
    public = {n for n in dir(redis_tenancy) if not n.startswith("_")}
    # Submodules (redis_db, and the integrations: asgi, celery, popoto... once imported)
    # are attributes of the package, not names it exports.
    modules = {n for n in public if isinstance(getattr(redis_tenancy, n), types.ModuleType)}
    assert "redis_db" in modules
    assert public - modules - {"annotations"} == set(redis_tenancy.__all__)
    assert set(redis_db.__all__) <= set(redis_tenancy.__all__)


def _two_tenants(servers: Servers) -> None:
    set_REDIS_DB_settings("acme", url=servers.a.url)
    set_REDIS_DB_settings("globex", host=servers.b.host, port=servers.b.port)


def test_sync_functions_hit_only_the_active_tenant(servers: Servers) -> None:
    _two_tenants(servers)
    for name, mine, other in (("acme", servers.a, servers.b), ("globex", servers.b, servers.a)):
        with tenant(name):
            POPOTO_REDIS_DB.set(f"proxy:{name}", name)
            get_REDIS_DB().set(f"getter:{name}", name)
            assert server_port(get_REDIS_DB()) == mine.port
            assert check_connection() is True
            assert sorted(scan_keys(f"*:{name}")) == [
                f"getter:{name}".encode(),
                f"proxy:{name}".encode(),
            ]
        with direct(mine) as client:
            assert client.get(f"proxy:{name}") == name
            assert client.get(f"getter:{name}") == name
        with direct(other) as client:
            assert client.exists(f"proxy:{name}", f"getter:{name}") == 0


async def test_async_functions_hit_only_the_active_tenant(servers: Servers) -> None:
    _two_tenants(servers)
    for name, mine, other in (("acme", servers.a, servers.b), ("globex", servers.b, servers.a)):
        async with tenant(name):
            await POPOTO_ASYNC_REDIS_DB.set(f"aproxy:{name}", name)
            client = await get_async_redis_db()
            assert isinstance(client, redis.asyncio.Redis)
            await client.set(f"agetter:{name}", name)
            assert server_port(client) == mine.port
            assert await async_check_connection() is True
            found = sorted(await async_scan_keys(f"*:{name}"))
            assert found == [f"agetter:{name}".encode(), f"aproxy:{name}".encode()]
        with direct(mine) as c:
            assert c.mget(f"aproxy:{name}", f"agetter:{name}") == [name, name]
        with direct(other) as c:
            assert c.exists(f"aproxy:{name}", f"agetter:{name}") == 0


def test_print_redis_info_logs_active_tenant_and_calls_info_once(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    _two_tenants(servers)
    with direct(servers.b) as c:
        c.config_set("maxmemory", 64 * 1024 * 1024)
        try:
            c.config_resetstat()
            with tenant("globex"), caplog.at_level(logging.INFO, logger="POPOTO-REDIS_DB"):
                print_redis_info()
            calls = int(c.info("commandstats")["cmdstat_info"]["calls"])
        finally:
            c.config_set("maxmemory", 0)
    assert calls == 1
    text = caplog.text
    assert f"'tcp_port': {servers.b.port}" in text
    assert "Redis currently consumes" in text
    assert "% out of 64.00M" in text


def test_scan_keys_uses_scan_with_count_and_never_keys(servers: Servers) -> None:
    with direct(servers.a) as c:
        c.mset({f"user:{i}": i for i in range(250)})
        c.set("other", 1)
        c.config_resetstat()
        found = scan_keys("user:*", count=50)
        stats = c.info("commandstats")
    assert sorted(found) == sorted(f"user:{i}".encode() for i in range(250))
    assert stats["cmdstat_scan"]["calls"] > 1
    assert "cmdstat_keys" not in stats


def test_check_connection_false_for_unreachable_tenant() -> None:
    port = free_port()
    set_REDIS_DB_settings(
        "down", host="127.0.0.1", port=port, socket_connect_timeout=0.2, retry=None
    )
    with tenant("down"):
        assert check_connection() is False


async def test_async_check_connection_false_for_unreachable_tenant() -> None:
    set_REDIS_DB_settings(
        "down", host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2, retry=None
    )
    async with tenant("down"):
        assert await async_check_connection() is False


def test_default_tenant_outside_blocks_and_for_empty_or_none_name(servers: Servers) -> None:
    set_REDIS_DB_settings(None, url=servers.b.url)
    assert server_port(get_REDIS_DB()) == servers.b.port
    set_REDIS_DB_settings(url=servers.c.url)
    for name in ("", None):
        with tenant(name):
            assert server_port(get_REDIS_DB()) == servers.c.port
    POPOTO_REDIS_DB.set("k", "default")
    with direct(servers.c) as c:
        assert c.get("k") == "default"


def test_socket_timeouts_default_to_five_seconds_and_can_be_overridden(servers: Servers) -> None:
    set_REDIS_DB_settings("acme", url=servers.a.url)
    set_REDIS_DB_settings("quick", url=servers.a.url, socket_timeout=1.5)
    with tenant("acme"):
        kwargs = get_REDIS_DB().connection_pool.connection_kwargs
        assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (5, 5)
    with tenant("quick"):
        assert get_REDIS_DB().connection_pool.connection_kwargs["socket_timeout"] == 1.5


def test_positional_args_go_to_redis_like_the_reference(servers: Servers) -> None:
    set_REDIS_DB_settings("positional", servers.b.host, servers.b.port, 3)
    with tenant("positional"):
        POPOTO_REDIS_DB.set("pos", 1)
        kwargs = get_REDIS_DB().connection_pool.connection_kwargs
    assert (kwargs["port"], kwargs["db"]) == (servers.b.port, 3)
    with direct(servers.b, db=3) as c:
        assert c.get("pos") == "1"


async def test_async_override_changes_async_side_only_until_next_sync_settings(
    servers: Servers,
) -> None:
    set_REDIS_DB_settings("acme", url=servers.a.url)
    await set_async_redis_db_settings("acme", host=servers.b.host, port=servers.b.port)
    async with tenant("acme"):
        assert server_port(await get_async_redis_db()) == servers.b.port
        assert server_port(get_REDIS_DB()) == servers.a.port
        await POPOTO_ASYNC_REDIS_DB.set("side", "async")
    with direct(servers.b) as c:
        assert c.get("side") == "async"
    set_REDIS_DB_settings("acme", url=servers.c.url)
    async with tenant("acme"):
        assert server_port(await get_async_redis_db()) == servers.c.port
        assert server_port(get_REDIS_DB()) == servers.c.port


async def test_async_override_registers_a_new_tenant(servers: Servers) -> None:
    await set_async_redis_db_settings("fresh", url=servers.b.url)
    async with tenant("fresh"):
        await POPOTO_ASYNC_REDIS_DB.set("x", 1)
        assert server_port(get_REDIS_DB()) == servers.b.port
    with direct(servers.b) as c:
        assert c.get("x") == "1"


def test_import_opens_no_socket_and_reads_env() -> None:
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.0)
    port = listener.getsockname()[1]
    try:
        result = run_python(
            """
            import redis_tenancy.redis_db as db
            print(db.default_router.default_name, db.BEGINNING_OF_TIME,
                  db.default_router.settings().endpoint)
            """,
            env={
                "REDIS_URL": f"redis://127.0.0.1:{port}/4",
                "ENV": "staging",
                "BEGINNING_OF_TIME": "1700000000",
            },
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["staging", "1700000000", f"redis://127.0.0.1:{port}/4"]
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


def test_bad_beginning_of_time_is_logged_and_stays_zero() -> None:
    result = run_python(
        "import redis_tenancy.redis_db as db; print(db.BEGINNING_OF_TIME)",
        env={"BEGINNING_OF_TIME": "yesterday"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
    assert "BEGINNING_OF_TIME" in result.stderr


def test_helper_plans_decide_without_io(caplog: pytest.LogCaptureFixture) -> None:
    """The sync and async helpers share these plans; only the calls differ."""

    class Node:
        def __init__(self, name: str) -> None:
            self.name = name

    one, two = Node("h:1"), Node("h:2")
    replies = iter([(7, [b"a"]), (0, [b"b"]), ({"h:1": 0}, [b"c"]), ({"h:2": 0}, [])])
    asked: list[object] = []

    def scan(step: tuple[object, dict[str, object]]) -> object:
        asked.append((step[0], step[1]["cursor"]))
        return next(replies)

    assert run_steps(redis_db._scan_plan([None], "k:*", 5), scan) == [b"a", b"b"]
    assert run_steps(redis_db._scan_plan([one, two], "k:*", 5), scan) == [b"c"]
    assert asked == [(None, 0), (None, 7), (one, 0), (two, 0)]

    errors = {one: None, two: ConnectionError("refused")}
    with caplog.at_level(logging.WARNING, logger="POPOTO-REDIS_DB"):
        assert run_steps(redis_db._check_plan([one, two]), errors.get) is False
        assert run_steps(redis_db._check_plan([one]), errors.get) is True
    assert [r.getMessage() for r in caplog.records] == [
        "cluster node h:2 does not answer PING: refused"
    ]
