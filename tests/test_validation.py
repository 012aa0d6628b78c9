"""Bad input is refused at registration with a typed error, and nothing changes.

Covers what used to be accepted silently (a db path ``/1x`` read as db 0, ``/1/2`` as
db 12, port 0, a blank host, infinite timeouts, negative Router arguments, ``db=True``
once ``db=1`` was cached), ``url=`` next to keywords that contradict it, the
``valkey://``/``valkeys://`` schemes, a bad ``REDIS_URL`` at import, and the one set of
validators everything shares.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from redis_tenancy import PopotoException, Router, TenantConfigError
from redis_tenancy._checks import COUNT, SECONDS, check_policy, is_number, require
from redis_tenancy.redis_db import (
    POPOTO_REDIS_DB,
    default_router,
    set_REDIS_DB_settings,
    tenant,
)

from .conftest import Servers, direct, run_python

CLOSED = "redis://127.0.0.1:1"


@pytest.fixture
def unchanged(servers: Servers) -> Iterator[None]:
    """The default router's registry is exactly the same after the test body."""
    set_REDIS_DB_settings("acme", url=servers.a.url)
    before = {n: default_router.settings(n) for n in default_router.names()}
    yield
    after = {n: default_router.settings(n) for n in default_router.names()}
    assert after == before


def router() -> Router:
    return Router(default_url=CLOSED + "/0")


# -- values that used to be accepted ------------------------------------------------------

SILENTLY_ACCEPTED: list[tuple[dict[str, Any], str]] = [
    ({"url": "redis://127.0.0.1:6379/1x"}, "bad db"),
    ({"url": "redis://127.0.0.1:6379/one"}, "bad db"),
    ({"url": "redis://127.0.0.1:6379/1/2"}, "bad db"),
    ({"url": "redis://127.0.0.1:6379/-1"}, "bad db"),
    ({"url": "redis://127.0.0.1:0"}, "bad port"),
    ({"url": "redis://127.0.0.1:0/0"}, "bad port"),
    ({"url": "redis:// /0"}, "whitespace"),
    ({"url": "redis://:pw@ /0"}, "whitespace"),
    ({"url": "redis:// 127.0.0.1/0"}, "whitespace"),
    ({"url": "redis://127.0.0.1 :1/0"}, "whitespace"),
    ({"url": "redis://127.0.0.1:6379/0?socket_timeout=inf"}, "socket_timeout"),
    ({"url": "redis://127.0.0.1:6379/0?max_connections=0"}, "max_connections"),
    ({"url": "redis://127.0.0.1:6379/0?db=1&db=2"}, "given twice"),
    ({"url": "redis://127.0.0.1:6379/1?db=2"}, "db is given twice"),
    ({"url": "redis://127.0.0.1:6379/0?cluster=1"}, "unknown query argument .*'cluster'"),
    ({"url": "redis://127.0.0.1:6379/0#x"}, "'#'"),
    ({"url": "redis://h_1:1/0?client_name=a@b"}, "percent-encode"),
    ({"url": "unix://host/tmp/x.sock"}, "takes no host"),
    ({"host": " "}, "host must be a host name"),
    ({"host": ""}, "host must be a host name"),
    ({"host": "redis://127.0.0.1:6379/0"}, "a url goes in url="),
    ({"socket_timeout": float("inf")}, "socket_timeout must be a number of seconds"),
    ({"socket_timeout": float("nan")}, "socket_timeout"),
    ({"socket_connect_timeout": float("inf")}, "socket_connect_timeout"),
    ({"health_check_interval": float("nan")}, "health_check_interval"),
    ({"failover_cooldown": float("nan")}, "failover_cooldown"),
    ({"sentinels": [("127.0.0.1", 26379.0)], "service_name": "m"}, "item 0"),
    ({"sentinels": [(" ", 26379)], "service_name": "m"}, "item 0"),
]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(("kwargs", "expected"), SILENTLY_ACCEPTED)
@pytest.mark.parametrize("name", ["acme", "brand-new", ""])
def test_set_REDIS_DB_settings_refuses_what_it_used_to_accept(
    kwargs: dict[Any, Any], expected: str, name: str
) -> None:
    with pytest.raises(TenantConfigError, match=expected) as info:
        set_REDIS_DB_settings(name, **kwargs)
    assert info.value.__context__ is None
    assert info.value.__cause__ is None


def test_db_true_is_refused_even_after_db_1_was_registered() -> None:
    made = router()
    made.register("one", url=CLOSED, db=1)
    with pytest.raises(TenantConfigError, match="db must be an int"):
        made.register("truth", url=CLOSED, db=True)
    assert "truth" not in made
    # The same one level down: a cached (host, 26379) pair must not admit 26379.0.
    made.register("s1", sentinels=(("127.0.0.1", 26379),), service_name="m")
    with pytest.raises(TenantConfigError, match="sentinels"):
        made.register("s2", sentinels=(("127.0.0.1", 26379.0),), service_name="m")
    assert "s2" not in made


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"negative_ttl": -1}, "negative_ttl must be a number of seconds >= 0"),
        ({"negative_ttl": float("nan")}, "negative_ttl"),
        ({"negative_ttl": float("inf")}, "negative_ttl"),
        ({"negative_ttl": "5"}, "negative_ttl"),
        ({"max_live_clients": 0}, "max_live_clients must be an int >= 1"),
        ({"max_live_clients": 1.5}, "max_live_clients"),
        ({"max_connections": -3}, "max_connections"),
        ({"idle_timeout": float("inf")}, "idle_timeout"),
        ({"idle_timeout": float("nan")}, "idle_timeout"),
        ({"wait_timeout": None}, "wait_timeout"),
        ({"wait_timeout": float("inf")}, "wait_timeout"),
        ({"wait_timeout": -1}, "wait_timeout"),
        ({"require_tenant": "yes"}, "require_tenant must be a bool"),
        ({"loader": 5}, "loader must be a callable"),
        ({"async_loader": "x"}, "async_loader must be a callable"),
        ({"default_url": 6379}, "default_url must be a str"),
        ({"default_url": "redis://127.0.0.1:1/1x"}, "bad db"),
    ],
)
def test_router_arguments_are_checked(kwargs: dict[str, Any], expected: str) -> None:
    kwargs.setdefault("default_url", CLOSED + "/0")
    with pytest.raises(TenantConfigError, match=expected):
        Router(**kwargs)


def test_router_accepts_its_boundary_values() -> None:
    made = Router(default_url=CLOSED + "/0", negative_ttl=0, max_live_clients=1, wait_timeout=0.5)
    assert made.names() == [made.default_name]
    made.close()


def test_register_many_refuses_what_is_not_a_mapping_of_mappings() -> None:
    made = router()
    before = made.names()
    with pytest.raises(TenantConfigError, match="register_many takes a mapping"):
        made.register_many("not a mapping")  # type: ignore[arg-type]
    with pytest.raises(TenantConfigError, match="register_many takes a mapping"):
        made.register_many([("a", {"url": CLOSED})])  # type: ignore[arg-type]
    with pytest.raises(TenantConfigError, match="tenant 'b': settings must be a mapping"):
        made.register_many({"a": {"url": CLOSED}, "b": CLOSED})  # type: ignore[dict-item]
    with pytest.raises(TenantConfigError, match="setting names must be str"):
        made.register_many({"a": {"url": CLOSED}, "b": {1: 2}})  # type: ignore[dict-item]
    with pytest.raises(TenantConfigError, match="tenant name must be a str"):
        made.register_many({"a": {"url": CLOSED}, 5: {"url": CLOSED}})  # type: ignore[dict-item]
    assert made.names() == before


def test_register_bulk_refuses_a_string_or_a_non_iterable_of_names() -> None:
    made = router()
    with pytest.raises(TenantConfigError, match="iterable of tenant names"):
        made.register_bulk("acme", url=CLOSED)
    with pytest.raises(TenantConfigError, match="iterable of tenant names"):
        made.register_bulk(5, url=CLOSED)  # type: ignore[arg-type]
    assert len(made) == 1


@pytest.mark.parametrize("name", ["", None, "main"])
def test_removing_the_default_tenant_is_a_typed_error(name: str | None) -> None:
    made = Router(default_name="main", default_url=CLOSED + "/0")
    with pytest.raises(TenantConfigError, match=r"default tenant .* cannot be removed"):
        made.remove(name)  # type: ignore[arg-type]
    assert made.names() == ["main"]
    with pytest.raises(TenantConfigError):
        made.remove(7)  # type: ignore[arg-type]


# -- url= next to keywords ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"url": CLOSED + "/0", "db": 3}, "db=3 conflicts with the url, which says 0"),
        ({"url": CLOSED + "/0", "port": 2}, "port=2 conflicts"),
        ({"url": CLOSED + "/0", "host": "localhost"}, "host='localhost' conflicts"),
        ({"url": "redis://:a@127.0.0.1:1/0", "password": "b"}, "password= differs"),
        ({"url": CLOSED + "/0?socket_timeout=2", "socket_timeout": 3}, "socket_timeout= differs"),
        ({"url": "rediss://127.0.0.1:1/0", "ssl": False}, "ssl= differs"),
        ({"url": "valkey://127.0.0.1:1/0", "ssl": True}, "use rediss://"),
        ({"url": "redis+sentinel://127.0.0.1:1/m", "host": "h"}, "host= has no meaning"),
        ({"url": "redis+cluster://127.0.0.1:1", "port": 2}, "port= has no meaning"),
        ({"url": "unix:///tmp/x.sock", "host": "h"}, "host= has no meaning"),
    ],
)
def test_url_with_contradicting_keywords_is_refused(kwargs: dict[str, Any], expected: str) -> None:
    made = router()
    with pytest.raises(TenantConfigError, match=expected):
        made.register("x", **kwargs)
    assert "x" not in made


def test_bad_positional_arguments_are_refused_without_a_chained_error() -> None:
    with pytest.raises(TenantConfigError, match=r"bad arguments for redis\.Redis") as info:
        router().register("x", *range(80))
    assert info.value.__context__ is None, "the TypeError of Signature.bind must not ride along"


def test_positional_arguments_that_contradict_the_url_are_refused_too() -> None:
    with pytest.raises(TenantConfigError, match="host='h' conflicts"):
        router().register("x", "h", url=CLOSED + "/0")


def test_keywords_that_agree_with_or_fill_in_the_url_are_accepted() -> None:
    made = router()
    same = made.register("same", url=CLOSED + "/4", db=4, port=1, socket_timeout=2)
    assert (same.redis_kwargs["db"], same.redis_kwargs["port"]) == (4, 1)
    # As redis.Redis.from_url(url, db=3): a part the URL leaves out comes from the keyword.
    filled = made.register("filled", url=CLOSED, db=3, password="pw")
    assert (filled.redis_kwargs["db"], filled.redis_kwargs["password"]) == (3, "pw")
    as_float = made.register("float", url=CLOSED + "/0?socket_timeout=2", socket_timeout=2)
    assert as_float.redis_kwargs["socket_timeout"] == 2


# -- valkey:// and valkeys:// --------------------------------------------------------------


def test_valkey_scheme_reaches_a_real_server(servers: Servers) -> None:
    url = f"valkey://127.0.0.1:{servers.b.port}/2"
    set_REDIS_DB_settings("vk", url=url)
    with tenant("vk"):
        POPOTO_REDIS_DB.set("scheme", "valkey")
    with direct(servers.b, db=2) as b:
        assert b.get("scheme") == "valkey"
    assert default_router.settings("vk").endpoint == f"redis://{servers.b.address}/2"


def test_valkey_failover_url_and_loader_answer_reach_real_servers(servers: Servers) -> None:
    set_REDIS_DB_settings(
        "vf", url=CLOSED + "/0", failover_urls=[f"valkey://127.0.0.1:{servers.c.port}/3"]
    )
    with tenant("vf"):  # the primary's port is closed: the valkey:// failover url serves
        POPOTO_REDIS_DB.set("via", "failover")
    loaded = Router(
        default_url=CLOSED + "/0", loader=lambda name: f"valkey://127.0.0.1:{servers.c.port}/4"
    )
    with loaded.tenant("dyn"):
        loaded.redis.set("via", "loader")
    loaded.close()
    with direct(servers.c, db=3) as c3, direct(servers.c, db=4) as c4:
        assert (c3.get("via"), c4.get("via")) == ("failover", "loader")


@pytest.mark.parametrize(
    ("alias", "original"),
    [
        (
            "valkey://u:pw@127.0.0.1:7000/3?socket_timeout=2",
            "redis://u:pw@127.0.0.1:7000/3?socket_timeout=2",
        ),
        ("valkeys://u:pw@127.0.0.1:7000/3", "rediss://u:pw@127.0.0.1:7000/3"),
        ("VALKEYS://127.0.0.1", "rediss://127.0.0.1"),
    ],
)
def test_valkey_schemes_are_exact_aliases(alias: str, original: str) -> None:
    made = router()
    mine, theirs = made.register("a", url=alias), made.register("b", url=original)
    assert dict(mine.redis_kwargs) == dict(theirs.redis_kwargs)
    assert mine.endpoint == theirs.endpoint
    tls = router()
    tls.register("t", url="rediss://127.0.0.1:7000/0", failover_urls=["valkeys://127.0.0.1:7001"])
    assert [e.port for e in tls.settings("t").topology.failover] == [7001]
    with pytest.raises(TenantConfigError, match="must use rediss://"):
        tls.register("t", url="rediss://127.0.0.1:7000/0", failover_urls=["valkey://h:7001"])


def test_valkey_urls_in_REDIS_URL_and_the_config_file(servers: Servers, tmp_path: Path) -> None:
    config = tmp_path / "tenants.toml"
    config.write_text(
        f'[tenants.acme]\nurl = "valkey://127.0.0.1:{servers.b.port}/5"\nnamespace = true\n'
    )
    result = run_python(
        """
        from redis_tenancy.redis_db import tenant, POPOTO_REDIS_DB, default_router
        POPOTO_REDIS_DB.set("from", "REDIS_URL")
        with tenant("acme"):
            POPOTO_REDIS_DB.set("from", "config")
        print(default_router.settings("acme").key_prefix("acme"))
        """,
        env={
            "REDIS_TENANCY_CONFIG": str(config),
            "REDIS_URL": f"valkey://127.0.0.1:{servers.c.port}/6",
        },
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["acme:"]
    with direct(servers.b, db=5) as b, direct(servers.c, db=6) as c:
        assert (b.get("acme:from"), c.get("from")) == ("config", "REDIS_URL")


# -- a bad REDIS_URL at import ----------------------------------------------------------------


def test_a_bad_REDIS_URL_fails_the_import_naming_the_variable() -> None:
    # More shapes (and the CLI) in test_secrets.py: each one costs an interpreter start.
    result = run_python("import redis_tenancy", env={"REDIS_URL": "redis://127.0.0.1:6379/1x"})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("redis_tenancy._errors.TenantConfigError: REDIS_URL")


# -- one set of validators ----------------------------------------------------------------


def test_validators_refuse_bools_nan_and_infinity() -> None:
    assert [is_number(v) for v in (1, 0.5, True, math.nan, math.inf, -math.inf, "1", None)] == [
        True,
        True,
        *[False] * 6,
    ]
    assert [COUNT(v) for v in (1, True, 0, 1.0)] == [True, False, False, False]
    assert [SECONDS(v) for v in (0.1, 0, math.inf)] == [True, False, False]
    with pytest.raises(TenantConfigError, match=r"^tenant 'x': port must be an int >= 1, got 0"):
        require("port", 0, COUNT, "tenant 'x'")


@pytest.mark.parametrize(
    ("cooldown", "threshold", "expected"),
    [
        (-1, 1, "failover_cooldown must be a finite number of seconds >= 0"),
        (math.inf, 1, "failover_cooldown"),
        (math.nan, 1, "failover_cooldown"),
        ("5", 1, "failover_cooldown"),
        (5, 0, "failover_threshold must be an int >= 1"),
        (5, True, "failover_threshold must be an int >= 1"),
        (5, 1.0, "failover_threshold"),
    ],
)
def test_check_policy(cooldown: object, threshold: object, expected: str) -> None:
    with pytest.raises(TenantConfigError, match=expected):
        check_policy(cooldown, threshold)
    check_policy(0, 1)


def test_every_refusal_is_a_popoto_exception() -> None:
    made = router()
    odd_calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((), {"url": None, "host": object()}),
        (tuple(range(80)), {}),
        ((), {"retry": object()}),
        ((), {"url": "redis://h/0", "failover_urls": [None]}),
        ((), {"sentinels": [("h",)], "service_name": "m"}),
        ((), {"sentinels": [("h", 1)], "service_name": ""}),
        ((), {"cluster": 1}),
        ((), {"namespace": 0}),
    ]
    for args, kwargs in odd_calls:
        with pytest.raises(PopotoException):
            made.register("odd", *args, **kwargs)
    assert "odd" not in made
