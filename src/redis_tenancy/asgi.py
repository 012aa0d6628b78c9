"""ASGI middleware: each HTTP request and websocket runs with its tenant active.

Plain ASGI, no framework import: it works under Starlette, FastAPI, Quart, Django's
ASGI handler or a bare ASGI app. It is deliberately not a Starlette
``BaseHTTPMiddleware``: that runs the app in another task, so context changes made
around it do not reliably reach the endpoint. Here the tenant is set in the task
that runs the whole app call, so everything that call does sees it: async
endpoints, sync endpoints run in a thread pool (Starlette/anyio copy the context),
``BackgroundTasks`` (run after the response, still inside the call), streaming
bodies (iterated inside the call or by tasks it starts, which copy the context) and
websocket handlers. When the call returns or raises, the tenant is reset.

A request whose resolver finds no tenant and a request naming an unknown tenant get
the same response (404 by default): nobody can probe which tenant names exist.

Example::

    from starlette.applications import Starlette
    from redis_tenancy.asgi import TenantMiddleware, from_header

    app = Starlette(routes=[...])
    app.add_middleware(TenantMiddleware, resolve=from_header("X-Tenant"))
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import Token
from typing import TYPE_CHECKING, Any

from . import UnknownTenantError, default_router
from ._resolvers import HeaderRule, PathPrefixRule, SubdomainRule

if TYPE_CHECKING:
    from . import Router

__all__ = [
    "ASGIApp",
    "Message",
    "Receive",
    "Resolver",
    "Scope",
    "Send",
    "TenantMiddleware",
    "from_header",
    "from_path_prefix",
    "from_subdomain",
    "reject",
]

# The ASGI shapes, spelled as Starlette spells them so the types interoperate.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: ``resolve(scope)`` returns the tenant's name, or ``None`` for "no tenant"; it may
#: be a plain function or a coroutine function (e.g. one that looks the host up).
Resolver = Callable[[Scope], Awaitable[str | None] | str | None]


def reject(status: int = 404, body: bytes = b"Not Found", *, close_code: int = 1008) -> ASGIApp:
    """An ASGI app answering every request the same way: the default ``on_missing``.

    HTTP requests get ``status`` with ``body`` as text/plain; websockets are closed
    before being accepted with ``close_code`` (1008, policy violation), which servers
    turn into an HTTP 403 for the handshake.
    """
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode("ascii")),
    ]

    async def respond(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": close_code})
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return respond


def _header_values(scope: Scope, key: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == key]


def from_header(name: str = "X-Tenant") -> Callable[[Scope], str | None]:
    """Resolve the tenant from a request header (case-insensitive name).

    A blank header is no tenant; so are two occurrences (or comma-joined parts, as
    proxies merge repeated headers) with different values.
    """
    rule = HeaderRule(name)
    key = rule.asgi_key

    def resolve(scope: Scope) -> str | None:
        return rule.pick(part for value in _header_values(scope, key) for part in value.split(","))

    return resolve


def from_subdomain(domain: str) -> Callable[[Scope], str | None]:
    """Resolve ``acme`` from a ``Host: acme.<domain>`` header (one label only)."""
    rule = SubdomainRule(domain)

    def resolve(scope: Scope) -> str | None:
        hosts = _header_values(scope, b"host")
        return rule.pick(hosts[0]) if len(hosts) == 1 else None

    return resolve


def from_path_prefix(prefix: str = "") -> Callable[[Scope], str | None]:
    """Resolve ``acme`` from a path ``<prefix>/acme/...`` (the path is not rewritten)."""
    rule = PathPrefixRule(prefix)

    def resolve(scope: Scope) -> str | None:
        return rule.pick(scope.get("path", ""))

    return resolve


class TenantMiddleware:
    """Run each ``http`` and ``websocket`` scope with the tenant ``resolve(scope)`` names.

    Args:
        app: the ASGI app to wrap.
        resolve: ``resolve(scope) -> name | None``, sync or async (e.g.
            :func:`from_header`, :func:`from_subdomain`, :func:`from_path_prefix`).
            A sync resolver runs on the event loop: keep it free of blocking I/O.
        on_missing: the ASGI app that answers requests naming no tenant or an
            unknown one; default :func:`reject()` (404, websockets closed with 1008).
        router: the router whose tenants are meant; default the module-level one.

    ``lifespan`` and any other scope type pass through untouched, with no tenant.
    Errors other than an unknown tenant (a failing resolver or tenant loader)
    propagate, so the server answers 500 rather than guessing a tenant.
    """

    def __init__(
        self,
        app: ASGIApp,
        resolve: Resolver,
        *,
        on_missing: ASGIApp | None = None,
        router: Router | None = None,
    ) -> None:
        self.app = app
        self.resolve = resolve
        self.on_missing = on_missing if on_missing is not None else reject()
        self.router = router if router is not None else default_router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        token = await self._activate(scope)
        if token is None:
            await self.on_missing(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            token.var.reset(token)

    async def _activate(self, scope: Scope) -> Token[Any] | None:
        found = self.resolve(scope)
        name = await found if inspect.isawaitable(found) else found
        if name is None:
            return None
        try:
            return await self.router.aactivate(name)
        except UnknownTenantError:
            return None
