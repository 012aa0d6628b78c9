"""WSGI middleware: each request, and its streamed body, runs with its tenant active.

A WSGI server calls the app, then iterates the returned body and finally calls its
``close()``, usually on a thread it reuses for the next request. Setting the tenant
on that thread and resetting it in ``close()`` would leak the tenant into the next
request whenever ``close()`` is skipped (a server bug, a client gone at the wrong
moment). So the tenant is set only while the app call runs, and again around each
step of the body (every ``next()`` and the ``close()``): streamed chunks, generator
``finally`` blocks and ``close()`` hooks see it, and the thread never keeps it.

Unknown and missing tenants get the same response (404 by default).

Example (Flask)::

    from redis_tenancy.wsgi import TenantWSGIMiddleware, from_header

    app.wsgi_app = TenantWSGIMiddleware(app.wsgi_app, resolve=from_header("X-Tenant"))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from . import UnknownTenantError, default_router
from ._carry import BoundIterator
from ._resolvers import HeaderRule, PathPrefixRule, SubdomainRule

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from . import Router

__all__ = [
    "TenantWSGIMiddleware",
    "from_header",
    "from_path_prefix",
    "from_subdomain",
    "reject",
]


def reject(status: str = "404 Not Found", body: bytes = b"Not Found") -> WSGIApplication:
    """A WSGI app answering every request the same way: the default ``on_missing``."""
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ]

    def respond(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response(status, list(headers))
        return [body]

    return respond


def from_header(name: str = "X-Tenant") -> Callable[[WSGIEnvironment], str | None]:
    """Resolve the tenant from a request header (``X-Tenant`` -> ``HTTP_X_TENANT``).

    WSGI servers join repeated headers with a comma; such a value names no tenant
    unless all its parts agree.
    """
    rule = HeaderRule(name)
    key = rule.environ_key

    def resolve(environ: WSGIEnvironment) -> str | None:
        value = environ.get(key)
        return None if value is None else rule.pick(_utf8(value).split(","))

    return resolve


def from_subdomain(domain: str) -> Callable[[WSGIEnvironment], str | None]:
    """Resolve ``acme`` from ``Host: acme.<domain>`` (one label only)."""
    rule = SubdomainRule(domain)

    def resolve(environ: WSGIEnvironment) -> str | None:
        return rule.pick(environ.get("HTTP_HOST"))

    return resolve


def from_path_prefix(prefix: str = "") -> Callable[[WSGIEnvironment], str | None]:
    """Resolve ``acme`` from ``PATH_INFO`` ``<prefix>/acme/...`` (not rewritten)."""
    rule = PathPrefixRule(prefix)

    def resolve(environ: WSGIEnvironment) -> str | None:
        return rule.pick(_utf8(environ.get("PATH_INFO", "")))

    return resolve


def _utf8(value: str) -> str:
    # PEP 3333 hands over request bytes decoded as latin-1; undo that.
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


class TenantWSGIMiddleware:
    """Run each request with the tenant ``resolve(environ)`` names.

    Args:
        app: the WSGI app to wrap.
        resolve: ``resolve(environ) -> name | None`` (e.g. :func:`from_header`).
        on_missing: the WSGI app answering requests naming no tenant or an unknown
            one; default :func:`reject()` (404).
        router: the router whose tenants are meant; default the module-level one.
    """

    def __init__(
        self,
        app: WSGIApplication,
        resolve: Callable[[WSGIEnvironment], str | None],
        *,
        on_missing: WSGIApplication | None = None,
        router: Router | None = None,
    ) -> None:
        self.app = app
        self.resolve = resolve
        self.on_missing = on_missing if on_missing is not None else reject()
        self.router = router if router is not None else default_router

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        name = self.resolve(environ)
        if name is None:
            return self.on_missing(environ, start_response)
        var = self.router.var
        try:
            token = self.router.activate(name)
        except UnknownTenantError:
            return self.on_missing(environ, start_response)
        try:
            active: Any = var.get()
            body = self.app(environ, start_response)
        finally:
            var.reset(token)
        if type(body) is list or type(body) is tuple:
            return body  # already produced: keeps servers' len() shortcut
        return BoundIterator(body, var, active)
