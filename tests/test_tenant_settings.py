"""The settings object itself: ``namespace=`` and the failover-list methods (no I/O)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from redis_tenancy import Router, TenantConfigError, TenantSettings
from redis_tenancy._backend import identity
from redis_tenancy._config import read_config
from redis_tenancy.redis_db import default_router, set_async_redis_db_settings

CLOSED = "redis://127.0.0.1:1"
CLUSTER = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"


def router(default_name: str = "main") -> Router:
    return Router(default_name=default_name, default_url=CLOSED + "/0")


# -- namespace= ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "namespace", "prefix"),
    [
        (CLOSED, True, "acme:"),
        (CLUSTER, True, "{acme}:"),
        (CLOSED, "custom:", "custom:"),
        (CLUSTER, "{shop}:acme:", "{shop}:acme:"),
        (CLOSED, False, None),
        (CLOSED, None, None),
    ],
)
def test_namespace_resolves_to_a_key_prefix_per_tenant(
    url: str, namespace: bool | str | None, prefix: str | None
) -> None:
    settings = router().register("acme", url=url, namespace=namespace)
    assert settings.key_prefix("acme") == prefix
    assert router().register("acme", url=url).key_prefix("acme") is None


def test_one_shared_settings_object_gives_each_tenant_its_own_prefix() -> None:
    made = router()
    made.register_bulk(["acme", "globex"], url=CLOSED, namespace=True)
    pending = made._registry.pending
    assert pending["acme"] is pending["globex"], "bulk registration shares one object"
    shared = pending["acme"]
    assert (shared.key_prefix("acme"), shared.key_prefix("globex")) == ("acme:", "globex:")
    assert made.settings("globex").key_prefix("globex") == "globex:"


def test_namespace_is_not_part_of_the_connection_identity() -> None:
    made = router()
    plain = made.register("plain", url=CLOSED + "/0")
    spaced = made.register("spaced", url=CLOSED + "/0", namespace=True)
    custom = made.register("custom", url=CLOSED + "/0", namespace="c:")
    assert identity(plain) == identity(spaced) == identity(custom)
    assert "namespace" not in spaced.redis_kwargs
    assert "namespace" not in spaced.async_kwargs
    assert (
        repr(spaced)
        == f"TenantSettings(name='spaced', endpoint={spaced.endpoint!r}, namespace=True)"
    )


def test_namespace_is_accepted_everywhere_settings_are(tmp_path: Path) -> None:
    made = Router(
        default_url=CLOSED + "/0",
        loader=lambda name: {"url": CLOSED + "/0", "namespace": True},
    )
    made.register_many({"many": {"url": CLOSED, "namespace": "m:"}})
    made.register_bulk(["bulk"], url=CLOSED, namespace=True)
    config = tmp_path / "tenants.toml"
    config.write_text(f'[tenants.file]\nurl = "{CLOSED}"\nnamespace = "f:"\n')
    made.register_many(read_config(config))
    with made.tenant("loaded"):  # asks the loader; connects nothing
        pass
    prefixes = {n: made.settings(n).key_prefix(n) for n in ("many", "bulk", "file", "loaded")}
    assert prefixes == {"many": "m:", "bulk": "bulk:", "file": "f:", "loaded": "loaded:"}


@pytest.mark.parametrize("value", [1, 0, "", b"acme:", ["acme:"], 1.0])
def test_namespace_must_be_a_bool_none_or_a_non_empty_str(value: Any) -> None:
    made = router()
    with pytest.raises(
        TenantConfigError, match="namespace must be True, False, None or a non-empty"
    ):
        made.register("acme", url=CLOSED, namespace=value)
    assert "acme" not in made


def test_namespace_true_needs_a_name_to_derive_the_prefix_from() -> None:
    made = router(default_name="")
    before = made.settings("")
    # Registered for another name first: the shared, cached settings must still be refused.
    made.register("acme", url=CLOSED, namespace=True)
    for name in ("", None):
        with pytest.raises(
            TenantConfigError, match="derives the key prefix from the tenant's name"
        ):
            made.register(name, url=CLOSED, namespace=True)
    assert made.settings("") is before
    assert made.register("", url=CLOSED, namespace="app:").key_prefix("") == "app:"
    named = router(default_name="prod").register("", url=CLOSED, namespace=True)
    assert named.key_prefix("prod") == "prod:"


@pytest.mark.parametrize("prefix", ["acme:", "{}:acme:", "acme:{", "}acme{:"])
def test_cluster_prefix_needs_a_hash_tag(prefix: str) -> None:
    made = router()
    with pytest.raises(TenantConfigError, match="hash tag"):
        made.register("acme", url=CLUSTER, namespace=prefix)
    assert "acme" not in made
    with pytest.raises(TenantConfigError, match="hash tag"):
        made.register("}odd", url=CLUSTER, namespace=True)


async def test_namespace_is_refused_for_the_async_side_alone() -> None:
    before = default_router.names()
    with pytest.raises(TenantConfigError, match="namespace is set per tenant"):
        await set_async_redis_db_settings("acme", url=CLOSED, namespace=True)
    assert default_router.names() == before


# -- failover list editing ------------------------------------------------------------------


def failover_ports(settings: TenantSettings) -> list[int]:
    return [e.port for e in settings.topology.failover]


def test_with_failover_added_and_removed() -> None:
    base = router().register("acme", url=CLOSED + "/2", password="pw")
    added = base.with_failover_added(["redis://127.0.0.1:2", "valkey://127.0.0.1:3/5"])
    assert failover_ports(added) == [2, 3]
    assert added.topology.failover_shown == (
        "redis://:***@127.0.0.1:2/2, redis://:***@127.0.0.1:3/5"
    )
    assert added.async_topology is added.topology
    removed = added.with_failover_removed("redis://127.0.0.1:2/2")  # db 2 written out
    assert failover_ports(removed) == [3]
    assert base.topology.failover == (), "the original object is unchanged"


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda s: s.with_failover_added([]), "at least one url"),
        (lambda s: s.with_failover_added([CLOSED + "/0"]), "already an endpoint"),
        (lambda s: s.with_failover_added(["redis://127.0.0.1:2"] * 2), "already an endpoint"),
        (lambda s: s.with_failover_added([b"redis://h"]), "must be a str"),
        (lambda s: s.with_failover_added(["redis+sentinel://h:1/m"]), "redis:// or rediss://"),
        (lambda s: s.with_failover_removed("redis://127.0.0.1:9"), "not one of its failover"),
        (lambda s: s.with_failover_removed("redis://127.0.0.1:9/x"), "bad db"),
    ],
)
def test_failover_editing_errors_name_the_tenant(call: Any, expected: str) -> None:
    settings = router().register("acme", url=CLOSED + "/0")
    with pytest.raises(TenantConfigError, match=expected) as info:
        call(settings)
    assert "tenant 'acme'" in str(info.value)


def test_failover_editing_refuses_tenants_that_cannot_fail_over() -> None:
    sentinel = router().register("s", url="redis+sentinel://127.0.0.1:26379/m")
    with pytest.raises(TenantConfigError, match="not a sentinel tenant"):
        sentinel.with_failover_added(["redis://127.0.0.1:2"])


def test_re_registration_without_failover_urls_keeps_the_endpoints() -> None:
    made = router()
    old = made.register("acme", url=CLOSED + "/0", failover_urls=["redis://127.0.0.1:2"])
    old = old.with_failover_added(["redis://127.0.0.1:3"])  # as register_failover_url does
    new = made.register("acme", url=CLOSED + "/0", socket_timeout=2)
    assert not new.failover_given
    kept = new.with_failover_of(old)
    assert failover_ports(kept) == [2, 3]
    assert kept.redis_kwargs["socket_timeout"] == 2
    assert kept.async_topology is kept.topology


def test_re_registration_with_failover_urls_sets_exactly_those() -> None:
    made = router()
    old = made.register("acme", url=CLOSED + "/0", failover_urls=["redis://127.0.0.1:2"])
    cleared = made.register("acme", url=CLOSED + "/0", failover_urls=[])
    assert cleared.failover_given
    assert cleared.with_failover_of(old) is cleared
    other = made.register("acme", url=CLOSED + "/0", failover_urls=["redis://127.0.0.1:4"])
    assert failover_ports(other.with_failover_of(old)) == [4]


def test_kept_endpoints_follow_the_new_primary() -> None:
    made = router()
    old = made.register(
        "acme", url=CLOSED + "/0", failover_urls=["redis://127.0.0.1:2", "redis://127.0.0.1:3"]
    )
    # Moved to the first backup: it is the primary now, not a failover endpoint of itself.
    moved = made.register("acme", url="redis://127.0.0.1:2/0").with_failover_of(old)
    assert failover_ports(moved) == [3]
    # A new db: endpoints that left the db to the primary follow it, in their text too.
    other_db = made.register("acme", url=CLOSED + "/7").with_failover_of(old)
    assert other_db.topology.failover_shown == "redis://127.0.0.1:2/7, redis://127.0.0.1:3/7"
    # No longer a plain redis:// tenant: there is no failover list to keep.
    cluster = made.register("acme", url=CLUSTER).with_failover_of(old)
    assert cluster.topology.failover == ()


def test_switching_tls_without_failover_urls_is_refused() -> None:
    made = router()
    old = made.register("acme", url=CLOSED + "/0", failover_urls=["redis://127.0.0.1:2"])
    with pytest.raises(TenantConfigError, match="pass failover_urls="):
        made.register("acme", url="rediss://127.0.0.1:1/0")
    assert made.settings("acme").topology == old.topology, "refused: nothing changed"
    tls = made.register("acme", url="rediss://127.0.0.1:1/0", failover_urls=[])
    assert tls.topology.failover == ()
    no_failover = made.register("acme", url=CLOSED + "/0", failover_urls=[])
    assert tls.with_failover_of(no_failover) is tls
