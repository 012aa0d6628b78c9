"""Validated, immutable connection settings for one tenant.

Registration only ever stores a :class:`TenantSettings`; clients are built from it on
first use. All checking happens here (with the validators of
:mod:`redis_tenancy._checks`, URLs through :mod:`redis_tenancy._url`), before anything
is stored, so a bad call leaves the registry exactly as it was and the error names the
tenant, the keyword and what was expected. The module is free of I/O: nothing here
opens a socket.

Besides the client keywords, a tenant's settings hold what the router itself reads:
the topology (failover endpoints, Sentinel, Cluster) and the key ``namespace``. The
failover list is edited here too (:meth:`TenantSettings.with_failover_added`,
:meth:`~TenantSettings.with_failover_removed`, :meth:`~TenantSettings.with_failover_of`),
each returning a new frozen object.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry

from ._checks import (
    BOOL,
    DB,
    HOST,
    NAMESPACE,
    OPTIONAL_BOOL,
    OPTIONAL_COUNT,
    OPTIONAL_SECONDS,
    OPTIONAL_STR,
    PORT,
    SECONDS_OR_ZERO,
    STR,
    Check,
    check_name,
    check_policy,
    is_int,
    require,
)
from ._errors import TenantConfigError
from ._failover import DEFAULT_POLICY, CircuitPolicy
from ._redact import describe_endpoint, describe_value, redact_url
from ._url import ParsedUrl, parse_url, query_name

__all__ = [
    "DEFAULT_SOCKET_CONNECT_TIMEOUT",
    "DEFAULT_SOCKET_TIMEOUT",
    "FALLBACK_URL",
    "STANDALONE",
    "Endpoint",
    "TenantSettings",
    "Topology",
    "check_name",
    "default_settings",
    "default_tenant_name",
    "derive_async_kwargs",
    "normalize_kwargs",
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
        "namespace",
        "sentinel_kwargs",
        "sentinels",
        "service_name",
    }
)
_OWN_KEYWORDS = _ROUTER_KEYWORDS | {"url"}
#: What a failover URL may say; everything else is the primary's.
_FAILOVER_URL_KEYS = frozenset({"host", "port", "db", "username", "password", "ssl"})
#: Keywords a URL gives that mean nothing next to a Sentinel, Cluster or unix URL.
_PLACE_KEYWORDS = ("host", "port")

_PROTOCOL = Check(
    lambda v: v is None or v in ("2", "3") or (is_int(v) and v in (2, 3)), "2, 3 or None"
)
_RETRY = Check(
    lambda v: v is None or isinstance(v, redis.retry.Retry | redis.asyncio.retry.Retry),
    "a redis.retry.Retry or None",
)

#: Type and range checks for the keywords people actually pass; anything else is
#: handed to redis-py unchecked (its own constructor is the authority on those).
_CHECKS: Mapping[str, Check] = {
    "host": HOST,
    "port": PORT,
    "db": DB,
    "password": OPTIONAL_STR,
    "ssl_password": OPTIONAL_STR,
    "username": OPTIONAL_STR,
    "client_name": OPTIONAL_STR,
    "unix_socket_path": OPTIONAL_STR,
    "encoding": STR,
    "socket_timeout": OPTIONAL_SECONDS,
    "socket_connect_timeout": OPTIONAL_SECONDS,
    "health_check_interval": SECONDS_OR_ZERO,
    "max_connections": OPTIONAL_COUNT,
    "decode_responses": BOOL,
    "ssl": BOOL,
    "socket_keepalive": OPTIONAL_BOOL,
    "single_connection_client": BOOL,
    "protocol": _PROTOCOL,
    "retry": _RETRY,
}


def default_tenant_name() -> str:
    """The default tenant's name: the ``ENV`` variable, as in Popoto, else ``""``."""
    return os.environ.get("ENV", "")


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

    def place(self, primary: Mapping[str, Any]) -> tuple[str, int, int]:
        """Where this endpoint connects (host, port, db) for a primary with ``primary``
        keywords, an unset db being the primary's: two endpoints with the same place
        are the same endpoint."""
        db = (primary.get("db") or 0) if self.db is None else self.db
        return self.host, self.port, db

    def describe(self, primary: Mapping[str, Any]) -> str:
        """The redacted URL of this endpoint, with the parts it takes from ``primary``."""
        inherited = {k: primary.get(k) for k in ("db", "username", "password", "ssl")}
        if self.password is not None:
            inherited.pop("username")
        own = {
            "host": self.host,
            "port": self.port,
            "db": self.db,
            "username": self.username,
            "password": self.password,
        }
        return describe_endpoint({**inherited, **{k: v for k, v in own.items() if v is not None}})


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

    @property
    def failover_shown(self) -> str:
        """The failover endpoints, redacted and comma-separated (``""`` if none)."""
        return ", ".join(e.shown for e in self.failover)


STANDALONE = Topology()


@dataclass(frozen=True, slots=True)
class TenantSettings:
    """What a tenant connects to: keyword arguments for the sync and async clients.

    One object may be shared by many tenant names (identical registrations are parsed
    once), so what depends on the name, the key prefix, is resolved per call with
    :meth:`key_prefix`.

    Attributes:
        name: the tenant's name (the default tenant's is ``ENV`` or ``""``).
        redis_kwargs: keywords for ``redis.Redis``, defaults applied.
        async_kwargs: keywords for ``redis.asyncio.Redis``; derived from
            ``redis_kwargs`` unless overridden by ``set_async_redis_db_settings``.
        endpoint: redacted ``scheme://host:port/db`` for logs and reprs.
        async_endpoint: the same for the async side.
        topology: standalone (plus failover endpoints), Sentinel or Cluster.
        async_topology: the async side's; the same object unless overridden.
        namespace: the ``namespace=`` choice as given: ``False`` (not namespaced),
            ``True`` (prefix derived from the tenant's name) or an explicit prefix.
            Not part of the connection identity: namespaced tenants on one server
            share one pool.
        failover_given: whether the registration passed ``failover_urls=``; if not,
            a re-registration keeps the tenant's failover endpoints
            (:meth:`with_failover_of`).
    """

    name: str
    redis_kwargs: Mapping[str, Any] = field(repr=False)
    async_kwargs: Mapping[str, Any] = field(repr=False)
    endpoint: str
    async_endpoint: str
    topology: Topology = STANDALONE
    async_topology: Topology = STANDALONE
    namespace: bool | str = False
    failover_given: bool = False

    def __repr__(self) -> str:
        namespace = f", namespace={self.namespace!r}" if self.namespace is not False else ""
        return f"TenantSettings(name={self.name!r}, endpoint={self.endpoint!r}{namespace})"

    # -- the key namespace ------------------------------------------------------------

    def key_prefix(self, name: str) -> str | None:
        """The key prefix of tenant ``name`` under these settings, ``None`` if none.

        ``namespace=True`` derives it from the name: ``"acme:"``, or ``"{acme}:"`` on a
        Cluster tenant so all of a tenant's keys share one hash slot.

        Raises:
            TenantConfigError: ``namespace=True`` and no name to derive it from.
        """
        namespace = self.namespace
        if isinstance(namespace, str):
            return namespace
        if not namespace:
            return None
        self.check_tenant(name)
        return f"{{{name}}}:" if self.topology.kind == "cluster" else f"{name}:"

    def check_tenant(self, name: str) -> None:
        """Refuse these settings for tenant ``name`` if its key prefix can't be derived.

        Called at registration for every name (settings are shared, the name is not).
        """
        if self.namespace is not True:
            return
        where = f"tenant {name!r}"
        if not name:
            raise TenantConfigError(
                f"{where}: namespace=True derives the key prefix from the tenant's name, "
                "and this tenant's name is '' (set ENV, or give the prefix: namespace='app:')"
            )
        if self.topology.kind == "cluster" and not _has_hash_tag(f"{{{name}}}:"):
            raise TenantConfigError(
                f"{where}: a name starting with '}}' makes no cluster hash tag; "
                "give the prefix explicitly, e.g. namespace='{app}:'"
            )

    # -- derived copies ---------------------------------------------------------------

    def with_async(self, async_kwargs: Mapping[str, Any], topology: Topology) -> TenantSettings:
        """Return a copy whose async side uses ``async_kwargs`` (already validated)."""
        return replace(
            self,
            async_kwargs=MappingProxyType(dict(async_kwargs)),
            async_endpoint=_describe(async_kwargs, topology),
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

    def with_failover_added(
        self, urls: Iterable[object], *, tenant: str | None = None
    ) -> TenantSettings:
        """Return a copy with failover ``urls`` appended (tried in the order given).

        A URL may carry its own credentials and db; parts it leaves out are the
        primary's. ``tenant`` names the tenant in errors (default: :attr:`name`).

        Raises:
            TenantConfigError: no URL, a bad URL, a duplicate endpoint, or a tenant
                that cannot fail over (Sentinel, Cluster, unix socket, own pool).
        """
        where = self._where(tenant)
        urls = tuple(urls)
        if not urls:
            raise TenantConfigError(f"{where}: add_failover needs at least one url")
        if self.topology.kind != "standalone":
            raise TenantConfigError(
                f"{where}: failover urls need a redis:// or rediss:// primary, "
                f"not a {self.topology.kind} tenant"
            )
        failover = _failover_endpoints(where, self.redis_kwargs, self.topology.failover, urls)
        return self.with_failover(failover)

    def with_failover_removed(self, url: object, *, tenant: str | None = None) -> TenantSettings:
        """Return a copy without the failover endpoint ``url`` (matched by host, port, db).

        Raises:
            TenantConfigError: a bad URL, or one that is not a failover endpoint.
        """
        where = self._where(tenant)
        kwargs = self.redis_kwargs
        place = _failover_endpoint(where, url, kwargs).place(kwargs)
        failover = self.topology.failover
        kept = tuple(e for e in failover if e.place(kwargs) != place)
        if len(kept) == len(failover):
            shown = redact_url(url) if isinstance(url, str) else "that url"
            raise TenantConfigError(
                f"{where}: {shown} is not one of its failover urls "
                f"({self.topology.failover_shown or 'it has none'})"
            )
        return self.with_failover(kept)

    def with_failover_of(
        self, previous: TenantSettings, *, tenant: str | None = None
    ) -> TenantSettings:
        """The settings to store when these replace ``previous`` for the same tenant.

        A re-registration that did not pass ``failover_urls=`` keeps the failover
        endpoints the tenant has (those it was registered with and those added at
        runtime), in their order; one that passed ``failover_urls=`` (``[]`` included)
        gets exactly those. An endpoint that is now the primary is dropped from the
        list, and a tenant that is no longer a plain ``redis://``/``rediss://`` one
        (Sentinel, Cluster, unix socket) has no failover list to keep.

        Raises:
            TenantConfigError: the new primary switched between ``redis://`` and
                ``rediss://``: the kept endpoints would change protocol with it, so
                the call must say the new list with ``failover_urls=``.
        """
        endpoints = previous.topology.failover
        if self.failover_given or not endpoints or self.topology.kind != "standalone":
            return self
        kwargs = self.redis_kwargs
        if bool(kwargs.get("ssl")) != bool(previous.redis_kwargs.get("ssl")):
            was, now = (
                ("rediss://", "redis://") if not kwargs.get("ssl") else ("redis://", "rediss://")
            )
            raise TenantConfigError(
                f"{self._where(tenant)}: its failover urls ({previous.topology.failover_shown}) "
                f"use {was} but the new primary uses {now}: pass failover_urls= with the new "
                "list (or failover_urls=[] for none)"
            )
        taken = {_primary(kwargs).place(kwargs)}
        kept = []
        for endpoint in endpoints:
            place = endpoint.place(kwargs)
            if place not in taken:
                taken.add(place)
                kept.append(replace(endpoint, shown=endpoint.describe(kwargs)))
        return self.with_failover(tuple(kept)) if kept else self

    def _where(self, tenant: str | None) -> str:
        return f"tenant {self.name if tenant is None else tenant!r}"


def parse_settings(
    name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], *, where: str | None = None
) -> TenantSettings:
    """Validate a ``set_REDIS_DB_settings(name, *args, **kwargs)`` call.

    ``args`` and ``kwargs`` are what Popoto hands to ``redis.Redis``. ``url=`` gives
    the parts it names (host, port, db, credentials, query options); a keyword may
    fill a part the URL leaves out, as in ``redis.Redis.from_url(url, db=3)`` for a
    URL without a db. A keyword that *contradicts* the URL (``url=".../0", db=3``) is
    refused rather than warned about: a ``UserWarning`` is easily lost (or, under
    ``-W error``, turned into a crash at an unexpected place), while the silent winner
    would connect a tenant to another tenant's db on a shared server.

    The router's own keywords are consumed here: ``namespace=`` is kept as given
    (resolved per tenant by :meth:`TenantSettings.key_prefix`), and whether
    ``failover_urls=`` was passed is recorded for :meth:`TenantSettings.with_failover_of`.
    ``where`` replaces ``"tenant '<name>'"`` at the start of error messages.

    Example::

        parse_settings("acme", (), {"url": "valkey://cache:6379", "db": 3, "namespace": True})

    Raises:
        TenantConfigError: naming the tenant and the offending keyword or URL part.
    """
    where = where or f"tenant {name!r}"
    sync, topology = normalize_kwargs(name, args, kwargs, for_async=False, where=where)
    namespace = kwargs.get("namespace")
    if isinstance(namespace, str) and topology.kind == "cluster" and not _has_hash_tag(namespace):
        raise TenantConfigError(
            f"{where}: on a Cluster tenant the key prefix must hold a non-empty "
            "{hash tag}, e.g. namespace='{acme}:', so all its keys share one hash slot"
        )
    derived = derive_async_kwargs(sync)
    return TenantSettings(
        name=name,
        redis_kwargs=MappingProxyType(sync),
        async_kwargs=MappingProxyType(derived),
        endpoint=_describe(sync, topology),
        async_endpoint=_describe(derived, topology),
        topology=topology,
        async_topology=topology,
        namespace=namespace or False,
        failover_given=kwargs.get("failover_urls") is not None,
    )


def default_settings(name: str, url: str | None) -> TenantSettings:
    """The default tenant's settings: ``url``, else ``REDIS_URL``, else :data:`FALLBACK_URL`.

    An error in a URL read from ``REDIS_URL`` names the variable, so a bad environment
    is recognisable from the message alone.
    """
    if not url:
        from_env = os.environ.get("REDIS_URL")
        if from_env:
            return parse_settings(
                name, (), {"url": from_env}, where=f"REDIS_URL (default tenant {name!r})"
            )
        url = FALLBACK_URL
    return parse_settings(name, (), {"url": url})


def normalize_kwargs(
    name: str,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    for_async: bool,
    where: str | None = None,
) -> tuple[dict[str, Any], Topology]:
    """Bind positional arguments, merge ``url=``, apply defaults and check types.

    Returns the client keywords and the topology (router keywords removed).
    """
    where = where or f"tenant {name!r}"
    params = _ASYNC_PARAMS if for_async else _SYNC_PARAMS
    client = "redis.asyncio.Redis" if for_async else "redis.Redis"
    for key in kwargs:
        if not isinstance(key, str):
            raise TenantConfigError(
                f"{where}: setting names must be str, got a {type(key).__name__}"
            )
    given = dict(kwargs)
    url = given.pop("url", None)
    own = {k: given.pop(k) for k in _ROUTER_KEYWORDS & given.keys()}
    if "namespace" in own:
        if for_async:
            raise TenantConfigError(
                f"{where}: namespace is set per tenant with set_REDIS_DB_settings (or "
                "Router.register), not per client side: set_async_redis_db_settings only "
                "changes how the async client connects"
            )
        require("namespace", own.pop("namespace"), NAMESPACE, where)
    _reject_unknown(where, given, params, client, source="keyword")
    signature = _ASYNC_SIGNATURE if for_async else _SYNC_SIGNATURE
    merged = _bind(where, signature, client, args, given)
    _check_values(where, merged)
    nodes: tuple[tuple[str, int], ...] = ()
    service = ""
    if url is not None:
        parsed = parse_url(url, where)
        _refuse_conflicts(where, merged, parsed)
        from_url = dict(parsed.kwargs)
        source = f"query argument in url {parsed.shown}:"
        _reject_unknown(where, from_url, params, client, source=source, own=False)
        _check_values(where, from_url)
        merged.update(from_url)
        if parsed.kind in ("sentinel", "cluster"):
            nodes, service = parsed.nodes, parsed.service
            own.setdefault("cluster", parsed.kind == "cluster")
    merged.setdefault("socket_timeout", DEFAULT_SOCKET_TIMEOUT)
    merged.setdefault("socket_connect_timeout", DEFAULT_SOCKET_CONNECT_TIMEOUT)
    return merged, _topology(where, merged, own, nodes, service)


def _bind(
    where: str,
    signature: inspect.Signature,
    client: str,
    args: tuple[Any, ...],
    given: dict[str, Any],
) -> dict[str, Any]:
    """``args`` and ``given`` as keywords of ``client``'s constructor."""
    if not args:
        # Every name in ``given`` is known to be a parameter: nothing to bind, and
        # Signature.bind_partial costs more than the rest of the parse together.
        return dict(given)
    try:
        bound = signature.bind_partial(*args, **given)
    except TypeError as exc:
        # Names parameters, never values; raised below, outside this block.
        problem = str(exc)
    else:
        return dict(bound.arguments)
    raise TenantConfigError(f"{where}: bad arguments for {client}: {problem}")


def _check_values(where: str, values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        check = _CHECKS.get(key)
        if check is not None:
            require(key, value, check, where)


def _refuse_conflicts(where: str, given: Mapping[str, Any], parsed: ParsedUrl) -> None:
    """Refuse keywords that contradict what ``url=`` says (see :func:`parse_settings`)."""
    if parsed.kind in ("unix", "sentinel", "cluster"):
        scheme = parsed.shown.partition("://")[0]
        for key in _PLACE_KEYWORDS:
            if key in given:
                raise TenantConfigError(
                    f"{where}: {key}= has no meaning next to a {scheme}:// url, "
                    "which says where to connect: drop it"
                )
    if parsed.kind == "tcp" and given.get("ssl") is True:
        raise TenantConfigError(
            f"{where}: ssl=True conflicts with the url, whose scheme says no TLS: "
            "use rediss:// (or valkeys://)"
        )
    for key, from_url in parsed.kwargs.items():
        if key not in given or _same(given[key], from_url):
            continue
        if key in ("host", "port", "db"):
            said = f"{key}={given[key]!r} conflicts with the url, which says {from_url!r}"
        else:
            said = f"{key}= differs from the {key} the url gives"
        raise TenantConfigError(f"{where}: {said}: give it in one place only")


def _same(given: Any, from_url: Any) -> bool:
    both_numbers = all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in (given, from_url)
    )
    if both_numbers or type(given) is type(from_url):
        return bool(given == from_url)
    return False


def _topology(
    where: str,
    kwargs: dict[str, Any],
    own: dict[str, Any],
    nodes: tuple[tuple[str, int], ...],
    service: str,
) -> Topology:
    """Decide the topology from the router keywords; reject combinations that can't work."""
    cooldown = own.pop("failover_cooldown", DEFAULT_POLICY.cooldown)
    threshold = own.pop("failover_threshold", DEFAULT_POLICY.threshold)
    check_policy(cooldown, threshold, where)
    policy = CircuitPolicy(cooldown=cooldown, threshold=threshold)
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
        failover = _failover_endpoints(where, kwargs, (), failover_urls)
    if kind == "standalone" and not failover and policy is DEFAULT_POLICY:
        return STANDALONE
    return Topology(kind, nodes, service, failover, policy, sentinel_kwargs)


def _primary(kwargs: Mapping[str, Any]) -> Endpoint:
    return Endpoint(kwargs.get("host", "localhost"), kwargs.get("port", 6379))


def _failover_endpoints(
    where: str, kwargs: Mapping[str, Any], existing: tuple[Endpoint, ...], urls: Iterable[object]
) -> tuple[Endpoint, ...]:
    """Validate failover ``urls`` for a primary with ``kwargs``; return the extended list."""
    taken = {e.place(kwargs) for e in (_primary(kwargs), *existing)}
    result = list(existing)
    for url in urls:
        endpoint = _failover_endpoint(where, url, kwargs)
        key = endpoint.place(kwargs)
        if key in taken:
            raise TenantConfigError(
                f"{where}: failover url {endpoint.shown} is already an endpoint of this tenant"
            )
        taken.add(key)
        result.append(endpoint)
    return tuple(result)


def _failover_endpoint(where: str, url: object, primary: Mapping[str, Any]) -> Endpoint:
    if not isinstance(url, str):
        raise TenantConfigError(f"{where}: a failover url must be a str, got {type(url).__name__}")
    parsed = parse_url(url, f"{where}: failover url")
    shown = parsed.shown
    if parsed.kind == "unix":
        raise TenantConfigError(f"{where}: failover url {shown}: unix sockets cannot fail over")
    if parsed.kind not in ("tcp", "tls"):
        raise TenantConfigError(
            f"{where}: failover url {shown} must be a redis:// or rediss:// url "
            "(Sentinel and Cluster do their own failover)"
        )
    found = parsed.kwargs
    if bool(found.get("ssl")) != bool(primary.get("ssl")):
        want = "rediss://" if primary.get("ssl") else "redis://"
        raise TenantConfigError(f"{where}: failover url {shown} must use {want} like the primary")
    extra = sorted(set(found) - _FAILOVER_URL_KEYS)
    if extra:
        raise TenantConfigError(
            f"{where}: failover url {shown} may only give host, port, db and credentials; "
            f"drop {', '.join(extra)} (the primary's options apply)"
        )
    endpoint = Endpoint(
        host=found["host"],
        port=found.get("port", 6379),
        db=found.get("db"),
        username=found.get("username"),
        password=found.get("password"),
    )
    return replace(endpoint, shown=endpoint.describe(primary))


def _node_list(where: str, value: object, what: str) -> tuple[tuple[str, int], ...]:
    """``(host, port)`` pairs; errors show positions and types, never the items (a
    password pasted into the list must not come back in the message)."""
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise TenantConfigError(
            f"{where}: {what} must be a non-empty list of (host, port), "
            f"got {describe_value(what, value)}"
        )
    nodes = []
    for index, item in enumerate(value):
        ok = isinstance(item, list | tuple) and len(item) == 2
        if not ok or not HOST(item[0]) or not PORT(item[1]):
            raise TenantConfigError(
                f"{where}: {what} must be (host, port) pairs of a host name and an int "
                f"in 1..65535; item {index} is {describe_value(what, item)}"
            )
        nodes.append((item[0], item[1]))
    return tuple(nodes)


def _reject_unknown(
    where: str,
    given: Mapping[str, Any],
    params: frozenset[str],
    client: str,
    *,
    source: str,
    own: bool = True,
) -> None:
    """Refuse names ``client`` does not take (the router's own keywords too, unless
    ``own``: a URL's query cannot set them)."""
    known = params | _OWN_KEYWORDS if own else params
    unknown = sorted(set(given) - known)
    if not unknown:
        return
    hints = []
    for key in unknown:
        shown = query_name(key)
        close = difflib.get_close_matches(key, sorted(known), n=1) if shown[0] == "'" else []
        hints.append(shown + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise TenantConfigError(f"{where}: unknown {source} {', '.join(hints)} for {client}")


def _has_hash_tag(prefix: str) -> bool:
    """Whether ``prefix`` has a Redis Cluster hash tag: ``{`` then a non-empty tag then ``}``."""
    start = prefix.find("{")
    return start >= 0 and prefix.find("}", start + 1) > start + 1


def _describe(kwargs: Mapping[str, Any], topology: Topology) -> str:
    return describe_endpoint(kwargs, topology.kind, topology.nodes, topology.service)


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
