"""redis-tenancy: the popoto.redis_db API, routed per tenant.

Wrap each request in ``with tenant("acme"):`` and the documented functions and
proxies (``POPOTO_REDIS_DB``, ``get_REDIS_DB()``, ``scan_keys()``...) talk to acme's
Redis/Valkey. See :mod:`redis_tenancy.redis_db` for the Popoto-compatible surface and
:class:`Router` for apps that want their own registry.
"""

from __future__ import annotations

from ._context import TenantContext as TenantContext
from ._context import copy_tenant_context as copy_tenant_context
from ._errors import ConnectionBudgetExceededError as ConnectionBudgetExceededError
from ._errors import InvalidTenantNameError as InvalidTenantNameError
from ._errors import NamespaceError as NamespaceError
from ._errors import NoActiveTenantError as NoActiveTenantError
from ._errors import NoEventLoopError as NoEventLoopError
from ._errors import NoHealthyEndpointError as NoHealthyEndpointError
from ._errors import PopotoException as PopotoException
from ._errors import StaleClientError as StaleClientError
from ._errors import TenantConfigError as TenantConfigError
from ._errors import TenantContextError as TenantContextError
from ._errors import UnknownTenantError as UnknownTenantError
from ._failover import EndpointStatus as EndpointStatus
from ._failover import FailoverEvent as FailoverEvent
from ._failover import TenantStatus as TenantStatus
from ._purge import PurgePolicy as PurgePolicy
from ._purge import PurgeRefusedError as PurgeRefusedError
from ._purge import PurgeResult as PurgeResult
from ._router import Router as Router
from ._settings import TenantSettings as TenantSettings
from ._stats import RouterStats as RouterStats
from .redis_db import BEGINNING_OF_TIME as BEGINNING_OF_TIME
from .redis_db import ENCODING as ENCODING
from .redis_db import POPOTO_ASYNC_REDIS_DB as POPOTO_ASYNC_REDIS_DB
from .redis_db import POPOTO_REDIS_DB as POPOTO_REDIS_DB
from .redis_db import async_check_connection as async_check_connection
from .redis_db import async_scan_keys as async_scan_keys
from .redis_db import check_connection as check_connection
from .redis_db import current_tenant as current_tenant
from .redis_db import default_router as default_router
from .redis_db import get_async_redis_db as get_async_redis_db
from .redis_db import get_REDIS_DB as get_REDIS_DB
from .redis_db import print_redis_info as print_redis_info
from .redis_db import register_failover_url as register_failover_url
from .redis_db import scan_keys as scan_keys
from .redis_db import set_async_redis_db_settings as set_async_redis_db_settings
from .redis_db import set_REDIS_DB_settings as set_REDIS_DB_settings
from .redis_db import tenant as tenant
from .redis_db import tenant_status as tenant_status

__version__ = "0.1.0"

__all__ = [
    "BEGINNING_OF_TIME",
    "ENCODING",
    "POPOTO_ASYNC_REDIS_DB",
    "POPOTO_REDIS_DB",
    "ConnectionBudgetExceededError",
    "EndpointStatus",
    "FailoverEvent",
    "InvalidTenantNameError",
    "NamespaceError",
    "NoActiveTenantError",
    "NoEventLoopError",
    "NoHealthyEndpointError",
    "PopotoException",
    "PurgePolicy",
    "PurgeRefusedError",
    "PurgeResult",
    "Router",
    "RouterStats",
    "StaleClientError",
    "TenantConfigError",
    "TenantContext",
    "TenantContextError",
    "TenantSettings",
    "TenantStatus",
    "UnknownTenantError",
    "async_check_connection",
    "async_scan_keys",
    "check_connection",
    "copy_tenant_context",
    "current_tenant",
    "default_router",
    "get_REDIS_DB",
    "get_async_redis_db",
    "print_redis_info",
    "register_failover_url",
    "scan_keys",
    "set_REDIS_DB_settings",
    "set_async_redis_db_settings",
    "tenant",
    "tenant_status",
]
