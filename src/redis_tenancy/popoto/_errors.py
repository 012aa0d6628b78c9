"""What the Popoto integration raises, rooted in ``PopotoException``.

Popoto code catches ``PopotoException`` (Popoto's own and redis-tenancy's share the
name and the log-on-creation behaviour), so every refusal here is one too, and it also
derives from the builtin that says what kind of mistake it is::

    PopotoException
    └── PopotoIntegrationError                 the integration cannot do what was asked
        ├── PopotoNotSupportedError (ImportError)   popoto missing or an unsupported version
        ├── PoolSwapRefusedError (RuntimeError)     Popoto code rebinding a tenant's pool in place
        ├── ClusterTenantError (TypeError)          a Popoto model used under a Cluster tenant
        └── SharedStateError (RuntimeError)         process-wide Popoto state used by a 2nd tenant

Messages name tenants and redacted endpoints only.
"""

from __future__ import annotations

from .._errors import PopotoException

__all__ = [
    "ClusterTenantError",
    "PoolSwapRefusedError",
    "PopotoIntegrationError",
    "PopotoNotSupportedError",
    "SharedStateError",
]


class PopotoIntegrationError(PopotoException):
    """Base of the errors of :mod:`redis_tenancy.popoto`."""


class PopotoNotSupportedError(PopotoIntegrationError, ImportError):
    """Popoto is not installed, or its version is outside the supported range."""


class PoolSwapRefusedError(PopotoIntegrationError, RuntimeError):
    """Something assigned ``connection_pool`` on a tenant's client (Popoto's in-place swap).

    ``popoto.pytest_plugin._swap_db`` and ``popoto.integrations.config.bind_connection``
    rebind the pool of "the" client. Under the integration that client is a tenant's,
    its pool belongs to the router and may be shared with other tenants; rewiring it in
    place would move every one of them. The refusal happens before anything changes.
    """


class ClusterTenantError(PopotoIntegrationError, TypeError):
    """A Popoto model was used while a Redis Cluster tenant was active.

    Popoto decides whether a write joins a transaction with
    ``isinstance(pipeline, redis.client.Pipeline)`` (redis-py's ``ClusterPipeline`` is
    not one) and runs multi-key Lua and ``MULTI``/``EXEC`` across keys of different hash
    slots, so it would fail deep inside Popoto; this says so up front.
    """


class SharedStateError(PopotoIntegrationError, RuntimeError):
    """Process-wide Popoto state that cannot be keyed by tenant met a second tenant."""
