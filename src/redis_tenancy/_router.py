"""The registry of tenants and the entry points that act on the active one.

A :class:`Router` maps tenant names to :class:`~redis_tenancy._tenant.Tenant`
objects and owns the ContextVar that says which one is active. Registration
validates first and swaps second, under one lock, so readers never see a half-made
tenant and a failed call changes nothing. Reads take no lock: they go through the
ContextVar to the tenant object and its already-built client.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar, Token
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.retry

from ._acl import REDIS_7, AclFeatures, acl_rules
from ._backend import Backends
from ._budget import ConnectionBudget
from ._checks import (
    BOOL,
    CALLABLE,
    OPTIONAL_COUNT,
    OPTIONAL_SECONDS,
    OPTIONAL_STR,
    SECONDS,
    SECONDS_OR_ZERO,
    require,
)
from ._clients import is_cluster
from ._context import TenantContext, fast_paths, reusing
from ._errors import TenantConfigError, Unresolved, resolved
from ._failover import FailoverEvent, TenantStatus
from ._proxy import make_async_proxy, make_sync_proxy
from ._purge import (
    DEFAULT_PURGE_POLICY,
    ProgressCallback,
    PurgePolicy,
    PurgeResult,
    async_purge,
    check_own_database,
    purge,
)
from ._redact import describe_value
from ._registry import AsyncLoader, Loader, Registry, named
from ._settings import (
    TenantSettings,
    check_name,
    default_settings,
    default_tenant_name,
    normalize_kwargs,
    parse_settings,
)
from ._stats import RouterStats, count_backends
from ._tenant import StrictSlot, Tenant

__all__ = ["Router"]

logger = logging.getLogger("POPOTO-REDIS_DB")


class Router:
    """Per-tenant Redis clients selected by a ContextVar.

    Args:
        default_name: the default tenant's name; ``None`` reads ``ENV`` (else ``""``).
        default_url: where the default tenant connects; ``None`` reads ``REDIS_URL``,
            else ``redis://127.0.0.1:6379/0``. Nothing connects until first use.
        require_tenant: strict mode. Using a proxy (or ``get_REDIS_DB()``) outside any
            ``tenant()`` block raises ``NoActiveTenantError`` instead of falling back
            to the default tenant.

    Example::

        router = Router(default_url="redis://127.0.0.1:6379/0")
        router.register("acme", url="redis://acme-redis:6379/0")
        with router.tenant("acme"):
            router.redis.set("greeting", "hi")
    """

    def __init__(
        self,
        *,
        default_name: str | None = None,
        default_url: str | None = None,
        require_tenant: bool = False,
        loader: Loader | None = None,
        async_loader: AsyncLoader | None = None,
        negative_ttl: float = 5.0,
        max_live_clients: int | None = None,
        max_connections: int | None = None,
        idle_timeout: float | None = None,
        wait_timeout: float = 5.0,
    ) -> None:
        name = default_name if default_name is not None else default_tenant_name()
        if not isinstance(name, str):
            check_name(name)
        require("default_url", default_url, OPTIONAL_STR)
        require("require_tenant", require_tenant, BOOL)
        require("loader", loader, CALLABLE)
        require("async_loader", async_loader, CALLABLE)
        require("negative_ttl", negative_ttl, SECONDS_OR_ZERO)
        require("max_live_clients", max_live_clients, OPTIONAL_COUNT)
        require("max_connections", max_connections, OPTIONAL_COUNT)
        require("idle_timeout", idle_timeout, OPTIONAL_SECONDS)
        require("wait_timeout", wait_timeout, SECONDS)
        default_config = default_settings(name, default_url)
        self.budget: ConnectionBudget | None = None
        if max_connections is not None or idle_timeout is not None:
            self.budget = ConnectionBudget(
                max_connections if max_connections is not None else sys.maxsize,
                wait_timeout=wait_timeout,
                idle_timeout=idle_timeout,
            )
        self._hooks: list[Callable[[FailoverEvent], object]] = []
        self._backends = Backends(self._announce, max_live_clients, self.budget)
        default = Tenant(default_config, self._backends, self._announce)
        self.default_name: str = name
        self.require_tenant = require_tenant
        self._registry = Registry(
            default,
            self._new_tenant,
            loader=loader,
            async_loader=async_loader,
            negative_ttl=negative_ttl,
        )
        self._lock = self._registry.lock
        #: Live tenants by the names callers pass: ``None`` and ``""`` alias the default.
        #: A plain attribute (not a property): ``tenant().__enter__`` reads it inline.
        self.lookup: dict[str | None, Tenant] = self._registry.lookup
        fallback: Tenant | StrictSlot = StrictSlot() if require_tenant else default
        #: The ContextVar holding the active tenant object (read by the proxies).
        self.var: ContextVar[Tenant | StrictSlot] = ContextVar(
            f"redis_tenancy.active_tenant.{id(self):x}", default=fallback
        )
        self._tenant_factory = reusing(_tenant_class(self), self)
        #: ``redis.Redis``-typed proxy to the active tenant's client.
        self.redis: redis.Redis = make_sync_proxy(self)
        #: ``redis.asyncio.Redis``-typed proxy for the running event loop.
        self.async_redis: redis.asyncio.Redis = make_async_proxy(self)

    def __repr__(self) -> str:
        mode = ", strict" if self.require_tenant else ""
        return f"<Router {len(self)} tenants, default={self.default_name!r}{mode}>"

    def _new_tenant(self, settings: TenantSettings) -> Tenant:
        return Tenant(settings, self._backends, self._announce)

    # -- registry ---------------------------------------------------------------------

    def canonical(self, name: str | None) -> str:
        """Map ``None``/``""`` to the default tenant's name; reject non-strings."""
        check_name(name)
        return name or self.default_name

    def register(self, name: str | None = "", *args: Any, **kwargs: Any) -> TenantSettings:
        """Register tenant ``name``, or replace its connection if it exists.

        ``args``/``kwargs`` are ``redis.Redis`` arguments (``url=`` accepted), with
        ``socket_timeout`` and ``socket_connect_timeout`` defaulting to 5 s. The call
        is validated completely before anything changes; on replacement, commands
        already running finish on the old client and new ones use the new settings.

        Raises:
            TenantConfigError: bad URL, unknown keyword, wrong type; nothing changed.
        """
        key = self.canonical(name)
        settings = self._registry.parse(key, args, kwargs)
        self._registry.apply([(key, settings)])
        logger.debug("tenant %r registered: %s", key, settings.endpoint)
        return named(settings, key)

    def register_async(self, name: str | None = "", *args: Any, **kwargs: Any) -> TenantSettings:
        """Override tenant ``name``'s async side (registering the tenant if new).

        ``args``/``kwargs`` are ``redis.asyncio.Redis`` arguments. As with
        :meth:`register`, identical settings change nothing; otherwise objects made
        from the tenant's old clients refuse from now on, and the old pools close
        (idle connections at once, each on its own event loop; busy ones as their
        commands end).
        """
        key = self.canonical(name)
        async_kwargs, topology = normalize_kwargs(key, args, kwargs, for_async=True)
        with self._lock:
            existing = self._registry.find(key)
            if existing is None:
                settings = parse_settings(key, args, _sync_view(kwargs))
                settings = settings.with_async(async_kwargs, topology)
                self._registry.apply([(key, settings)])
                return settings
            settings = existing.settings.with_async(async_kwargs, topology)
            existing.replace(settings)
        logger.debug("tenant %r async side set: %s", key, settings.async_endpoint)
        return settings

    def register_many(self, tenants: Mapping[str, Mapping[str, Any]]) -> int:
        """Register or replace several tenants at once, all or nothing.

        Every entry is validated before any is applied, so one bad entry leaves the
        registry exactly as it was. Entries with identical settings are parsed once
        and share one frozen settings object. Returns how many were registered.

        Example::

            router.register_many({"acme": {"url": "redis://a:6379/0"},
                                  "globex": {"host": "b", "db": 3}})
        """
        if not isinstance(tenants, Mapping):
            raise TenantConfigError(
                "register_many takes a mapping of tenant name -> settings dict, "
                f"got {describe_value('tenants', tenants)}"
            )
        parse, canonical = self._registry.parse, self.canonical
        entries = []
        for name, kwargs in tenants.items():
            key = canonical(name)
            if type(kwargs) is not dict and not isinstance(kwargs, Mapping):
                raise TenantConfigError(
                    f"tenant {key!r}: settings must be a mapping of keywords "
                    f"(e.g. {{'url': ...}}), got {describe_value('settings', kwargs)}"
                )
            entries.append((key, parse(key, (), kwargs)))
        self._registry.apply(entries)
        logger.debug("%d tenants registered", len(entries))
        return len(entries)

    def register_bulk(self, names: Iterable[str], *args: Any, **kwargs: Any) -> int:
        """Register many tenants that share one set of connection settings.

        The cheapest way to register very many tenants: the settings are validated
        once and each name costs one dict entry until it is first used. Names that
        exist are replaced. All or nothing. Returns how many names were registered.

        Example::

            router.register_bulk((f"shop-{i}" for i in range(100_000)), url=SHARED_URL)
        """
        if isinstance(names, str | bytes) or not isinstance(names, Iterable):
            raise TenantConfigError(
                "register_bulk takes an iterable of tenant names (a list, a generator), "
                f"got {describe_value('names', names)}"
            )
        names = list(names)
        first = names[0] if names and isinstance(names[0], str) else "<bulk>"
        settings = self._registry.parse(first, args, kwargs)
        count = self._registry.bulk(names, settings)
        logger.debug("%d tenants registered in bulk: %s", count, settings.endpoint)
        return count

    def remove(self, name: str) -> None:
        """Unregister ``name`` and close its clients; later use raises UnknownTenantError.

        The default tenant cannot be removed (register new settings for it instead).
        """
        key = self.canonical(name)
        if key == self.default_name:
            raise TenantConfigError(
                f"the default tenant ({key!r}) cannot be removed: register new settings for it"
            )
        tenant = self._registry.remove(key)
        if tenant is not None:
            tenant.close()

    # -- failover -----------------------------------------------------------------------

    def add_failover(self, name: str | None, *urls: str) -> TenantSettings:
        """Append failover endpoints to tenant ``name`` (tried in the order added).

        Takes effect for the next connection the tenant opens: commands already running
        and connections already open are not touched, and no client is rebuilt. A URL
        may carry its own credentials and db; parts it leaves out are the primary's.

        ``None``/``""`` name the default tenant, as in ``register``.

        Raises:
            TenantConfigError: no URL, a bad URL, a duplicate endpoint, or a tenant that
                cannot fail over (Sentinel, Cluster, unix socket, own connection pool).
            UnknownTenantError: ``name`` is not registered.
        """
        with self._lock:
            tenant = self._get_tenant(self.canonical(name))
            settings = tenant.settings.with_failover_added(urls, tenant=tenant.name)
            tenant.set_failover(settings)
        logger.info(
            "tenant %r failover endpoints: %s", tenant.name, settings.topology.failover_shown
        )
        return settings

    def remove_failover(self, name: str | None, url: str) -> TenantSettings:
        """Remove one failover endpoint (matched by host, port and db) from ``name``.

        Pooled connections to it are dropped when next used; new ones go elsewhere.
        """
        with self._lock:
            tenant = self._get_tenant(self.canonical(name))
            settings = tenant.settings.with_failover_removed(url, tenant=tenant.name)
            tenant.set_failover(settings)
        logger.info(
            "tenant %r failover endpoints: %s",
            tenant.name,
            settings.topology.failover_shown or "none",
        )
        return settings

    def status(self, name: str | None = None) -> TenantStatus:
        """Endpoints of ``name`` (default: the active tenant) with their circuit states.

        Each endpoint (redacted) with ``closed`` / ``open`` / ``half-open``, its
        consecutive failures and last error; which endpoint new connections use; and
        how many failovers and failbacks happened. Pure bookkeeping: no I/O.
        """
        return self._get_tenant(name).status()

    def on_failover(self, callback: Callable[[FailoverEvent], object]) -> Callable[[], None]:
        """Call ``callback(event)`` whenever a tenant's new connections switch endpoint.

        The callback runs in the thread (or event loop) that made the connection which
        noticed the switch, so keep it quick. Errors it raises are logged, never passed
        to the caller. Returns a function that unregisters it.
        """
        self._hooks.append(callback)
        return lambda: self._hooks.remove(callback) if callback in self._hooks else None

    def _announce(self, event: FailoverEvent) -> None:
        reason = f" after {event.reason}" if event.reason else ""
        logger.warning(
            "tenant %r %s: %s -> %s%s",
            event.tenant,
            event.kind,
            event.from_endpoint,
            event.to_endpoint,
            reason,
        )
        for hook in list(self._hooks):
            try:
                hook(event)
            except Exception:
                logger.exception("on_failover hook %r failed", hook)

    def names(self) -> list[str]:
        """Registered tenant names, default first."""
        return self._registry.names()

    def live_names(self) -> list[str]:
        """Names of the tenants used at least once (they have clients and a status);
        reading them makes no other tenant live, unlike :meth:`status`."""
        with self._lock:
            return sorted(self._registry.live)

    def settings(self, name: str | None = None) -> TenantSettings:
        """The settings of ``name`` (default: the active tenant); no client is built."""
        if name is not None:
            found = self._registry.settings_of(self.canonical(name))
            if found is not None:
                return found
        return self._get_tenant(name).settings

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str | None) and name in self._registry

    def __len__(self) -> int:
        return len(self._registry)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    # -- namespaces: purge and ACL rules ------------------------------------------------

    def purge(
        self,
        name: str | None,
        dry_run: bool = False,
        *,
        policy: PurgePolicy = DEFAULT_PURGE_POLICY,
        progress: ProgressCallback | None = None,
        force: bool = False,
    ) -> PurgeResult:
        """Count (``dry_run=True``) or delete every key of tenant ``name``.

        A namespaced tenant loses exactly the keys of its namespace: SCAN with the
        prefix glob-escaped in MATCH, each name checked to start with it before every
        UNLINK batch, at the pace of ``policy``. A tenant without a namespace loses its
        whole database, which is allowed only when no other registered tenant uses that
        server and database, and never db 0 without ``force=True``. ``progress`` gets
        the running totals after every round trip. See docs/PURGE.md.

        Raises:
            PurgeRefusedError: the tenant's database is not its own (or is db 0).
            UnknownTenantError: ``name`` is not registered.
        """
        tenant = self._get_tenant(self.canonical(name))
        prefix, whole = self._purge_scope(tenant, force)
        return purge(
            tenant.plain_client(),
            prefix,
            dry_run=dry_run,
            policy=policy,
            progress=progress,
            whole_db=whole,
        )

    async def async_purge(
        self,
        name: str | None,
        dry_run: bool = False,
        *,
        policy: PurgePolicy = DEFAULT_PURGE_POLICY,
        progress: ProgressCallback | None = None,
        force: bool = False,
    ) -> PurgeResult:
        """:meth:`purge` on the running event loop."""
        tenant = self._get_tenant(self.canonical(name))
        prefix, whole = self._purge_scope(tenant, force)
        return await async_purge(
            await tenant.plain_async_client(),
            prefix,
            dry_run=dry_run,
            policy=policy,
            progress=progress,
            whole_db=whole,
        )

    def _purge_scope(self, tenant: Tenant, force: bool) -> tuple[str, bool]:
        """``(prefix, whole_db)`` of a purge of ``tenant``, refusing one it may not do."""
        prefix = tenant.settings.key_prefix(tenant.name)
        if prefix is not None:
            return prefix, False
        with self._lock:
            others = [
                database_of(self._registry.settings_of(other))  # type: ignore[arg-type]
                for other in self._registry.names()
                if other != tenant.name
            ]
        check_own_database(tenant.name, database_of(tenant.settings), others, force=force)
        return "", True

    def acl_rules(self, name: str | None, *, server: AclFeatures = REDIS_7) -> list[str]:
        """The ``ACL SETUSER`` rules that confine namespaced tenant ``name``'s user to
        its namespace: its keys and channels, every command but those that cannot be
        confined (and those the namespaced client emulates). Add the user's password
        and ``on`` yourself; ``server`` picks the dialect (``acl_features(info)``).

        Raises:
            TenantConfigError: the tenant has no namespace.
        """
        key = self.canonical(name)
        settings = self.settings(key)
        prefix = settings.key_prefix(key)
        if prefix is None:
            raise TenantConfigError(
                f"tenant {key!r} has no namespace: its ACL user would need a database of "
                "its own instead (register it with namespace=True to confine it by prefix)"
            )
        return acl_rules(prefix, db=int(settings.redis_kwargs.get("db") or 0), server=server)

    # -- the active tenant ------------------------------------------------------------

    def tenant(self, name: str | None = None) -> TenantContext:
        """A context manager / decorator that makes ``name`` the active tenant."""
        check_name(name)
        return self._tenant_factory(name)

    def activate(self, name: str | None) -> Token[Any]:
        """Set the active tenant and return the ContextVar token (for ``reset``).

        A registered name that was never used becomes live here; an unknown one is
        asked of the loader (if any), else raises ``UnknownTenantError``.
        """
        try:
            found = self.lookup[name]
        except (KeyError, TypeError):  # looked up outside: its errors chain to nothing
            found = None
        if found is None:
            check_name(name)
            found = self._registry.resolve(str(name))
        return self.var.set(found)

    async def aactivate(self, name: str | None) -> Token[Any]:
        """:meth:`activate` for async code: an async loader may be awaited."""
        try:
            found = self.lookup[name]
        except (KeyError, TypeError):
            found = None
        if found is None:
            check_name(name)
            found = await self._registry.aresolve(str(name))
        return self.var.set(found)

    def current(self) -> str:
        """The active tenant's name (the default tenant's outside any block).

        In strict mode, outside any block, raises ``NoActiveTenantError``.
        """
        slot = self.var.get()
        if slot.name is None:
            resolved(slot.build_client)  # raises the strict-mode error
        return str(slot.name)

    def client(self, name: str | None = None) -> redis.Redis:
        """The concrete ``redis.Redis`` of ``name`` (default: the active tenant)."""
        slot = self.var.get() if name is None else self._get_tenant(name)
        try:  # inline, not resolved(): get_REDIS_DB() is on callers' hot paths
            return slot.sync_client()
        except Unresolved as exc:
            raise exc.public() from None

    def async_client(self, name: str | None = None) -> redis.asyncio.Redis:
        """The ``redis.asyncio.Redis`` of ``name`` (default: active) for the running loop."""
        slot = self.var.get() if name is None else self._get_tenant(name)
        return resolved(slot.async_client)

    def _get_tenant(self, name: str | None) -> Tenant:
        if name is None:
            slot = self.var.get()
            if isinstance(slot, Tenant):
                return slot
            self.current()  # raises the strict-mode error
        return self._registry.resolve(self.canonical(name))

    def describe_active(self) -> str:
        """``tenant='acme' endpoint=redis://host:port/db`` for the active tenant."""
        slot = self.var.get()
        if isinstance(slot, Tenant):
            return f"tenant={slot.name!r} endpoint={slot.settings.endpoint}"
        return repr(slot)

    def stats(self) -> RouterStats:
        """Registered and live tenants, shared clients, pools, open and idle connections."""
        with self._lock:
            registered = len(self._registry)
            live = len(self._registry.live)
        clients, pools, open_, idle = count_backends(self._backends.all())
        return RouterStats(registered, live, clients, pools, open_, idle)

    # -- lifecycle --------------------------------------------------------------------

    def disconnect(self) -> None:
        """Close every sync connection and stop the budget's reaper thread.

        Nothing is unregistered: tenants reconnect on their next use. Async connections
        close with their event loops.
        """
        for backend in self._backends.all():
            client = backend.sync_built()
            if client is None:
                continue
            if is_cluster(client):
                client.close()
            else:
                client.connection_pool.disconnect()
        if self.budget is not None:
            self.budget.close()

    def close(self) -> None:
        """The same as :meth:`disconnect`, for code that tidies up with ``close()``."""
        self.disconnect()


def database_of(settings: TenantSettings) -> tuple[str, int, int]:
    """Where a tenant's keys live, as ``(host, port, db)``, for the own-database check
    of a purge. Sentinel, Cluster and unix-socket tenants get a spelling of their own
    that only their peers share."""
    kwargs, topology = settings.redis_kwargs, settings.topology
    db = int(kwargs.get("db") or 0)
    if topology.kind == "sentinel":
        nodes = ",".join(f"{h}:{p}" for h, p in topology.nodes)
        return f"sentinel:{topology.service}@{nodes}", 0, db
    if topology.kind == "cluster":
        return "cluster:" + ",".join(f"{h}:{p}" for h, p in sorted(topology.nodes)), 0, 0
    if kwargs.get("unix_socket_path"):
        return f"unix:{kwargs['unix_socket_path']}", 0, db
    return str(kwargs.get("host") or "localhost"), int(kwargs.get("port") or 6379), db


def _tenant_class(router: Router) -> Callable[[str | None], TenantContext]:
    """``tenant()`` bound to ``router`` once: its enter and exit are the fast ones."""
    enter, exit_ = fast_paths(router)

    def __init__(self: TenantContext, name: str | None) -> None:
        self.name = name
        self._token = None

    namespace = {
        "__slots__": (),
        "__module__": __name__,
        "_router": router,
        "__init__": __init__,
        "__enter__": enter,
        "__exit__": exit_,
    }
    return type("RouterTenant", (TenantContext,), namespace)


def _sync_view(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only what ``redis.Redis`` also accepts, to derive a new tenant's sync side."""
    return {
        k: v
        for k, v in kwargs.items()
        if k != "auto_close_connection_pool"
        and not (k == "retry" and isinstance(v, redis.asyncio.retry.Retry))
    }
