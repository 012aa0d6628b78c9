"""Bad input gets a clear typed error and leaves the registry as it was; no secret leaks."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from redis_tenancy import (
    PopotoException,
    Router,
    TenantConfigError,
    UnknownTenantError,
    default_router,
)
from redis_tenancy._redact import redact_url
from redis_tenancy.redis_db import (
    POPOTO_REDIS_DB,
    get_REDIS_DB,
    set_async_redis_db_settings,
    set_REDIS_DB_settings,
    tenant,
)

from .conftest import SECRET, Servers, direct, live, run_python


@pytest.fixture
def registry_snapshot(servers: Servers) -> Iterator[None]:
    set_REDIS_DB_settings("acme", url=servers.a.url)
    before = {n: default_router.settings(n) for n in default_router.names()}
    yield
    after = {n: default_router.settings(n) for n in default_router.names()}
    assert after == before  # the same objects: nothing replaced, added or removed


BAD_CALLS: list[tuple[dict[str, Any], str]] = [
    ({"url": "http://127.0.0.1:6379"}, "scheme"),
    ({"url": "127.0.0.1:6379"}, "scheme"),
    ({"url": "redis://127.0.0.1:notaport/0"}, "invalid url"),
    ({"url": "redis://127.0.0.1:99999/0"}, "invalid url"),
    ({"url": "redis://127.0.0.1:6379/0?db=zero"}, "'db'"),
    ({"url": "redis://127.0.0.1:6379/0?frobnicate=1"}, "frobnicate"),
    ({"url": "redis:///0"}, "no host"),
    ({"url": 6379}, "url must be a str"),
    ({"hots": "127.0.0.1"}, "did you mean 'host'"),
    ({"port": "6379"}, "port must be an int"),
    ({"port": 0}, "port must be an int"),
    ({"db": -1}, "db must be an int >= 0"),
    ({"socket_timeout": "5"}, "socket_timeout"),
    ({"socket_timeout": 0}, "socket_timeout"),
    ({"decode_responses": "yes"}, "decode_responses must be a bool"),
    ({"max_connections": 0}, "max_connections"),
    ({"retry": 3}, "retry must be"),
    ({"protocol": 4}, "protocol"),
    ({"password": 12345}, "password must be a str"),
]


@pytest.mark.usefixtures("registry_snapshot")
@pytest.mark.parametrize(("kwargs", "expected"), BAD_CALLS)
@pytest.mark.parametrize("name", ["acme", "brand-new", ""])
def test_bad_settings_raise_typed_error_and_change_nothing(
    kwargs: dict[str, Any], expected: str, name: str
) -> None:
    with pytest.raises(TenantConfigError, match=expected) as info:
        set_REDIS_DB_settings(name, **kwargs)
    assert isinstance(info.value, PopotoException)
    assert isinstance(info.value, ValueError)
    shown = name or default_router.default_name
    assert f"tenant {shown!r}" in str(info.value)


@pytest.mark.usefixtures("registry_snapshot")
async def test_bad_async_settings_change_nothing() -> None:
    with pytest.raises(TenantConfigError, match="unknown keyword 'cache'"):
        await set_async_redis_db_settings("acme", cache=object())
    with pytest.raises(TenantConfigError, match="port"):
        await set_async_redis_db_settings("acme", port="x")


@pytest.mark.usefixtures("registry_snapshot")
def test_too_many_positional_args_are_rejected() -> None:
    with pytest.raises(TenantConfigError, match="bad arguments"):
        set_REDIS_DB_settings("acme", *range(80))


@pytest.mark.usefixtures("registry_snapshot")
def test_unknown_tenant_in_tenant_block() -> None:
    with pytest.raises(UnknownTenantError, match="'ghost'"), tenant("ghost"):
        pass  # pragma: no cover - never entered


def test_bulk_registration_is_all_or_nothing(servers: Servers) -> None:
    before = default_router.names()
    with pytest.raises(TenantConfigError, match="'two'"):
        default_router.register_many({"one": {"url": servers.a.url}, "two": {"port": "x"}})
    assert default_router.names() == before
    default_router.register_many({"one": {"url": servers.b.url}, "two": {"url": servers.c.url}})
    with tenant("two"):
        POPOTO_REDIS_DB.set("bulk", 2)
    with direct(servers.c) as c:
        assert c.get("bulk") == "2"


def test_url_with_credentials_and_db_query(servers: Servers) -> None:
    set_REDIS_DB_settings("auth", url=f"redis://:{SECRET}@127.0.0.1:{servers.auth.port}?db=5")
    with tenant("auth"):
        POPOTO_REDIS_DB.set("authed", 1)
        assert get_REDIS_DB().connection_pool.connection_kwargs["db"] == 5
    with direct(servers.auth, db=5) as c:
        assert c.get("authed") == "1"


def test_keywords_fill_what_the_url_leaves_out_and_may_not_contradict_it(
    servers: Servers,
) -> None:
    with pytest.raises(TenantConfigError, match="port=1 conflicts with the url"):
        set_REDIS_DB_settings("mixed", url=servers.b.url, port=1, db=3, socket_timeout=2)
    assert "mixed" not in default_router
    set_REDIS_DB_settings("mixed", url=servers.b.url.removesuffix("/0"), db=3, socket_timeout=2)
    kwargs = default_router.settings("mixed").redis_kwargs
    assert (kwargs["port"], kwargs["db"], kwargs["socket_timeout"]) == (servers.b.port, 3, 2)
    with tenant("mixed"):
        POPOTO_REDIS_DB.set("filled", 1)
    with direct(servers.b, db=3) as b:
        assert b.get("filled") == "1"


def test_remove_makes_later_use_raise(servers: Servers) -> None:
    set_REDIS_DB_settings("gone", url=servers.b.url)
    block = tenant("gone")
    with block:
        POPOTO_REDIS_DB.ping()
        default_router.remove("gone")
        with pytest.raises(UnknownTenantError):
            POPOTO_REDIS_DB.ping()
    with pytest.raises(UnknownTenantError), tenant("gone"):
        pass  # pragma: no cover
    with pytest.raises(UnknownTenantError):
        default_router.remove("gone")
    with pytest.raises(ValueError, match="default tenant"):
        default_router.remove("")


# -- secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://alice:pw@h:1/0", "redis://alice:***@h:1/0"),
        ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
        ("redis://pw@h:1/0", "redis://***@h:1/0"),
        ("redis://:p/w#x@h:1/0", "redis://:***@h:1/0"),
        ("redis://h:1/0?password=pw&db=2", "redis://h:1/0?password=***&db=2"),
        ("rediss://u:a@b@h:1", "rediss://u:***@h:1"),
        ("no-scheme-pw", "<unparseable url of 12 characters>"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_password_never_appears_in_logs_reprs_or_errors(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    good = f"redis://:{SECRET}@127.0.0.1:{servers.auth.port}/0"
    set_REDIS_DB_settings("auth", url=good)
    set_REDIS_DB_settings("auth2", host="127.0.0.1", port=servers.auth.port, password=SECRET)
    with tenant("auth"):
        POPOTO_REDIS_DB.set("x", 1)
        texts += [repr(POPOTO_REDIS_DB), str(POPOTO_REDIS_DB), repr(default_router.settings())]
        texts.append(repr(live("auth")))
    bad_calls: list[dict[str, Any]] = [
        {"url": f"http://:{SECRET}@127.0.0.1:1/0"},
        {"url": f"redis://:{SECRET}@127.0.0.1:notaport/0"},
        {"url": f"redis://:{SECRET[:5]}/{SECRET[5:]}@127.0.0.1:1/0"},
        {"url": f"redis://:{SECRET}@127.0.0.1:1/0?junk=1"},
        {"url": f"redis://{SECRET}@/0"},
        {"password": SECRET, "port": "x"},
        {"password": [SECRET]},
        {"ssl_password": 5, "password": SECRET},
    ]
    for kwargs in bad_calls:
        with pytest.raises(TenantConfigError) as info:
            set_REDIS_DB_settings("auth", **kwargs)
        texts += [str(info.value), repr(info.value)]
    set_REDIS_DB_settings("wrong", host="127.0.0.1", port=servers.auth.port, password="nope-x")
    with tenant("wrong"), pytest.raises(redis.exceptions.AuthenticationError) as auth_error:
        POPOTO_REDIS_DB.ping()
    texts.append(str(auth_error.value))
    texts.append(caplog.text)
    for text in texts:
        assert SECRET not in text
        assert SECRET[:5] + "/" not in text
        assert SECRET[5:] not in text
    assert "***" in caplog.text


# -- configuration file and environment at import ------------------------------------------


def test_config_file_registers_tenants_at_import(servers: Servers, tmp_path: Path) -> None:
    config = tmp_path / "tenants.toml"
    config.write_text(
        f'[tenants.acme]\nurl = "{servers.b.url}"\nsocket_timeout = 2\n\n'
        f'[tenants.globex]\nhost = "127.0.0.1"\nport = {servers.c.port}\ndb = 3\n\n'
        f'[tenants.failing]\nurl = "redis://127.0.0.1:1/0"\n'
        f'failover_urls = ["{servers.b.url}"]\nfailover_cooldown = 30\n'
    )
    result = run_python(
        """
        from redis_tenancy.redis_db import tenant, POPOTO_REDIS_DB, default_router
        with tenant("acme"):
            POPOTO_REDIS_DB.set("from-config", "acme")
        with tenant("globex"):
            POPOTO_REDIS_DB.set("from-config", "globex")
        with tenant("failing"):  # its primary's port is closed: served by the failover url
            POPOTO_REDIS_DB.set("from-failover", "failing")
        print(default_router.names())
        """,
        env={"REDIS_TENANCY_CONFIG": str(config)},
    )
    assert result.returncode == 0, result.stderr
    assert "'acme', 'failing', 'globex'" in result.stdout
    with direct(servers.b) as b, direct(servers.c, db=3) as c:
        assert (b.get("from-config"), c.get("from-config")) == ("acme", "globex")
        assert b.get("from-failover") == "failing"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            '[tenants.acme]\nurl = "redis://127.0.0.1:1/0"\n[tenants.bad]\nprot = 1\n',
            ["tenants.toml", "'bad'", "'prot'"],
        ),
        ('[tenants.bad]\nport = "x"\n', ["tenants.toml", "'bad'", "port"]),
        ("[tenants.bad\n", ["tenants.toml", "invalid TOML"]),
        ("[other]\nx = 1\n", ["tenants.toml", "'other'"]),
        ("[tenants]\nacme = 1\n", ["tenants.toml", "tenants.acme"]),
    ],
)
def test_config_file_errors_name_file_tenant_and_key(
    tmp_path: Path, content: str, expected: list[str]
) -> None:
    config = tmp_path / "tenants.toml"
    config.write_text(content)
    result = run_python("import redis_tenancy", env={"REDIS_TENANCY_CONFIG": str(config)})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("redis_tenancy._errors.TenantConfigError")
    for fragment in expected:
        assert fragment in last


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run_python(
        "import redis_tenancy", env={"REDIS_TENANCY_CONFIG": str(tmp_path / "nope.toml")}
    )
    assert result.returncode != 0
    assert "nope.toml: cannot read tenant config" in result.stderr


def test_strict_mode_from_environment(servers: Servers) -> None:
    result = run_python(
        f"""
        from redis_tenancy.redis_db import (POPOTO_REDIS_DB, get_REDIS_DB, tenant,
            set_REDIS_DB_settings, check_connection)
        from redis_tenancy import NoActiveTenantError
        set_REDIS_DB_settings("acme", url="{servers.b.url}")
        for call in (lambda: POPOTO_REDIS_DB.ping(), get_REDIS_DB, check_connection):
            try:
                call()
            except NoActiveTenantError:
                print("refused")
        with tenant("acme"):
            print(check_connection())
        print(hasattr(POPOTO_REDIS_DB, "__test__"))
        """,
        env={"REDIS_TENANCY_REQUIRE_TENANT": "1", "REDIS_URL": servers.a.url},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["refused", "refused", "refused", "True", "False"]
    assert "no active tenant" in result.stderr  # logged once per refusal, as PopotoException does


def test_router_rejects_non_string_default_name() -> None:
    with pytest.raises(TenantConfigError):
        Router(default_name=5, default_url="redis://127.0.0.1:1/0")  # type: ignore[arg-type]
