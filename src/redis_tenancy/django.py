"""Django middleware: each request, and its streamed response, runs with its tenant active.

Add it to ``MIDDLEWARE`` (before anything that touches Redis)::

    MIDDLEWARE = ["redis_tenancy.django.TenantMiddleware", ...]
    REDIS_TENANCY_HEADER = "X-Tenant"                          # the default resolver
    # or: REDIS_TENANCY_RESOLVER = "myproject.tenancy.tenant_of"  # tenant_of(request)

It is sync and async capable, so Django runs it without a thread hop under both WSGI
and ASGI. Under ASGI, sync views and sync middleware further down run in worker
threads; asgiref copies the request's context into them, so they see the tenant set
here. Streaming responses are produced after the middleware returned, by the
handler; their ``streaming_content`` is wrapped so each chunk is produced with the
tenant active (:mod:`redis_tenancy._carry`), sync and async iterators alike.
``FileResponse`` is left alone (reading a file needs no tenant, and wrapping it would
disable the server's ``sendfile``).

How the tenant is found, first match wins:

1. a subclass overriding :meth:`TenantMiddleware.resolve` (sync or ``async def``);
2. the ``REDIS_TENANCY_RESOLVER`` setting: dotted path to ``resolve(request)``;
3. the ``REDIS_TENANCY_HEADER`` header (default ``X-Tenant``).

Requests naming no tenant or an unknown one get :meth:`TenantMiddleware.missing`
(404 by default), the same for both, so tenant names cannot be probed.

One limit: when a client disconnects mid-stream, Django closes the original iterator
itself (it registered its ``close`` before the wrapping), so a generator's
``finally`` block then runs without the tenant. Cleanup that needs Redis should not
depend on that path.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from contextvars import Token
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings  # type: ignore[import-untyped]
from django.http import FileResponse, HttpResponseNotFound  # type: ignore[import-untyped]
from django.utils.module_loading import import_string  # type: ignore[import-untyped]

from . import UnknownTenantError, default_router
from ._carry import BoundAsyncIterator, BoundIterator
from ._resolvers import HeaderRule

if TYPE_CHECKING:
    from . import Router

__all__ = ["TenantMiddleware"]


class TenantMiddleware:
    """Make the request's tenant active for the view and its streamed response.

    Subclass to change how the tenant is found (:meth:`resolve`), what a request
    without one gets (:meth:`missing`) or which router is meant (``router``).
    """

    sync_capable = True
    async_capable = True
    #: The router whose tenants are meant; ``None`` is the module-level default one.
    router: Router | None = None

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self._router: Router = self.router if self.router is not None else default_router
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)
        self._resolver = self._configured_resolver()
        custom = type(self).resolve is not TenantMiddleware.resolve
        #: What finds the tenant, typed loosely: it may be sync or async.
        self._resolve_fn: Callable[[Any], Any] = self.resolve if custom else self._resolver
        self._resolve_is_async = inspect.iscoroutinefunction(self._resolve_fn)
        # A user's sync resolver may use the ORM, which refuses to run on the event
        # loop: under ASGI it goes to a thread. The header lookup stays inline.
        self._resolve_inline = not custom and self._resolver is self._from_header

    def _configured_resolver(self) -> Callable[[Any], Any]:
        path = getattr(settings, "REDIS_TENANCY_RESOLVER", None)
        if path:
            resolver: Callable[[Any], Any] = import_string(path)
            return resolver
        self._header = HeaderRule(getattr(settings, "REDIS_TENANCY_HEADER", "X-Tenant"))
        return self._from_header

    def _from_header(self, request: Any) -> str | None:
        # Django joins a repeated header with commas: its parts must agree.
        value = request.headers.get(self._header.name)
        return None if value is None else self._header.pick(value.split(","))

    def resolve(self, request: Any) -> str | Awaitable[str | None] | None:
        """The tenant's name for ``request``, or ``None``: override in a subclass.

        The default uses the ``REDIS_TENANCY_RESOLVER`` setting, else the
        ``REDIS_TENANCY_HEADER`` header (``X-Tenant``). May be ``async def``.
        """
        result: str | Awaitable[str | None] | None = self._resolver(request)
        return result

    def missing(self, request: Any) -> Any:
        """The response for a request naming no tenant or an unknown one (404)."""
        return HttpResponseNotFound(b"Not Found", content_type="text/plain; charset=utf-8")

    # -- sync ---------------------------------------------------------------------------

    def __call__(self, request: Any) -> Any:
        if self._async:
            return self.__acall__(request)
        name = self._resolve_sync(request)
        token = self._activate(name)
        if token is None:
            return self.missing(request)
        try:
            active = token.var.get()
            response = self.get_response(request)
        finally:
            token.var.reset(token)
        return self._wrap(response, token, active)

    def _resolve_sync(self, request: Any) -> str | None:
        if self._resolve_is_async:
            name: str | None = async_to_sync(self._resolve_fn)(request)
        else:
            name = self._resolve_fn(request)
        return name

    def _activate(self, name: str | None) -> Token[Any] | None:
        if name is None:
            return None
        try:
            return self._router.activate(name)
        except UnknownTenantError:
            return None

    # -- async --------------------------------------------------------------------------

    async def __acall__(self, request: Any) -> Any:
        name = await self._resolve_async(request)
        token = await self._aactivate(name)
        if token is None:
            return self.missing(request)
        try:
            active = token.var.get()
            response = await self.get_response(request)
        finally:
            token.var.reset(token)
        return self._wrap(response, token, active)

    async def _resolve_async(self, request: Any) -> str | None:
        name: str | None
        if self._resolve_inline:
            name = self._resolve_fn(request)
        elif self._resolve_is_async:
            name = await self._resolve_fn(request)
        else:
            name = await sync_to_async(self._resolve_fn)(request)
        return name

    async def _aactivate(self, name: str | None) -> Token[Any] | None:
        if name is None:
            return None
        try:
            return await self._router.aactivate(name)
        except UnknownTenantError:
            return None

    # -- streaming ----------------------------------------------------------------------

    @staticmethod
    def _wrap(response: Any, token: Token[Any], active: Any) -> Any:
        if not getattr(response, "streaming", False) or isinstance(response, FileResponse):
            return response
        content = response.streaming_content
        if response.is_async:
            response.streaming_content = BoundAsyncIterator(content, token.var, active)
        else:
            response.streaming_content = BoundIterator(content, token.var, active)
        return response
