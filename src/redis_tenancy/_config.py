"""Reading the optional ``REDIS_TENANCY_CONFIG`` TOML file of tenants.

The file is read once at import of :mod:`redis_tenancy.redis_db`. Its shape::

    [tenants.acme]
    url = "redis://acme-redis:6379/0"
    socket_timeout = 2

    [tenants.globex]
    host = "127.0.0.1"
    port = 6380
    db = 3
    namespace = true                     # keys prefixed "globex:"
    failover_urls = ["valkey://backup:6380/3"]

Each table's keys are ``url`` plus any ``redis.Redis`` keyword and the router's own
(``failover_urls``, ``failover_cooldown``, ``failover_threshold``, ``cluster``,
``sentinels``, ``service_name``, ``sentinel_kwargs``, ``namespace``): exactly what
``set_REDIS_DB_settings`` takes, checked by the same code. The whole file is validated
before any tenant is registered; an error names the file, the tenant and the key, and
registers nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._errors import TenantConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = ["read_config"]


def read_config(path: str | Path) -> dict[str, dict[str, Any]]:
    """Return ``{tenant: kwargs}`` from the TOML file at ``path``.

    Raises:
        TenantConfigError: the file is missing, not TOML, or not of the shape above.
    """
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise TenantConfigError(f"{where}: cannot read tenant config: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        # TOML errors quote positions, not values; still, keep only the first line.
        raise TenantConfigError(f"{where}: invalid TOML: {str(exc).splitlines()[0]}") from None
    unknown = sorted(set(data) - {"tenants"})
    if unknown:
        raise TenantConfigError(
            f"{where}: unknown top-level key {unknown[0]!r} (expected [tenants.<name>])"
        )
    tenants = data.get("tenants", {})
    if not isinstance(tenants, Mapping):
        raise TenantConfigError(f"{where}: 'tenants' must be a table of tables")
    result: dict[str, dict[str, Any]] = {}
    for name, table in tenants.items():
        if not isinstance(table, Mapping):
            raise TenantConfigError(f"{where}: [tenants.{name}] must be a table of settings")
        result[name] = dict(table)
    return result
