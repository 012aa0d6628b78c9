"""Namespaced tenants through the router: many tenants on one server by key prefix.

The engine and the namespaced clients have tests of their own (test_namespace_*.py);
these check what the router adds: ``namespace=`` everywhere settings are accepted, one
pool for every tenant of a server, replaces, purge, ACL rules and the CLI.
"""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

import pytest
import redis

from redis_tenancy import Router, StaleClientError, TenantConfigError
from redis_tenancy._acl import acl_features
from redis_tenancy._cli import main as cli
from redis_tenancy._embedded import RedisServer
from redis_tenancy._purge import PurgeRefusedError
from redis_tenancy.redis_db import (
    POPOTO_ASYNC_REDIS_DB,
    POPOTO_REDIS_DB,
    default_router,
    get_REDIS_DB,
    set_REDIS_DB_settings,
    tenant,
)

from .conftest import Servers, direct


def url_db(server: RedisServer, db: int) -> str:
    return f"redis://{server.address}/{db}"


def test_namespaced_tenants_share_one_server_db_and_pool(servers: Servers) -> None:
    names = [f"shop-{i}" for i in range(50)]
    default_router.register_bulk(names, url=servers.b.url, namespace=True)
    for name in names:
        with tenant(name):
            POPOTO_REDIS_DB.set("user:1", name)
            assert POPOTO_REDIS_DB.keys("*") == [b"user:1"]
            assert POPOTO_REDIS_DB.dbsize() == 1
    stored = sorted(direct(servers.b).keys())
    assert stored == sorted(f"{name}:user:1" for name in names)
    with direct(servers.b) as check:
        me = check.client_id()
        assert [c for c in check.client_list() if int(c["id"]) != me] != []
        ours = [c for c in check.client_list() if int(c["id"]) != me]
    assert len(ours) == 1, "50 namespaced tenants, one connection"
    with tenant("shop-7"):
        POPOTO_REDIS_DB.flushdb()  # the namespace only
    left = direct(servers.b).keys()
    assert "shop-7:user:1" not in left
    assert len(left) == 49


async def test_async_namespaced_tenants_see_their_own_keyspace(servers: Servers) -> None:
    default_router.register_many(
        {
            "acme": {"url": servers.b.url, "namespace": True},
            "globex": {"url": servers.b.url, "namespace": "custom-globex:"},
        }
    )

    async def write(name: str) -> None:
        async with tenant(name):
            await POPOTO_ASYNC_REDIS_DB.hset("user:1", mapping={"owner": name})
            assert await POPOTO_ASYNC_REDIS_DB.hget("user:1", "owner") == name.encode()

    await asyncio.gather(*(write(n) for n in ("acme", "globex") * 5))
    assert sorted(direct(servers.b).keys()) == ["acme:user:1", "custom-globex:user:1"]


def test_namespace_from_a_config_file_and_a_loader(servers: Servers, tmp_path: Path) -> None:
    config = tmp_path / "tenants.toml"
    config.write_text(f'[tenants.filed]\nurl = "{servers.b.url}"\nnamespace = true\n')
    router = Router(
        default_url=servers.a.url,
        loader=lambda name: {"url": servers.b.url, "namespace": True},
    )
    from redis_tenancy._config import read_config

    router.register_many(read_config(config))
    for name in ("filed", "loaded"):
        with router.tenant(name):
            router.redis.set("k", name)
    assert sorted(direct(servers.b).keys()) == ["filed:k", "loaded:k"]
    router.close()


def test_changing_the_prefix_leaves_old_objects_unable_to_follow(servers: Servers) -> None:
    set_REDIS_DB_settings("moving", url=servers.b.url, namespace=True)
    with tenant("moving"):
        old = get_REDIS_DB()
        old.set("k", "v")
    set_REDIS_DB_settings("moving", url=servers.b.url, namespace="moved:")
    with pytest.raises(StaleClientError):
        old.get("k")  # its keys are named for the old prefix
    with tenant("moving"):
        assert POPOTO_REDIS_DB.get("k") is None
        POPOTO_REDIS_DB.set("k", "new")
    assert sorted(direct(servers.b).keys()) == ["moved:k", "moving:k"]


# -- purge -----------------------------------------------------------------------------------


def test_purge_removes_exactly_a_namespace(servers: Servers) -> None:
    # "acm?:" would match "acmX:" unescaped: the foreign keys must survive.
    default_router.register_many(
        {
            "acm?": {"url": servers.b.url, "namespace": True},
            "acmX": {"url": servers.b.url, "namespace": True},
        }
    )
    for name in ("acm?", "acmX"):
        with tenant(name):
            pipe = POPOTO_REDIS_DB.pipeline()
            for i in range(300):
                pipe.set(f"k{i}", name)
            pipe.execute()
    direct(servers.b).set("unowned", "x")
    seen: list[int] = []
    counted = default_router.purge("acm?", dry_run=True, progress=lambda r: seen.append(r.matched))
    assert (counted.matched, counted.deleted) == (300, 0)
    assert seen[-1] == 300
    done = default_router.purge("acm?")
    assert done.deleted == 300
    stored: list[str] = direct(servers.b).keys()  # type: ignore[assignment]
    left = list(stored)
    assert len(left) == 301
    assert all(key.startswith("acmX:") or key == "unowned" for key in left)


async def test_async_purge_of_a_namespace(servers: Servers) -> None:
    set_REDIS_DB_settings("apurge", url=servers.b.url, namespace=True)
    async with tenant("apurge"):
        for i in range(20):
            await POPOTO_ASYNC_REDIS_DB.set(f"k{i}", i)
    direct(servers.b).set("other", 1)
    done = await default_router.async_purge("apurge")
    assert done.deleted == 20
    assert direct(servers.b).keys() == ["other"]


def test_purge_without_a_namespace_needs_a_database_of_its_own(servers: Servers) -> None:
    set_REDIS_DB_settings("own", url=url_db(servers.b, 3))
    set_REDIS_DB_settings("sharing", url=url_db(servers.b, 3))
    with tenant("own"):
        POPOTO_REDIS_DB.set("k", 1)
    with pytest.raises(PurgeRefusedError, match="another registered tenant"):
        default_router.purge("own")
    default_router.remove("sharing")
    assert default_router.purge("own").deleted == 1
    assert direct(servers.b, 3).dbsize() == 0
    set_REDIS_DB_settings("zero", url=servers.c.url)
    with pytest.raises(PurgeRefusedError, match="db 0"):
        default_router.purge("zero")
    assert default_router.purge("zero", force=True).done


# -- ACL rules: the server enforces what the client promises ----------------------------------


def test_acl_rules_confine_a_namespaced_tenants_own_user(servers: Servers) -> None:
    server = servers.b
    set_REDIS_DB_settings("acme", url=server.url, namespace=True)
    with direct(server) as admin:
        admin.set("globex:secret", "not yours")
        rules = default_router.acl_rules("acme", server=acl_features(admin.info("server")))
        admin.execute_command("ACL", "SETUSER", "acme-user", "on", ">acme-pw", *rules)
    try:
        set_REDIS_DB_settings(
            "acme", url=f"redis://acme-user:acme-pw@{server.address}/0", namespace=True
        )
        with tenant("acme"):
            POPOTO_REDIS_DB.set("user:1", "ada")
            assert POPOTO_REDIS_DB.get("user:1") == b"ada"
            assert POPOTO_REDIS_DB.keys("*") == [b"user:1"]
            plain = default_router.client("acme")
        raw = redis.Redis(
            host=server.host, port=server.port, username="acme-user", password="acme-pw"
        )
        with pytest.raises(redis.exceptions.NoPermissionError):
            raw.get("globex:secret")  # the server itself refuses
        raw.close()
        assert plain is not None
    finally:
        with direct(server) as admin:
            admin.execute_command("ACL", "DELUSER", "acme-user")
    set_REDIS_DB_settings("plain", url=servers.c.url)
    with pytest.raises(TenantConfigError, match="no namespace"):
        default_router.acl_rules("plain")


# -- the command line -------------------------------------------------------------------------


def run_cli(*argv: str, stdin_tty: bool = False) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = cli(list(argv))
    finally:
        sys.stdout, sys.stderr = saved
    return code, out.getvalue(), err.getvalue()


def test_cli_purge_counts_then_deletes_with_yes(servers: Servers, tmp_path: Path) -> None:
    config = tmp_path / "tenants.toml"
    config.write_text(
        f'[tenants.acme]\nurl = "{servers.b.url}"\nnamespace = true\n'
        f'[tenants.globex]\nurl = "{servers.b.url}"\nnamespace = true\n'
    )
    with direct(servers.b) as client:
        client.mset({f"acme:k{i}": i for i in range(25)} | {"globex:k": 1})
    code, out, _ = run_cli("--config", str(config), "purge", "acme", "--dry-run")
    assert (code, out.strip()) == (0, "acme: 25 keys in namespace 'acme:'")
    assert direct(servers.b).dbsize() == 26
    code, _, err = run_cli("--config", str(config), "purge", "acme")  # stdin is not a tty
    assert code == 2
    assert "--yes" in err
    assert direct(servers.b).dbsize() == 26
    code, out, _ = run_cli("--config", str(config), "purge", "acme", "--yes")
    assert code == 0
    assert "deleted 25 keys" in out
    assert direct(servers.b).keys() == ["globex:k"]
