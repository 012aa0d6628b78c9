"""OpenTelemetry: redis spans that say which tenant ran the command, and where.

``opentelemetry-instrumentation-redis`` describes the server from the client's pool
settings (``connection_kwargs``). For a tenant with failover URLs those settings keep
naming the *primary* after a failover, while the commands go to a backup. The hooks
here add what the router knows:

- ``redis_tenancy.tenant``: the active tenant's name;
- ``redis_tenancy.endpoint``: the endpoint its connections use now
  (``Router.status(name).active``, redacted: never a password);
- ``server.address`` / ``server.port`` (and the older ``net.peer.name`` /
  ``net.peer.port`` when the span carries them) rewritten to that endpoint.

A span is only stamped when the client that ran the command belongs to the active
tenant (same connection pool), so a plain ``redis.Redis`` used inside a tenant block
is not mislabelled. Pipelines are stamped by the response hook (the instrumentation
calls no request hook for them).

Example::

    from redis_tenancy.otel import instrument

    instrument()        # RedisInstrumentor().instrument(request_hook=..., response_hook=...)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import redis.asyncio

from . import default_router

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from . import Router

__all__ = [
    "ENDPOINT_ATTRIBUTE",
    "TENANT_ATTRIBUTE",
    "TenantSpanHooks",
    "instrument",
    "uninstrument",
]

TENANT_ATTRIBUTE = "redis_tenancy.tenant"
ENDPOINT_ATTRIBUTE = "redis_tenancy.endpoint"
_UNSET = object()


class TenantSpanHooks:
    """The ``request_hook`` and ``response_hook`` for ``RedisInstrumentor``.

    Args:
        router: whose tenants are meant; default the module-level router.
    """

    def __init__(self, router: Router | None = None) -> None:
        self.router = router if router is not None else default_router

    def request_hook(self, span: Span, instance: Any, args: Any, kwargs: Any) -> None:
        """Stamp a command's span before it runs."""
        self.stamp(span, instance)

    def response_hook(self, span: Span, instance: Any, response: Any) -> None:
        """Stamp again after it ran: a failover during the command moved the endpoint."""
        self.stamp(span, instance)

    def stamp(self, span: Span, instance: Any) -> None:
        """Add the tenant and its endpoint in use to ``span`` when ``instance`` is its client."""
        if not span.is_recording():
            return
        router = self.router
        if router.require_tenant and router.var.get(_UNSET) is _UNSET:
            return  # strict mode, outside any block: no tenant to name
        name = router.current()
        if not _same_pool(instance, router, name):
            return
        status = router.status(name)
        endpoint = status.active or router.settings(name).endpoint
        span.set_attribute(TENANT_ATTRIBUTE, name)
        span.set_attribute(ENDPOINT_ATTRIBUTE, endpoint)
        host, port = _host_port(endpoint)
        if host is None:
            return
        present = getattr(span, "attributes", None) or {}
        for host_key, port_key in (
            ("server.address", "server.port"),
            ("net.peer.name", "net.peer.port"),
        ):
            if host_key in present or host_key == "server.address":
                span.set_attribute(host_key, host)
                if port is not None:
                    span.set_attribute(port_key, port)


def _same_pool(instance: Any, router: Router, name: str) -> bool:
    pool = getattr(instance, "connection_pool", None)
    if pool is None:
        return False
    # Pipelines derive from their client class, so one check covers both.
    if isinstance(instance, redis.asyncio.Redis):
        return pool is router.async_client(name).connection_pool
    return pool is router.client(name).connection_pool


def _host_port(url: str) -> tuple[str | None, int | None]:
    try:
        parts = urlsplit(url)
        return parts.hostname, parts.port
    except ValueError:
        return None, None


def instrument(router: Router | None = None, **kwargs: Any) -> TenantSpanHooks:
    """``RedisInstrumentor().instrument()`` with the tenant hooks (``kwargs`` pass on).

    Returns the hooks, e.g. to combine with your own hooks in a later call.
    """
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    hooks = TenantSpanHooks(router)
    RedisInstrumentor().instrument(
        request_hook=hooks.request_hook, response_hook=hooks.response_hook, **kwargs
    )
    return hooks


def uninstrument() -> None:
    """Undo :func:`instrument` (``RedisInstrumentor().uninstrument()``)."""
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor().uninstrument()
