"""Validated, immutable connection settings for one tenant.

Registration only ever stores a :class:`TenantSettings`; clients are built from it on
first use. All checking happens here, before anything is stored, so a bad call leaves
the registry exactly as it was and the error names the tenant, the keyword and what
was expected. The module is free of I/O: nothing here opens a socket.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url

from ._errors import InvalidTenantNameError, TenantConfigError
from ._redact import MASK, describe_value, redact_text, redact_url

__all__ = [
    "DEFAULT_SOCKET_CONNECT_TIMEOUT",
    "DEFAULT_SOCKET_TIMEOUT",
    "FALLBACK_URL",
    "TenantSettings",
    "check_name",
    "default_tenant_name",
    "parse_settings",
]

#: Popoto's defaults: a dead server costs a caller at most this many seconds.
DEFAULT_SOCKET_TIMEOUT = 5
DEFAULT_SOCKET_CONNECT_TIMEOUT = 5
#: Where the default tenant points when ``REDIS_URL`` is not set.
FALLBACK_URL = "redis://127.0.0.1:6379/0"

# Computed once: inspect.signature() is slow and registration may run 100 000 times.
_SYNC_SIGNATURE = inspect.signature(redis.Redis)
_ASYNC_SIGNATURE = inspect.signature(redis.asyncio.Redis)
_SYNC_PARAMS = frozenset(_SYNC_SIGNATURE.parameters)
_ASYNC_PARAMS = frozenset(_ASYNC_SIGNATURE.parameters)
#: Keywords the router consumes itself; they never reach redis.Redis.
_OWN_KEYWORDS = frozenset({"url"})


def default_tenant_name() -> str:
    """The default tenant's name: the ``ENV`` variable, as in Popoto, else ``""``."""
    return os.environ.get("ENV", "")


def check_name(name: object) -> str | None:
    """Return ``name`` if it may name a tenant, else raise ``InvalidTenantNameError``.

    ``None`` and ``""`` are allowed and mean "the default tenant"; the caller maps
    them to the default name.
    """
    if name is None or isinstance(name, str):
        return name
    raise InvalidTenantNameError(
        f"tenant name must be a str (or None/'' for the default tenant), got {type(name).__name__}"
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _opt(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


_STR = _opt(lambda v: isinstance(v, str))
_BOOL = _opt(lambda v: isinstance(v, bool))
_TIMEOUT = _opt(lambda v: _is_number(v) and v > 0)

#: Type and range checks for the keywords people actually pass; anything else is
#: handed to redis-py unchecked (its own constructor is the authority on those).
_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "host": (lambda v: isinstance(v, str) and v != "", "a non-empty str"),
    "port": (lambda v: _is_int(v) and 0 < v < 65536, "an int in 1..65535"),
    "db": (lambda v: _is_int(v) and v >= 0, "an int >= 0"),
    "password": (_STR, "a str or None"),
    "ssl_password": (_STR, "a str or None"),
    "username": (_STR, "a str or None"),
    "client_name": (_STR, "a str or None"),
    "unix_socket_path": (_STR, "a str or None"),
    "encoding": (lambda v: isinstance(v, str), "a str"),
    "socket_timeout": (_TIMEOUT, "a number > 0 or None"),
    "socket_connect_timeout": (_TIMEOUT, "a number > 0 or None"),
    "health_check_interval": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "max_connections": (_opt(lambda v: _is_int(v) and v > 0), "an int > 0 or None"),
    "decode_responses": (lambda v: isinstance(v, bool), "a bool"),
    "ssl": (lambda v: isinstance(v, bool), "a bool"),
    "socket_keepalive": (_BOOL, "a bool or None"),
    "single_connection_client": (lambda v: isinstance(v, bool), "a bool"),
    "protocol": (lambda v: v in (None, 2, 3, "2", "3"), "2, 3 or None"),
    "retry": (
        _opt(lambda v: isinstance(v, redis.retry.Retry | redis.asyncio.retry.Retry)),
        "a redis.retry.Retry or None",
    ),
}


@dataclass(frozen=True, slots=True)
class TenantSettings:
    """What a tenant connects to: keyword arguments for the sync and async clients.

    Attributes:
        name: the tenant's name (the default tenant's is ``ENV`` or ``""``).
        redis_kwargs: keywords for ``redis.Redis``, defaults applied.
        async_kwargs: keywords for ``redis.asyncio.Redis``; derived from
            ``redis_kwargs`` unless overridden by ``set_async_redis_db_settings``.
        endpoint: redacted ``scheme://host:port/db`` for logs and reprs.
    """

    name: str
    redis_kwargs: Mapping[str, Any] = field(repr=False)
    async_kwargs: Mapping[str, Any] = field(repr=False)
    endpoint: str
    async_endpoint: str

    def __repr__(self) -> str:
        return f"TenantSettings(name={self.name!r}, endpoint={self.endpoint!r})"

    def with_async(self, async_kwargs: Mapping[str, Any]) -> TenantSettings:
        """Return a copy whose async side uses ``async_kwargs`` (already validated)."""
        return TenantSettings(
            name=self.name,
            redis_kwargs=self.redis_kwargs,
            async_kwargs=MappingProxyType(dict(async_kwargs)),
            endpoint=self.endpoint,
            async_endpoint=describe_endpoint(async_kwargs),
        )


def parse_settings(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> TenantSettings:
    """Validate a ``set_REDIS_DB_settings(name, *args, **kwargs)`` call.

    ``args`` and ``kwargs`` are what Popoto hands to ``redis.Redis``; ``url=`` is
    parsed with redis-py's own ``parse_url`` and wins over explicit keywords, as in
    ``redis.Redis.from_url``.

    Raises:
        TenantConfigError: naming the tenant and the offending keyword or URL.
    """
    sync = normalize_kwargs(name, args, kwargs, for_async=False)
    derived = derive_async_kwargs(sync)
    return TenantSettings(
        name=name,
        redis_kwargs=MappingProxyType(sync),
        async_kwargs=MappingProxyType(derived),
        endpoint=describe_endpoint(sync),
        async_endpoint=describe_endpoint(derived),
    )


def normalize_kwargs(
    name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], *, for_async: bool
) -> dict[str, Any]:
    """Bind positional arguments, merge ``url=``, apply defaults and check types."""
    params = _ASYNC_PARAMS if for_async else _SYNC_PARAMS
    client = "redis.asyncio.Redis" if for_async else "redis.Redis"
    where = f"tenant {name!r}"
    given = dict(kwargs)
    url = given.pop("url", None)
    _reject_unknown(where, given, params, client, source="keyword")
    signature = _ASYNC_SIGNATURE if for_async else _SYNC_SIGNATURE
    try:
        bound = signature.bind_partial(*args, **given)
    except TypeError as exc:
        raise TenantConfigError(f"{where}: bad arguments for {client}: {exc}") from None
    merged: dict[str, Any] = dict(bound.arguments)
    if url is not None:
        merged.update(_url_kwargs(where, url, params, client))
    merged.setdefault("socket_timeout", DEFAULT_SOCKET_TIMEOUT)
    merged.setdefault("socket_connect_timeout", DEFAULT_SOCKET_CONNECT_TIMEOUT)
    for key, value in merged.items():
        check = _CHECKS.get(key)
        if check is not None and not check[0](value):
            raise TenantConfigError(
                f"{where}: {key} must be {check[1]}, got {describe_value(key, value)}"
            )
    return merged


def _reject_unknown(
    where: str, given: Mapping[str, Any], params: frozenset[str], client: str, *, source: str
) -> None:
    unknown = sorted(set(given) - params - _OWN_KEYWORDS)
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, sorted(params | _OWN_KEYWORDS), n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise TenantConfigError(f"{where}: unknown {source} {', '.join(hints)} for {client}")


def _url_kwargs(where: str, url: object, params: frozenset[str], client: str) -> dict[str, Any]:
    """Parse ``url`` with redis-py and express it as client keywords."""
    if not isinstance(url, str):
        raise TenantConfigError(f"{where}: url must be a str, got {type(url).__name__}")
    shown = redact_url(url)
    try:
        parsed: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError) as exc:
        reason = redact_text(str(exc))
        raise TenantConfigError(f"{where}: invalid url {shown}: {reason}") from None
    connection_class = parsed.pop("connection_class", None)
    if connection_class is UnixDomainSocketConnection:
        if "path" not in parsed:
            raise TenantConfigError(f"{where}: invalid url {shown}: unix:// needs a socket path")
        parsed["unix_socket_path"] = parsed.pop("path")
    elif connection_class is SSLConnection:
        parsed["ssl"] = True
    elif not parsed.get("host"):
        raise TenantConfigError(f"{where}: invalid url {shown}: no host")
    _reject_unknown(where, parsed, params, client, source=f"query argument in url {shown}:")
    return parsed


_SYNC_ONLY = _SYNC_PARAMS - _ASYNC_PARAMS


def derive_async_kwargs(sync_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Translate ``redis.Redis`` keywords into ``redis.asyncio.Redis`` keywords.

    Sync-only options (OCSP, client-side cache) have no async counterpart and are
    dropped; a sync ``Retry`` is rebuilt as an async one with the same policy.
    """
    derived = {k: v for k, v in sync_kwargs.items() if k not in _SYNC_ONLY}
    retry = derived.get("retry")
    if isinstance(retry, redis.retry.Retry):
        derived["retry"] = redis.asyncio.retry.Retry(
            # AbstractRetry keeps its policy in these attributes in every redis-py 5+.
            backoff=retry._backoff,
            retries=retry._retries,
            supported_errors=retry._supported_errors,  # type: ignore[arg-type]
        )
    return derived


def describe_endpoint(kwargs: Mapping[str, Any]) -> str:
    """A redacted URL-like description of where ``kwargs`` connect."""
    pool = kwargs.get("connection_pool")
    if pool is not None:
        kwargs = pool.connection_kwargs
    db = kwargs.get("db", 0)
    auth = ""
    if kwargs.get("password") or kwargs.get("credential_provider"):
        user = kwargs.get("username") or ""
        auth = f"{user}:{MASK}@"
    if kwargs.get("unix_socket_path") or kwargs.get("path"):
        path = kwargs.get("unix_socket_path") or kwargs.get("path")
        return f"unix://{auth}{path}?db={db}"
    scheme = "rediss" if kwargs.get("ssl") else "redis"
    host = kwargs.get("host", "localhost")
    if ":" in str(host):
        host = f"[{host}]"
    return f"{scheme}://{auth}{host}:{kwargs.get('port', 6379)}/{db}"
