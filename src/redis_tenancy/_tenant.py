"""One registered tenant: its settings, its lease, and its lazily built clients.

The ContextVar of a router holds :class:`Tenant` objects (or, in strict mode outside
any block, a :class:`StrictSlot`). The proxies read ``slot.client`` on every access;
until the client is built that slot holds a :class:`Pending` stand-in whose first
attribute read builds it and forwards the read, so the proxies' hot path is a plain
slot read with no branch and no ``try``. Removed tenants and strict mode keep a
stand-in forever, whose reads raise :class:`Unresolved`.

A tenant's clients are its own ``redis.Redis`` (and one ``redis.asyncio.Redis`` per
event loop): cheap copies of its backend's template client whose pool is the tenant's
view of the backend's shared pool (:mod:`redis_tenancy._lease`). Replacing or removing
the tenant retires its lease, so everything made from the old clients refuses from
then on, while tenants sharing the backend carry on.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any

import redis
import redis.asyncio
import redis.cluster

from ._backend import Backend, Backends, identity
from ._clients import is_cluster, tenant_copy
from ._errors import (
    NoActiveTenantError,
    NoEventLoopError,
    PopotoException,
    UnknownTenantError,
    Unresolved,
)
from ._failover import EndpointPlan, TenantStatus
from ._lease import AsyncPlainTenantPool, AsyncTenantPool, Lease, PlainTenantPool, TenantPool
from ._loops import LoopMap
from ._namespace import Namespace
from ._nsclient import NamespacedRedis
from ._nsclient_async import AsyncNamespacedRedis
from ._nscluster import NamespacedRedisCluster
from ._settings import TenantSettings

__all__ = ["NO_LOOP", "LoopClient", "Pending", "StrictSlot", "Tenant"]


def _close_nothing(*args: Any, **kwargs: Any) -> None:
    """``close()`` of a client that was never built: there is nothing to close."""


class Pending:
    """Stand-in for a sync client that is not built (yet, or ever).

    Any attribute read asks the owner to build the client and forwards the read;
    owners that cannot build (removed tenant, strict mode) raise :class:`Unresolved`.
    ``close`` is answered without building anything: closing a client nobody used
    must not build one (a Cluster client reads its slot map when built).
    """

    __slots__ = ("_owner",)

    def __init__(self, owner: Tenant | StrictSlot) -> None:
        object.__setattr__(self, "_owner", owner)

    def __getattribute__(self, name: str) -> Any:
        if name == "close":
            return _close_nothing
        owner = object.__getattribute__(self, "_owner")
        return getattr(owner.build_client(), name)

    def __repr__(self) -> str:
        return "<client not built yet>"


class LoopClient:
    """A tenant's async client on one event loop, as the async proxy's fast path reads it.

    Attributes:
        loop: the event loop the client belongs to.
        client: the tenant's ``redis.asyncio.Redis`` on that loop.
        probe: the loop itself when it keeps ``_thread_id`` (asyncio), so the fast path
            is one comparison, ``entry.probe._thread_id == get_ident()``; for loops
            that do not say which thread runs them (uvloop) a stand-in that runs in no
            thread.
        thread: for those other loops only, the thread that last found the loop
            running in it; the fast path trusts such a loop while it runs and was last
            resolved in this thread. Stays -1 for asyncio loops.
    """

    __slots__ = ("client", "loop", "probe", "thread")

    def __init__(self, loop: Any, client: Any) -> None:
        self.loop = loop
        self.client = client
        self.thread = -1
        self.probe = loop if hasattr(loop, "_thread_id") else _NOWHERE

    def seen_in(self, thread: int) -> None:
        """Note that ``thread`` found the loop running (what loops without
        ``_thread_id`` are trusted on)."""
        if self.probe is _NOWHERE:
            self.thread = thread


class _NoLoop:
    """Stands in for a loop in :data:`NO_LOOP`: it runs in no thread.

    ``_thread_id`` is an int that no thread has, held in a slot: the fast path
    compares it with ``get_ident()`` on every access to a uvloop client, and an
    int-to-int comparison of a slot is the cheapest such test.
    """

    __slots__ = ("_thread_id",)

    def __init__(self) -> None:
        self._thread_id = -1

    def is_running(self) -> bool:
        return False


_NOWHERE = _NoLoop()

#: What the fast path finds before any loop was seen: always "take the slow path".
NO_LOOP = LoopClient(_NOWHERE, None)
#: The ``loops_by_thread`` of a tenant never used async: shared, so never written (a
#: tenant gets its own dict on first async use).
_NO_THREADS: dict[int, LoopClient] = {}


class Tenant:
    """A registered tenant: settings, a lease on a backend, and lazily built clients.

    Attributes read on the hot path:
        client: the sync ``redis.Redis`` (built on first access).
        last_loop: the :class:`LoopClient` the async side resolved last (any thread).
        loops_by_thread: thread id -> :class:`LoopClient` of the loop last seen running
            in that thread; replaced wholesale (never mutated in place) when the
            tenant's settings change.
    """

    __slots__ = (
        "__weakref__",
        "_announce",
        "_backends",
        "_lease",
        "_lock",
        "_loops",
        "client",
        "last_loop",
        "loops_by_thread",
        "name",
        "removed",
        "settings",
    )

    client: redis.Redis | Pending

    def __init__(
        self,
        settings: TenantSettings,
        backends: Backends,
        announce: Any = None,
    ) -> None:
        self.client = Pending(self)
        self.name = settings.name
        self.settings = settings
        self.removed = False
        self.last_loop = NO_LOOP
        self.loops_by_thread = _NO_THREADS
        self._lock = threading.Lock()
        # Made on first async use: most tenants of a big registry never go async.
        self._loops: LoopMap[LoopClient] | None = None
        self._backends = backends
        self._announce = announce
        self._lease: Lease | None = None

    def __repr__(self) -> str:
        return f"<Tenant {self.name!r} {self.settings.endpoint}>"

    def _leased(self) -> Lease:
        """The current lease, taken now if there is none. Called with the lock held."""
        if self.removed:
            raise Unresolved(lambda: UnknownTenantError(self.name))
        lease = self._lease
        if lease is None:
            backend = self._backends.acquire(self.settings)
            lease = self._lease = Lease(self.name, backend, self._announce)
        return lease

    # -- sync -------------------------------------------------------------------------

    def sync_client(self) -> redis.Redis:
        """The sync client, built on first use."""
        client = self.client
        if type(client) is Pending:
            return self.build_client()
        return client  # type: ignore[return-value]

    def build_client(self) -> redis.Redis:
        """Build the sync client if no other thread did meanwhile (slow path)."""
        while True:
            with self._lock:
                client = self.client
                if type(client) is not Pending:
                    return client  # type: ignore[return-value]
                lease = self._leased()
            template, _ = lease.backend.sync_template()  # outside our lock: may evict others
            with self._lock:
                if self._lease is not lease:  # replaced meanwhile: build from the new settings
                    continue
                client = self.client
                if type(client) is Pending:
                    view = TenantPool if lease.backend.tracked() else PlainTenantPool
                    client = self.client = _tenant_client(template, view(lease), self.namespace())
                return client  # type: ignore[return-value]

    # -- failover plans ---------------------------------------------------------------

    def plan(self) -> EndpointPlan:
        """The sync side's endpoint plan (shared with every tenant of the same identity)."""
        with self._lock:
            lease = self._leased()
        return lease.backend.plan()

    def set_failover(self, settings: TenantSettings) -> None:
        """Swap in settings that differ only in failover endpoints.

        The plans learn the new endpoint list at once, so the next connection the
        tenant opens may use it; connections already open, clients and objects made
        from them are not touched (the lease follows the tenant to its new backend).
        """
        with self._lock:
            self.settings = settings
            lease = self._lease
            if lease is not None:
                lease.backend = self._backends.for_new_failover(lease.backend, settings)

    def status(self) -> TenantStatus:
        """Endpoints, their circuit states and switch counters (see Router.status)."""
        topology = self.settings.topology
        if topology.kind in ("sentinel", "cluster"):
            return TenantStatus(self.name, topology.kind, self.settings.endpoint, ())
        return self.plan().status(self.name, topology.kind)

    def built_client(self) -> redis.Redis | None:
        """The sync client if it has been built, without building it."""
        client = self.client
        return None if type(client) is Pending else client  # type: ignore[return-value]

    def namespace(self) -> Namespace | None:
        """The key namespace this tenant's clients are confined to, if any."""
        prefix = self.settings.key_prefix(self.name)
        return None if prefix is None else _namespace(prefix)

    def plain_client(self) -> redis.Redis:
        """The tenant's client without its namespace (purge reads names as stored)."""
        with self._lock:
            lease = self._leased()
        template, _ = lease.backend.sync_template()
        if is_cluster(template):
            return template  # type: ignore[no-any-return]
        view = TenantPool if lease.backend.tracked() else PlainTenantPool
        return tenant_copy(template, view(lease))  # type: ignore[no-any-return]

    async def plain_async_client(self) -> redis.asyncio.Redis:
        """The async twin of :meth:`plain_client`, for the running loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            lease = self._leased()
        template, _ = lease.backend.async_template(loop)
        if is_cluster(template):
            return template  # type: ignore[no-any-return]
        view = AsyncTenantPool if lease.backend.tracked() else AsyncPlainTenantPool
        return tenant_copy(template, view(lease, loop))  # type: ignore[no-any-return]

    def backend(self) -> Backend | None:
        """The backend this tenant uses now, if it has taken one."""
        lease = self._lease
        return None if lease is None else lease.backend

    # -- async ------------------------------------------------------------------------

    def async_client(self) -> redis.asyncio.Redis:
        """This tenant's async client for the running event loop (built if needed)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise Unresolved(
                lambda: NoEventLoopError(
                    f"tenant {self.name!r}: the async client needs a running event loop; "
                    "use POPOTO_ASYNC_REDIS_DB inside a coroutine"
                )
            ) from None
        ident = threading.get_ident()
        while True:
            with self._lock:
                loops = self._loops
                if loops is None:
                    loops = self._loops = LoopMap(self._lock, self._forget)
                entry = loops.get(loop)
                if entry is not None:
                    break
                lease = self._leased()
            template, _ = lease.backend.async_template(loop)  # outside our lock
            with self._lock:
                if self._lease is not lease or self._loops is not loops:
                    continue
                entry = loops.get(loop)
                if entry is None:
                    aview = AsyncTenantPool if lease.backend.tracked() else AsyncPlainTenantPool
                    made = _tenant_client(template, aview(lease, loop), self.namespace())
                    entry = LoopClient(loop, made)
                    loops.add(loop, entry)
                break
        entry.seen_in(ident)
        if self.loops_by_thread is _NO_THREADS:
            self.loops_by_thread = {}
        self.loops_by_thread[ident] = entry
        self.last_loop = entry
        return entry.client  # type: ignore[no-any-return]

    async def _forget(self, entry: LoopClient) -> None:
        # Its loop shut down: drop it from the fast path too (a fresh dict, as always).
        with self._lock:
            self.loops_by_thread = {k: v for k, v in self.loops_by_thread.items() if v is not entry}
            if self.last_loop is entry:
                self.last_loop = NO_LOOP

    def loop_count(self) -> int:
        """How many event loops currently hold clients of this tenant."""
        return 0 if self._loops is None else len(self._loops)

    # -- lifecycle --------------------------------------------------------------------

    def replace(self, settings: TenantSettings) -> None:
        """Swap in new settings.

        Identical connection settings (and key prefix) change nothing: the clients and
        everything made from them carry on. Otherwise the old lease is retired:
        commands already running finish on the old connections, new accesses build
        fresh clients, and objects made from the old ones follow the tenant (or
        refuse, see :mod:`redis_tenancy._lease`).
        """
        with self._lock:
            follows = _same_replies(self.settings, settings)
            self.settings = settings
            lease = self._lease
            if follows and lease is not None and identity(settings) == lease.backend.key:
                return
        self._retire(self.current_lease if follows else None)

    def close(self) -> None:
        """Unregister: later use raises; running commands finish, then connections close."""
        with self._lock:
            self.removed = True
        self._retire(None)

    def current_lease(self) -> Lease | None:
        """The lease objects made from a retired one follow (``None`` once removed)."""
        with self._lock:
            return None if self.removed else self._leased()

    def _retire(self, successor: Any) -> None:
        with self._lock:
            lease, self._lease = self._lease, None
            self.client = Pending(self)
            self._loops = None
            self.loops_by_thread = _NO_THREADS
            self.last_loop = NO_LOOP
        if lease is not None:
            lease.retire(successor)
            self._backends.release(lease.backend)


#: Client options that decide how replies are read: objects made under one value cannot
#: follow a tenant to another (their parsers and callbacks were built for the first).
_REPLY_OPTIONS = ("protocol", "decode_responses", "encoding", "encoding_errors")


def _same_replies(old: TenantSettings, new: TenantSettings) -> bool:
    if old.key_prefix(old.name) != new.key_prefix(new.name):
        return False
    return all(
        a.get(k) == b.get(k)
        for a, b in ((old.redis_kwargs, new.redis_kwargs), (old.async_kwargs, new.async_kwargs))
        for k in _REPLY_OPTIONS
    ) and (old.topology.kind == "cluster") == (new.topology.kind == "cluster")


def _tenant_client(
    template: Any, pool: TenantPool | AsyncTenantPool, namespace: Namespace | None
) -> Any:
    """A tenant's client over ``pool`` (a Cluster client has no single pool to view),
    confined to ``namespace`` if the tenant has one."""
    if namespace is None:
        return template if is_cluster(template) else tenant_copy(template, pool)
    if isinstance(template, redis.cluster.RedisCluster):
        return NamespacedRedisCluster.wrap(template, namespace)
    if is_cluster(template):
        from ._nscluster_async import AsyncNamespacedRedisCluster

        return AsyncNamespacedRedisCluster.wrap(template, namespace)
    if isinstance(template, redis.asyncio.Redis):
        return AsyncNamespacedRedis.wrap(template, namespace, connection_pool=pool)
    return NamespacedRedis.wrap(template, namespace, connection_pool=pool)


@functools.lru_cache(maxsize=4096)
def _namespace(prefix: str) -> Namespace:
    """One :class:`Namespace` per prefix (tenants re-use theirs across replaces)."""
    return Namespace(prefix)


class StrictSlot:
    """What the ContextVar holds outside any ``tenant()`` block in strict mode."""

    __slots__ = ("client",)
    name = None
    last_loop = NO_LOOP
    loops_by_thread = _NO_THREADS

    def __init__(self) -> None:
        self.client = Pending(self)

    def __repr__(self) -> str:
        return "<no active tenant (strict mode)>"

    def sync_client(self) -> redis.Redis:
        raise Unresolved(_strict_error)

    def build_client(self) -> redis.Redis:
        raise Unresolved(_strict_error)

    def async_client(self) -> redis.asyncio.Redis:
        raise Unresolved(_strict_error)


def _strict_error() -> PopotoException:
    return NoActiveTenantError(
        "no active tenant: strict mode requires every Redis use to run inside "
        "`with tenant(name):` (or a function decorated with @tenant(name))"
    )
