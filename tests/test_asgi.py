"""redis_tenancy.asgi against real Starlette and FastAPI apps and a real uvicorn server.

Every endpoint writes through the unchanged Popoto API; the assertions read each
tenant's server directly to see where the data landed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
import uvicorn
from fastapi import BackgroundTasks, FastAPI, WebSocket
from starlette.applications import Starlette
from starlette.background import BackgroundTasks as StarletteBackgroundTasks
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from redis_tenancy import default_router
from redis_tenancy.asgi import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    TenantMiddleware,
    from_header,
    from_path_prefix,
    from_subdomain,
    reject,
)
from redis_tenancy.redis_db import POPOTO_ASYNC_REDIS_DB, POPOTO_REDIS_DB, current_tenant

from .conftest import Servers, wait_until
from .tenancy import HOME, count_keys, everywhere, landed, register_tenants

UNSET = object()


@pytest.fixture
def tenants(servers: Servers) -> Servers:
    return register_tenants(servers)


# -- the two apps: the same endpoints, once in Starlette and once in FastAPI ---------------


async def write_async(key: str) -> str:
    name = current_tenant()
    await POPOTO_ASYNC_REDIS_DB.rpush(key, name)
    return name


def write_sync(key: str) -> str:
    name = current_tenant()
    POPOTO_REDIS_DB.rpush(key, name)
    return name


async def stream_async() -> AsyncIterator[str]:
    for _ in range(3):
        yield await write_async("seen:stream") + "\n"


def stream_sync() -> Iterator[str]:
    for _ in range(3):
        yield write_sync("seen:stream") + "\n"


class Barrier:
    """Holds requests until ``parties`` of them are in flight at once (or fails)."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.event: asyncio.Event | None = None
        self.threads = threading.Barrier(parties, timeout=20)

    async def wait_async(self) -> None:
        if self.event is None:
            self.event = asyncio.Event()
        self.arrived += 1
        if self.arrived == self.parties:
            self.event.set()
        try:
            await asyncio.wait_for(self.event.wait(), 20)
        except (TimeoutError, asyncio.TimeoutError):  # distinct types before 3.11
            raise AssertionError(f"only {self.arrived} of {self.parties} arrived") from None


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    # No tenant here: the lifespan scope passed through untouched.
    POPOTO_REDIS_DB.set("seen:lifespan", current_tenant() or "(default)")
    yield


def starlette_app(barrier: Barrier | None = None) -> Starlette:
    async def async_endpoint(request: Request) -> Response:
        return PlainTextResponse(await write_async("seen:async"))

    def sync_endpoint(request: Request) -> Response:
        return PlainTextResponse(write_sync("seen:sync"))

    async def background(request: Request) -> Response:
        tasks = StarletteBackgroundTasks()
        tasks.add_task(write_async, "seen:background")
        tasks.add_task(write_sync, "seen:background")
        return PlainTextResponse("queued", background=tasks)

    async def streaming_async(request: Request) -> Response:
        return StreamingResponse(stream_async())

    async def streaming_sync(request: Request) -> Response:
        return StreamingResponse(stream_sync())

    async def prefixed(request: Request) -> Response:
        return PlainTextResponse(await write_async("seen:async"))

    async def barrier_async(request: Request) -> Response:
        assert barrier is not None
        await barrier.wait_async()
        return PlainTextResponse(await write_async(f"req:{request.query_params['n']}"))

    def barrier_sync(request: Request) -> Response:
        assert barrier is not None
        barrier.threads.wait()
        return PlainTextResponse(write_sync(f"req:{request.query_params['n']}"))

    async def websocket(ws: Any) -> None:
        await ws.accept()
        await ws.receive_text()
        await ws.send_text(await write_async("seen:ws"))
        await ws.close()

    return Starlette(
        routes=[
            Route("/async", async_endpoint),
            Route("/sync", sync_endpoint),
            Route("/background", background),
            Route("/stream/async", streaming_async),
            Route("/stream/sync", streaming_sync),
            Route("/t/{tenant}/async", prefixed),
            Route("/barrier/async", barrier_async),
            Route("/barrier/sync", barrier_sync),
            WebSocketRoute("/ws", websocket),
        ],
        lifespan=lifespan,
    )


def fastapi_app(barrier: Barrier | None = None) -> FastAPI:
    app = FastAPI(lifespan=lifespan)

    @app.get("/async", response_class=PlainTextResponse)
    async def async_endpoint() -> str:
        return await write_async("seen:async")

    @app.get("/sync", response_class=PlainTextResponse)
    def sync_endpoint() -> str:
        return write_sync("seen:sync")

    @app.get("/background", response_class=PlainTextResponse)
    async def background(tasks: BackgroundTasks) -> str:
        tasks.add_task(write_async, "seen:background")
        tasks.add_task(write_sync, "seen:background")
        return "queued"

    @app.get("/stream/async")
    async def streaming_async() -> StreamingResponse:
        return StreamingResponse(stream_async())

    @app.get("/stream/sync")
    def streaming_sync() -> StreamingResponse:
        return StreamingResponse(stream_sync())

    @app.get("/t/{tenant}/async", response_class=PlainTextResponse)
    async def prefixed(tenant: str) -> str:
        return await write_async("seen:async")

    @app.get("/barrier/async", response_class=PlainTextResponse)
    async def barrier_async(n: int) -> str:
        assert barrier is not None
        await barrier.wait_async()
        return await write_async(f"req:{n}")

    @app.get("/barrier/sync", response_class=PlainTextResponse)
    def barrier_sync(n: int) -> str:
        assert barrier is not None
        barrier.threads.wait()
        return write_sync(f"req:{n}")

    @app.websocket("/ws")
    async def websocket(ws: WebSocket) -> None:
        await ws.accept()
        await ws.receive_text()
        await ws.send_text(await write_async("seen:ws"))
        await ws.close()

    return app


APPS: dict[str, Callable[..., Any]] = {"starlette": starlette_app, "fastapi": fastapi_app}


@pytest.fixture(params=sorted(APPS))
def make_app(request: pytest.FixtureRequest) -> Callable[..., Any]:
    return APPS[request.param]


def client_for(app: Any, **middleware: Any) -> TestClient:
    app.add_middleware(TenantMiddleware, **{"resolve": from_header("X-Tenant"), **middleware})
    return TestClient(app)


# -- requests, background tasks, streams, websockets ---------------------------------------


@pytest.mark.parametrize("path", ["/async", "/sync"])
def test_asgi_endpoint_writes_to_its_tenants_server(
    tenants: Servers, make_app: Callable[..., Any], path: str
) -> None:
    key = "seen" + path.replace("/", ":")
    with client_for(make_app()) as client:
        for name in ("acme", "globex", "acme"):
            response = client.get(path, headers={"X-Tenant": name})
            assert response.status_code == 200
            assert response.text == name
    assert landed(tenants, key) == {"b": "acme,acme", "c": "globex"}
    assert landed(tenants, "seen:lifespan") == {"a": "(default)"}


def test_asgi_background_tasks_run_under_the_requests_tenant(
    tenants: Servers, make_app: Callable[..., Any]
) -> None:
    with client_for(make_app()) as client:
        assert client.get("/background", headers={"X-Tenant": "globex"}).text == "queued"
    assert landed(tenants, "seen:background") == {"c": "globex,globex"}


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_asgi_streaming_body_is_produced_under_the_tenant(
    tenants: Servers, make_app: Callable[..., Any], kind: str
) -> None:
    with (
        client_for(make_app()) as client,
        client.stream("GET", f"/stream/{kind}", headers={"X-Tenant": "acme"}) as response,
    ):
        assert response.status_code == 200
        assert response.read().decode().split() == ["acme"] * 3
    assert landed(tenants, "seen:stream") == {"b": "acme,acme,acme"}


def test_asgi_websocket_runs_under_the_tenant(
    tenants: Servers, make_app: Callable[..., Any]
) -> None:
    with (
        client_for(make_app()) as client,
        client.websocket_connect("/ws", headers={"X-Tenant": "globex"}) as ws,
    ):
        ws.send_text("hello")
        assert ws.receive_text() == "globex"
    assert landed(tenants, "seen:ws") == {"c": "globex"}


# -- no tenant, unknown tenant --------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Tenant": "nobody"},
        {"X-Tenant": "   "},
        [("X-Tenant", "acme"), ("X-Tenant", "globex")],
    ],
    ids=["missing", "unknown", "blank", "ambiguous"],
)
def test_asgi_unknown_and_missing_tenants_get_the_same_404(
    tenants: Servers, make_app: Callable[..., Any], headers: Any
) -> None:
    with client_for(make_app()) as client:
        reference = client.get("/async", headers={"X-Tenant": "no-such-tenant"})
        response = client.get("/async", headers=headers)
        with (
            pytest.raises(WebSocketDisconnect) as closed,
            client.websocket_connect("/ws", headers=httpx2.Headers(headers)),
        ):
            pass
    assert (response.status_code, response.content) == (404, b"Not Found")
    assert response.headers == reference.headers
    assert closed.value.code == 1008
    assert count_keys(tenants, "seen:*") == {"a": 1, "b": 0, "c": 0}  # only the lifespan key


def test_asgi_on_missing_response_is_configurable(
    tenants: Servers, make_app: Callable[..., Any]
) -> None:
    with client_for(make_app(), on_missing=reject(403, b"pick a tenant")) as client:
        response = client.get("/async", headers={"X-Tenant": "nobody"})
    assert (response.status_code, response.text) == (403, "pick a tenant")
    assert count_keys(tenants, "seen:async") == {"a": 0, "b": 0, "c": 0}


# -- resolvers ------------------------------------------------------------------------------


def test_asgi_subdomain_and_path_prefix_resolvers(
    tenants: Servers, make_app: Callable[..., Any]
) -> None:
    with client_for(make_app(), resolve=from_subdomain("example.com")) as client:
        assert client.get("http://acme.example.com/async").text == "acme"
        assert client.get("http://globex.example.com:8000/async").text == "globex"
        for host in ("example.com", "a.acme.example.com", "acme.example.org", "[::1]"):
            assert client.get(f"http://{host}/async").status_code == 404, host
    with client_for(make_app(), resolve=from_path_prefix("/t")) as client:
        assert client.get("/t/globex/async").text == "globex"
        assert client.get("/async").status_code == 404
    assert landed(tenants, "seen:async") == {"b": "acme", "c": "globex,globex"}


def test_asgi_async_resolver_is_awaited(tenants: Servers, make_app: Callable[..., Any]) -> None:
    async def resolve(scope: Scope) -> str | None:
        await asyncio.sleep(0)
        return dict(scope["headers"]).get(b"x-shop", b"").decode() or None

    with client_for(make_app(), resolve=resolve) as client:
        assert client.get("/async", headers={"X-Shop": "globex"}).text == "globex"
        assert client.get("/async").status_code == 404
    assert landed(tenants, "seen:async") == {"c": "globex"}


# -- the middleware itself -----------------------------------------------------------------


async def test_asgi_tenant_is_reset_after_the_call_even_when_the_app_raises(
    tenants: Servers,
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await write_async("seen:raw")
        raise RuntimeError("boom")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    middleware = TenantMiddleware(app, resolve=lambda scope: "acme")
    with pytest.raises(RuntimeError, match="boom"):
        await middleware({"type": "http", "headers": []}, receive, send)
    assert default_router.var.get(UNSET) is UNSET  # no tenant left behind
    assert landed(tenants, "seen:raw") == {"b": "acme"}


async def test_asgi_lifespan_and_unknown_scopes_pass_through_without_a_tenant(
    tenants: Servers,
) -> None:
    seen: list[tuple[str, object]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope["type"], default_router.var.get(UNSET)))

    def resolve(scope: Scope) -> str:
        raise AssertionError("resolve must not be called for " + scope["type"])

    middleware: ASGIApp = TenantMiddleware(app, resolve=resolve)
    for kind in ("lifespan", "custom"):
        await middleware({"type": kind}, _never, _discard)
    assert seen == [("lifespan", UNSET), ("custom", UNSET)]


async def _never() -> dict[str, Any]:
    raise AssertionError("receive() not expected")


async def _discard(message: Any) -> None:
    pass


# -- concurrency over a real server --------------------------------------------------------


class RunningServer:
    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), 20, "uvicorn")
        assert self.server.started, "uvicorn stopped before it started serving"
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)


async def test_asgi_concurrent_requests_for_different_tenants_on_uvicorn(
    tenants: Servers, make_app: Callable[..., Any]
) -> None:
    plan = [("acme", "globex")[n % 2] for n in range(12)]
    sync_plan = plan[:6]
    barrier = Barrier(len(plan))
    barrier.threads = threading.Barrier(len(sync_plan), timeout=20)
    app = make_app(barrier)
    app.add_middleware(TenantMiddleware, resolve=from_header("X-Tenant"))
    with RunningServer(app) as base_url:
        limits = httpx2.Limits(max_connections=64)
        async with httpx2.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
            responses = await asyncio.gather(
                *(
                    client.get(f"/barrier/async?n={n}", headers={"X-Tenant": name})
                    for n, name in enumerate(plan)
                ),
                *(
                    client.get(f"/barrier/sync?n={100 + n}", headers={"X-Tenant": name})
                    for n, name in enumerate(sync_plan)
                ),
            )
    names = plan + sync_plan
    assert [r.text for r in responses] == names  # each request saw its own tenant
    numbers = list(range(len(plan))) + [100 + n for n in range(len(sync_plan))]
    assert everywhere(tenants, "req:*") == {
        f"req:{n}": {HOME[name]: name} for n, name in zip(numbers, names, strict=True)
    }
