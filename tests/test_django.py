"""redis_tenancy.django with Django's test clients: WSGI (Client) and ASGI (AsyncClient).

The middleware chain is ours, then a sync-only middleware that Django runs in a
worker thread under ASGI, then the view: sync and async views, sync and async
streaming responses. Data is checked on each tenant's own server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import django  # type: ignore[import-untyped]
import pytest
from django.conf import settings  # type: ignore[import-untyped]

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="redis-tenancy-tests-" + "x" * 40,
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=[],
        DATABASES={},
        MIDDLEWARE=["redis_tenancy.django.TenantMiddleware", f"{__name__}.SyncOnlyMiddleware"],
    )
    django.setup()

from django.http import HttpResponse, StreamingHttpResponse  # type: ignore[import-untyped]
from django.test import AsyncClient, Client, override_settings  # type: ignore[import-untyped]
from django.urls import path  # type: ignore[import-untyped]

from redis_tenancy import default_router
from redis_tenancy.django import TenantMiddleware
from redis_tenancy.redis_db import POPOTO_ASYNC_REDIS_DB, POPOTO_REDIS_DB, current_tenant

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


async def awrite(key: str) -> str:
    name = current_tenant()
    await POPOTO_ASYNC_REDIS_DB.rpush(key, name)
    return name


class SyncOnlyMiddleware:
    """A sync-only middleware: Django runs it in a worker thread under ASGI."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        saw = current_tenant()
        response = self.get_response(request)
        response["X-Middleware-Saw"] = saw
        return response


def sync_view(request: Any) -> Any:
    return HttpResponse(write("seen:view"))


async def async_view(request: Any) -> Any:
    return HttpResponse(await awrite("seen:view"))


def sync_stream(request: Any) -> Any:
    def chunks() -> Iterator[str]:
        for _ in range(3):
            yield write("seen:stream") + "\n"

    return StreamingHttpResponse(chunks())


async def async_stream(request: Any) -> Any:
    async def chunks() -> AsyncIterator[str]:
        for _ in range(3):
            yield await awrite("seen:stream") + "\n"

    return StreamingHttpResponse(chunks())


urlpatterns = [
    path("sync", sync_view),
    path("async", async_view),
    path("stream/sync", sync_stream),
    path("stream/async", async_stream),
]


def tenant_from_query(request: Any) -> str | None:
    """A resolver named by the REDIS_TENANCY_RESOLVER setting."""
    name: str | None = request.GET.get("tenant")
    return name


class AsyncShopMiddleware(TenantMiddleware):
    """A subclass with its own async resolve(): ``X-Shop: shop-acme`` is tenant acme."""

    async def resolve(self, request: Any) -> str | None:
        await asyncio.sleep(0)
        shop: str = request.headers.get("X-Shop", "")
        return shop.removeprefix("shop-") if shop.startswith("shop-") else None


def get(kind: str, url: str, headers: dict[str, str] | None = None) -> Any:
    """GET through Django's WSGI handler (Client) or its ASGI handler (AsyncClient)."""
    if kind == "wsgi":
        return Client().get(url, headers=headers)
    return asyncio.run(AsyncClient().get(url, headers=headers))


@pytest.fixture(params=["wsgi", "asgi"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- views -----------------------------------------------------------------------------------


@pytest.mark.parametrize("view", ["sync", "async"])
def test_django_views_run_under_the_tenant(tenants: Servers, kind: str, view: str) -> None:
    for name in ("acme", "globex"):
        response = get(kind, f"/{view}", headers={"X-Tenant": name})
        assert response.content == name.encode()
        # A sync-only middleware: under ASGI Django runs it in a worker thread.
        assert response["X-Middleware-Saw"] == name
        assert default_router.var.get(UNSET) is UNSET
    assert landed(tenants, "seen:view") == {"b": "acme", "c": "globex"}


def test_django_sync_streaming_under_wsgi_yields_each_chunk_under_the_tenant(
    tenants: Servers,
) -> None:
    response = Client().get("/stream/sync", headers={"X-Tenant": "acme"})
    assert default_router.var.get(UNSET) is UNSET  # the body has not run yet
    chunks = []
    for chunk in response.streaming_content:
        chunks.append(chunk)
        assert default_router.var.get(UNSET) is UNSET  # set only while a chunk is made
    assert chunks == [b"acme\n"] * 3
    response.close()
    assert landed(tenants, "seen:stream") == {"b": "acme,acme,acme"}


async def test_django_async_streaming_under_asgi_yields_each_chunk_under_the_tenant(
    tenants: Servers,
) -> None:
    response = await AsyncClient().get("/stream/async", headers={"X-Tenant": "globex"})
    chunks = [chunk async for chunk in response.streaming_content]
    assert chunks == [b"globex\n"] * 3
    assert default_router.var.get(UNSET) is UNSET
    assert landed(tenants, "seen:stream") == {"c": "globex,globex,globex"}


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators")
async def test_django_sync_streaming_under_asgi_runs_in_a_thread_under_the_tenant(
    tenants: Servers,
) -> None:
    response = await AsyncClient().get("/stream/sync", headers={"X-Tenant": "acme"})
    # Django consumes a sync iterator in a worker thread (sync_to_async(list)).
    assert [chunk async for chunk in response] == [b"acme\n"] * 3
    assert landed(tenants, "seen:stream") == {"b": "acme,acme,acme"}


# -- missing and unknown tenants ------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Tenant": "nobody"}, {"X-Tenant": "  "}, {"X-Tenant": "acme,globex"}],
    ids=["missing", "unknown", "blank", "ambiguous"],
)
def test_django_unknown_and_missing_tenants_get_the_same_404(
    tenants: Servers, kind: str, headers: dict[str, str]
) -> None:
    for view in ("sync", "async"):
        response = get(kind, f"/{view}", headers=headers)
        assert (response.status_code, response.content) == (404, b"Not Found")
        assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert count_keys(tenants, "seen:*") == {"a": 0, "b": 0, "c": 0}


# -- how the tenant is found ---------------------------------------------------------------


def test_django_resolver_from_a_dotted_path_setting(tenants: Servers, kind: str) -> None:
    with override_settings(REDIS_TENANCY_RESOLVER=f"{__name__}.tenant_from_query"):
        assert get(kind, "/sync?tenant=acme").content == b"acme"
        assert get(kind, "/async?tenant=globex").content == b"globex"
        assert get(kind, "/sync", headers={"X-Tenant": "acme"}).status_code == 404
    assert landed(tenants, "seen:view") == {"b": "acme", "c": "globex"}


def test_django_header_name_setting(tenants: Servers, kind: str) -> None:
    with override_settings(REDIS_TENANCY_HEADER="X-Shop"):
        assert get(kind, "/sync", headers={"X-Shop": "globex"}).content == b"globex"
        assert get(kind, "/async", headers={"X-Tenant": "acme"}).status_code == 404
    assert landed(tenants, "seen:view") == {"c": "globex"}


def test_django_subclass_with_async_resolve(tenants: Servers, kind: str) -> None:
    with override_settings(MIDDLEWARE=[f"{__name__}.AsyncShopMiddleware"]):
        assert get(kind, "/async", headers={"X-Shop": "shop-acme"}).content == b"acme"
        assert get(kind, "/sync", headers={"X-Shop": "shop-globex"}).content == b"globex"
        assert get(kind, "/sync", headers={"X-Tenant": "acme"}).status_code == 404
    assert landed(tenants, "seen:view") == {"b": "acme", "c": "globex"}
