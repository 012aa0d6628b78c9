"""redis_tenancy.wsgi with Flask, under a real threaded WSGI server (waitress) on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

import httpx2
import pytest
from cheroot.wsgi import Server as WSGIServer
from flask import Flask, Response

from redis_tenancy import default_router
from redis_tenancy.redis_db import POPOTO_REDIS_DB, current_tenant
from redis_tenancy.wsgi import (
    TenantWSGIMiddleware,
    from_header,
    from_path_prefix,
    from_subdomain,
    reject,
)

from .conftest import Servers
from .tenancy import count_keys, landed, register_tenants

UNSET = object()


@pytest.fixture
def tenants(servers: Servers) -> Servers:
    return register_tenants(servers)


def write(key: str) -> str:
    name = current_tenant()
    POPOTO_REDIS_DB.rpush(key, name)
    return name


def flask_app() -> Flask:
    app = Flask(__name__)

    @app.get("/visit")
    def visit() -> str:
        return write("seen:visit")

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[str]:
            try:
                for _ in range(3):
                    yield write("seen:stream") + "\n"
            finally:
                write("seen:stream-done")

        return Response(chunks(), mimetype="text/plain")

    @app.get("/t/<name>/visit")
    def prefixed(name: str) -> str:
        return write("seen:visit")

    return app


class Probe:
    """Outermost WSGI layer: records, on the server's thread, what the thread holds."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.before: list[tuple[int, object]] = []

    def __call__(self, environ: Any, start_response: Any) -> Iterable[bytes]:
        self.before.append((threading.get_ident(), default_router.var.get(UNSET)))
        result: Iterable[bytes] = self.app(environ, start_response)
        return result


class Served:
    """``app`` on a cheroot server with ONE worker thread, so every request reuses it."""

    def __init__(self, app: Any) -> None:
        self.server = WSGIServer(("127.0.0.1", 0), app, numthreads=1, max=1)
        self.server.expiration_interval = 0.05  # its poll interval: stop() waits for one
        self.thread = threading.Thread(target=self.server.serve, daemon=True)

    def __enter__(self) -> httpx2.Client:
        self.server.prepare()  # binds: the port is known before serving starts
        self.thread.start()
        port = self.server.bind_addr[1]
        self.client = httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=20)
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.stop()
        self.thread.join(10)


def test_wsgi_flask_requests_and_streams_under_their_tenants_on_a_reused_thread(
    tenants: Servers,
) -> None:
    app = flask_app()
    app.wsgi_app = TenantWSGIMiddleware(app.wsgi_app, resolve=from_header("X-Tenant"))  # type: ignore[method-assign]
    probe = Probe(app.wsgi_app)
    app.wsgi_app = probe  # type: ignore[method-assign]
    with Served(app) as client:
        assert client.get("/visit", headers={"X-Tenant": "acme"}).text == "acme"
        with client.stream("GET", "/stream", headers={"X-Tenant": "globex"}) as response:
            assert list(response.iter_lines()) == ["globex"] * 3
        assert client.get("/visit").status_code == 404
        assert client.get("/visit", headers={"X-Tenant": "globex"}).text == "globex"
    # One worker thread served all four, and found no tenant left on it each time.
    assert len({thread for thread, _ in probe.before}) == 1
    assert [state for _, state in probe.before] == [UNSET] * 4
    assert landed(tenants, "seen:visit") == {"b": "acme", "c": "globex"}
    assert landed(tenants, "seen:stream") == {"c": "globex,globex,globex"}
    assert landed(tenants, "seen:stream-done") == {"c": "globex"}


def test_wsgi_close_runs_under_the_tenant_and_a_skipped_close_leaks_nothing(
    tenants: Servers,
) -> None:
    app = flask_app()
    middleware = TenantWSGIMiddleware(app.wsgi_app, resolve=from_header("X-Tenant"))
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/stream",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "HTTP_X_TENANT": "acme",
    }
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    body = middleware(dict(environ), start_response)
    assert default_router.var.get(UNSET) is UNSET  # nothing set between the call and the body
    assert next(iter(body)) == b"acme\n"
    assert default_router.var.get(UNSET) is UNSET
    body.close()  # type: ignore[attr-defined]  # the client went away after one chunk
    assert landed(tenants, "seen:stream") == {"b": "acme"}
    assert landed(tenants, "seen:stream-done") == {"b": "acme"}  # the generator's finally

    abandoned = middleware({**environ, "HTTP_X_TENANT": "globex"}, start_response)
    assert next(iter(abandoned)) == b"globex\n"
    del abandoned  # a server that never calls close()
    assert default_router.var.get(UNSET) is UNSET
    assert POPOTO_REDIS_DB.rpush("seen:after", current_tenant()) == 1
    assert landed(tenants, "seen:after") == {"a": ""}  # the default tenant, not globex
    assert statuses == ["200 OK", "200 OK"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Tenant": "nobody"}, {"X-Tenant": " "}, {"X-Tenant": "acme, globex"}],
    ids=["missing", "unknown", "blank", "ambiguous"],
)
def test_wsgi_unknown_and_missing_tenants_get_the_same_404(
    tenants: Servers, headers: dict[str, str]
) -> None:
    app = flask_app()
    app.wsgi_app = TenantWSGIMiddleware(app.wsgi_app, resolve=from_header())  # type: ignore[method-assign]
    client = app.test_client()
    reference = client.get("/visit", headers={"X-Tenant": "no-such-tenant"})
    response = client.get("/visit", headers=headers)
    assert (response.status_code, response.data) == (404, b"Not Found")
    assert list(response.headers) == list(reference.headers)
    assert count_keys(tenants, "seen:*") == {"a": 0, "b": 0, "c": 0}


def test_wsgi_subdomain_path_prefix_and_custom_on_missing(tenants: Servers) -> None:
    app = flask_app()
    inner = app.wsgi_app
    app.wsgi_app = TenantWSGIMiddleware(  # type: ignore[method-assign]
        inner, resolve=from_subdomain("example.com"), on_missing=reject("403 Forbidden", b"no")
    )
    client = app.test_client()
    assert client.get("/visit", base_url="http://acme.example.com").text == "acme"
    assert client.get("/visit", base_url="http://globex.example.com:8080").text == "globex"
    response = client.get("/visit", base_url="http://example.com")
    assert (response.status_code, response.data) == (403, b"no")
    app.wsgi_app = TenantWSGIMiddleware(inner, resolve=from_path_prefix("/t"))  # type: ignore[method-assign]
    assert client.get("/t/acme/visit").text == "acme"
    assert client.get("/visit").status_code == 404
    assert landed(tenants, "seen:visit") == {"b": "acme,acme", "c": "globex"}
