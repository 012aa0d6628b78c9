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
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url

from ._errors import InvalidTenantNameError, TenantConfigError
from ._failover import DEFAULT_POLICY, CircuitPolicy
from ._redact import MASK, describe_value, redact_text, redact_url

__all__ = [
    "DEFAULT_SOCKET_CONNECT_TIMEOUT",
    "DEFAULT_SOCKET_TIMEOUT",
    "FALLBACK_URL",
    "STANDALONE",
    "Endpoint",
    "TenantSettings",
    "Topology",
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
_ROUTER_KEYWORDS = frozenset(
    {
        "cluster",
        "failover_cooldown",
        "failover_threshold",
        "failover_urls",
        "sentinel_kwargs",
        "sentinels",
        "service_name",
    }
)
_OWN_KEYWORDS = _ROUTER_KEYWORDS | {"url"}
_SENTINEL_SCHEME = "redis+sentinel://"
_CLUSTER_SCHEME = "redis+cluster://"
#: What a failover URL may say; everything else is the primary's.
_FAILOVER_URL_KEYS = frozenset({"host", "port", "db", "username", "password", "ssl"})


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
class Endpoint:
    """A failover endpoint: where to connect, and credentials/db if they differ.

    ``None`` fields take the primary's value, so ``redis://backup:6379`` on a tenant
    with a password and db 3 connects to the backup with that password and db 3.
    """

    host: str
    port: int
    db: int | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    shown: str = ""


@dataclass(frozen=True, slots=True)
class Topology:
    """How a tenant reaches its data: one server (with failover URLs), Sentinel or Cluster.

    Attributes:
        kind: ``"standalone"``, ``"sentinel"``, ``"cluster"`` or ``"custom"`` (a
            unix socket, or the caller's own connection pool/class: connected as
            given, with no failover).
        nodes: Sentinel addresses, or Cluster startup nodes.
        service: the Sentinel service name.
        failover: failover endpoints after the primary, in priority order.
        policy: the circuit breaker's cooldown and threshold.
        sentinel_kwargs: keywords for the connections to the sentinels themselves.
    """

    kind: str = "standalone"
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    failover: tuple[Endpoint, ...] = ()
    policy: CircuitPolicy = DEFAULT_POLICY
    sentinel_kwargs: Mapping[str, Any] | None = field(default=None, repr=False)


STANDALONE = Topology()


@dataclass(frozen=True, slots=True)
class TenantSettings:
    """What a tenant connects to: keyword arguments for the sync and async clients.

    Attributes:
        name: the tenant's name (the default tenant's is ``ENV`` or ``""``).
        redis_kwargs: keywords for ``redis.Redis``, defaults applied.
        async_kwargs: keywords for ``redis.asyncio.Redis``; derived from
            ``redis_kwargs`` unless overridden by ``set_async_redis_db_settings``.
        endpoint: redacted ``scheme://host:port/db`` for logs and reprs.
        async_endpoint: the same for the async side.
        topology: standalone (plus failover endpoints), Sentinel or Cluster.
        async_topology: the async side's; the same object unless overridden.
    """

    name: str
    redis_kwargs: Mapping[str, Any] = field(repr=False)
    async_kwargs: Mapping[str, Any] = field(repr=False)
    endpoint: str
    async_endpoint: str
    topology: Topology = STANDALONE
    async_topology: Topology = STANDALONE

    def __repr__(self) -> str:
        return f"TenantSettings(name={self.name!r}, endpoint={self.endpoint!r})"

    def with_async(self, async_kwargs: Mapping[str, Any], topology: Topology) -> TenantSettings:
        """Return a copy whose async side uses ``async_kwargs`` (already validated)."""
        return replace(
            self,
            async_kwargs=MappingProxyType(dict(async_kwargs)),
            async_endpoint=describe_endpoint(async_kwargs, topology),
            async_topology=topology,
        )

    def with_failover(self, failover: tuple[Endpoint, ...]) -> TenantSettings:
        """Return a copy with another failover list on both sides (already validated)."""
        sync = replace(self.topology, failover=failover)
        same = self.async_topology is self.topology
        return replace(
            self,
            topology=sync,
            async_topology=sync if same else replace(self.async_topology, failover=failover),
        )


def parse_settings(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> TenantSettings:
    """Validate a ``set_REDIS_DB_settings(name, *args, **kwargs)`` call.

    ``args`` and ``kwargs`` are what Popoto hands to ``redis.Redis``; ``url=`` is
    parsed with redis-py's own ``parse_url`` and wins over explicit keywords, as in
    ``redis.Redis.from_url``.

    Raises:
        TenantConfigError: naming the tenant and the offending keyword or URL.
    """
    sync, topology = normalize_kwargs(name, args, kwargs, for_async=False)
    derived = derive_async_kwargs(sync)
    return TenantSettings(
        name=name,
        redis_kwargs=MappingProxyType(sync),
        async_kwargs=MappingProxyType(derived),
        endpoint=describe_endpoint(sync, topology),
        async_endpoint=describe_endpoint(derived, topology),
        topology=topology,
        async_topology=topology,
    )


def normalize_kwargs(
    name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], *, for_async: bool
) -> tuple[dict[str, Any], Topology]:
    """Bind positional arguments, merge ``url=``, apply defaults and check types.

    Returns the client keywords and the topology (router keywords removed).
    """
    params = _ASYNC_PARAMS if for_async else _SYNC_PARAMS
    client = "redis.asyncio.Redis" if for_async else "redis.Redis"
    where = f"tenant {name!r}"
    given = dict(kwargs)
    url = given.pop("url", None)
    own = {k: given.pop(k) for k in _ROUTER_KEYWORDS & given.keys()}
    _reject_unknown(where, given, params, client, source="keyword")
    signature = _ASYNC_SIGNATURE if for_async else _SYNC_SIGNATURE
    try:
        bound = signature.bind_partial(*args, **given)
    except TypeError as exc:
        raise TenantConfigError(f"{where}: bad arguments for {client}: {exc}") from None
    merged: dict[str, Any] = dict(bound.arguments)
    nodes: tuple[tuple[str, int], ...] = ()
    service = ""
    if isinstance(url, str) and url.startswith((_SENTINEL_SCHEME, _CLUSTER_SCHEME)):
        from_url, nodes, service = _multi_host_url(where, url, params, client)
        merged.update(from_url)
        own.setdefault("cluster", url.startswith(_CLUSTER_SCHEME))
    elif url is not None:
        merged.update(_url_kwargs(where, url, params, client))
    merged.setdefault("socket_timeout", DEFAULT_SOCKET_TIMEOUT)
    merged.setdefault("socket_connect_timeout", DEFAULT_SOCKET_CONNECT_TIMEOUT)
    for key, value in merged.items():
        check = _CHECKS.get(key)
        if check is not None and not check[0](value):
            raise TenantConfigError(
                f"{where}: {key} must be {check[1]}, got {describe_value(key, value)}"
            )
    return merged, _topology(where, merged, own, nodes, service)


def _topology(
    where: str,
    kwargs: dict[str, Any],
    own: dict[str, Any],
    nodes: tuple[tuple[str, int], ...],
    service: str,
) -> Topology:
    """Decide the topology from the router keywords; reject combinations that can't work."""
    try:
        policy = CircuitPolicy(
            cooldown=own.pop("failover_cooldown", DEFAULT_POLICY.cooldown),
            threshold=own.pop("failover_threshold", DEFAULT_POLICY.threshold),
        )
    except TenantConfigError as exc:
        raise TenantConfigError(f"{where}: {exc.message}") from None
    if policy == DEFAULT_POLICY:
        policy = DEFAULT_POLICY
    failover_urls = own.pop("failover_urls", None)
    sentinel_kwargs = own.pop("sentinel_kwargs", None)
    if sentinel_kwargs is not None and not isinstance(sentinel_kwargs, Mapping):
        raise TenantConfigError(
            f"{where}: sentinel_kwargs must be a dict, got {type(sentinel_kwargs).__name__}"
        )
    if "sentinels" in own or "service_name" in own:
        nodes = _node_list(where, own.pop("sentinels", None), "sentinels")
        service = own.pop("service_name", None)
        if not isinstance(service, str) or not service:
            raise TenantConfigError(f"{where}: sentinels= needs service_name='<master name>'")
    cluster = own.pop("cluster", False)
    if not isinstance(cluster, bool):
        raise TenantConfigError(f"{where}: cluster must be a bool, got {type(cluster).__name__}")
    if service and cluster:
        raise TenantConfigError(f"{where}: a tenant is either Sentinel or Cluster, not both")
    kind = "sentinel" if service else "cluster" if cluster else "standalone"
    if kind == "cluster":
        if kwargs.get("db", 0) != 0:
            raise TenantConfigError(f"{where}: a cluster tenant has only db 0")
        kwargs.pop("db", None)
        if not nodes:
            nodes = ((kwargs.get("host", "localhost"), kwargs.get("port", 6379)),)
    if kind in ("sentinel", "cluster"):
        # The node list says where to connect; a stray host/port would only confuse.
        kwargs.pop("host", None)
        kwargs.pop("port", None)
    if kind != "sentinel" and sentinel_kwargs is not None:
        raise TenantConfigError(f"{where}: sentinel_kwargs needs a redis+sentinel:// url")
    custom = any(k in kwargs for k in ("connection_pool", "unix_socket_path"))
    if kind == "standalone" and custom:
        kind = "custom"
    failover: tuple[Endpoint, ...] = ()
    if failover_urls is not None:
        if kind != "standalone":
            raise TenantConfigError(
                f"{where}: failover_urls needs a redis:// or rediss:// primary "
                f"(this tenant is {kind}: "
                + (
                    "its connection is given as is"
                    if kind == "custom"
                    else f"{kind} does its own failover"
                )
                + ")"
            )
        if isinstance(failover_urls, str) or not isinstance(failover_urls, list | tuple):
            raise TenantConfigError(
                f"{where}: failover_urls must be a list of URLs, got {type(failover_urls).__name__}"
            )
        failover = add_failover_endpoints(where, kwargs, (), failover_urls)
    if kind == "standalone" and not failover and policy is DEFAULT_POLICY:
        return STANDALONE
    return Topology(kind, nodes, service, failover, policy, sentinel_kwargs)


def add_failover_endpoints(
    where: str, kwargs: Mapping[str, Any], existing: tuple[Endpoint, ...], urls: Any
) -> tuple[Endpoint, ...]:
    """Validate failover ``urls`` for a primary with ``kwargs``; return the extended list."""
    primary = Endpoint(kwargs.get("host", "localhost"), kwargs.get("port", 6379))
    taken = {endpoint_place(e, kwargs) for e in (primary, *existing)}
    result = list(existing)
    for url in urls:
        endpoint = _failover_endpoint(where, url, kwargs)
        key = endpoint_place(endpoint, kwargs)
        if key in taken:
            raise TenantConfigError(
                f"{where}: failover url {endpoint.shown} is already an endpoint of this tenant"
            )
        taken.add(key)
        result.append(endpoint)
    return tuple(result)


def endpoint_place(endpoint: Endpoint, primary: Mapping[str, Any]) -> tuple[str, int, int]:
    """Where ``endpoint`` connects (host, port, db), an unset db being the primary's:
    two endpoints with the same place are the same endpoint."""
    db = (primary.get("db") or 0) if endpoint.db is None else endpoint.db
    return endpoint.host, endpoint.port, db


def _failover_endpoint(where: str, url: object, primary: Mapping[str, Any]) -> Endpoint:
    if not isinstance(url, str):
        raise TenantConfigError(f"{where}: a failover url must be a str, got {type(url).__name__}")
    shown = redact_url(url)
    parsed = _url_kwargs(where, url, _SYNC_PARAMS, "redis.Redis")
    if "unix_socket_path" in parsed:
        raise TenantConfigError(f"{where}: failover url {shown}: unix sockets cannot fail over")
    if bool(parsed.get("ssl")) != bool(primary.get("ssl")):
        want = "rediss://" if primary.get("ssl") else "redis://"
        raise TenantConfigError(f"{where}: failover url {shown} must use {want} like the primary")
    extra = sorted(set(parsed) - _FAILOVER_URL_KEYS)
    if extra:
        raise TenantConfigError(
            f"{where}: failover url {shown} may only give host, port, db and credentials; "
            f"drop {', '.join(extra)} (the primary's options apply)"
        )
    inherited = {k: primary.get(k) for k in ("db", "username", "password", "ssl")}
    if parsed.get("password") is not None:
        inherited.pop("username")
    return Endpoint(
        host=parsed["host"],
        port=int(parsed.get("port", 6379)),
        db=parsed.get("db"),
        username=parsed.get("username"),
        password=parsed.get("password"),
        shown=describe_endpoint({**inherited, **parsed}),
    )


def _node_list(where: str, value: object, what: str) -> tuple[tuple[str, int], ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise TenantConfigError(f"{where}: {what} must be a non-empty list of (host, port)")
    nodes = []
    for item in value:
        ok = isinstance(item, list | tuple) and len(item) == 2
        if not ok or not isinstance(item[0], str) or not _is_int(item[1]):
            raise TenantConfigError(f"{where}: {what} must be (host, port) pairs, got {item!r}")
        nodes.append((item[0], int(item[1])))
    return tuple(nodes)


def _multi_host_url(
    where: str, url: str, params: frozenset[str], client: str
) -> tuple[dict[str, Any], tuple[tuple[str, int], ...], str]:
    """Parse ``redis+sentinel://[u:p@]h1:p1,h2:p2/service[/db]`` or ``redis+cluster://...``.

    Returns the data nodes' client keywords, the host list and the service name.
    """
    shown = redact_url(url)
    sentinel = url.startswith(_SENTINEL_SCHEME)
    rest = url.split("://", 1)[1]
    if "?" in rest or "#" in rest:
        raise TenantConfigError(
            f"{where}: invalid url {shown}: query options are not read here; pass them as keywords"
        )
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    parsed: dict[str, Any] = {}
    if userinfo:
        user, _, password = userinfo.partition(":")
        if user:
            parsed["username"] = unquote(user)
        if password:
            parsed["password"] = unquote(password)
    nodes = []
    for item in hosts.split(","):
        host, port = _host_port(item, 26379 if sentinel else 6379)
        if not host:
            raise TenantConfigError(f"{where}: invalid url {shown}: empty host in {hosts!r}")
        if port is None:
            raise TenantConfigError(f"{where}: invalid url {shown}: bad port in {item!r}")
        nodes.append((host, port))
    parts = [p for p in path.split("/") if p]
    service = ""
    if sentinel:
        if not parts:
            raise TenantConfigError(
                f"{where}: invalid url {shown}: needs the service name, as "
                "redis+sentinel://host:26379/<service_name>[/db]"
            )
        service = unquote(parts.pop(0))
    if parts:
        if len(parts) > 1 or not parts[0].isdigit():
            raise TenantConfigError(f"{where}: invalid url {shown}: bad db {'/'.join(parts)!r}")
        parsed["db"] = int(parts[0])
    _reject_unknown(where, parsed, params, client, source="part of url")
    return parsed, tuple(nodes), service


def _host_port(item: str, default: int) -> tuple[str, int | None]:
    if item.startswith("["):
        host, _, tail = item[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = item.partition(":")
    if not port_text:
        return host, default
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return host, None
    return host, int(port_text)


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


def describe_endpoint(kwargs: Mapping[str, Any], topology: Topology = STANDALONE) -> str:
    """A redacted URL-like description of where ``kwargs`` connect."""
    if topology.kind in ("sentinel", "cluster"):
        auth = f"{kwargs.get('username') or ''}:{MASK}@" if kwargs.get("password") else ""
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in topology.nodes)
        if topology.kind == "cluster":
            return f"redis+cluster://{auth}{hosts}"
        return f"redis+sentinel://{auth}{hosts}/{topology.service}/{kwargs.get('db', 0)}"
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
