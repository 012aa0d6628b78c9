"""Connections shared by tenants whose connection settings are identical.

Thousands of tenants often point at a handful of servers with the same options. Each
distinct *connection identity* (endpoints, db, credentials, TLS and every other client
option, failover list included) gets one :class:`Backend`: one endpoint plan, one sync
client with its pool, and one async client per event loop. Every tenant with that
identity uses those same objects, so 10 000 tenants spread over 16 databases of one
server open connections for 16 pools, not 10 000. Tenants on the same server with a
different db or credentials have a different identity and never share.

:class:`Backends` owns the identity -> Backend map, counts users, retires a backend's
client when its last tenant leaves, and keeps at most ``max_live_clients`` sync clients
alive: beyond that, the least recently used one (a "second chance" clock over a use bit
that the managed connections set, so the hot path pays one attribute write) is closed
and rebuilt on demand.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any

from ._budget import ConnectionBudget
from ._clients import build_async, build_sync, close_sync, retire_async
from ._failover import EndpointPlan, FailoverEvent
from ._settings import TenantSettings, Topology

if TYPE_CHECKING:
    from ._tenant import Tenant

__all__ = ["Backend", "Backends", "identity"]


def _freeze(value: Any) -> Hashable:
    try:
        hash(value)
    except TypeError:
        if isinstance(value, Mapping):
            return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
        if isinstance(value, list | tuple | set | frozenset):
            return tuple(_freeze(v) for v in value)
        return ("object", id(value))  # unhashable and opaque: only itself is identical
    return value  # type: ignore[no-any-return]


def identity(settings: TenantSettings) -> Hashable:
    """What two tenants must have in common to share connections."""
    return (
        _freeze(dict(settings.redis_kwargs)),
        _freeze(dict(settings.async_kwargs)),
        _freeze_topology(settings.topology),
        _freeze_topology(settings.async_topology),
    )


def _freeze_topology(topology: Topology) -> Hashable:
    return (
        topology.kind,
        topology.nodes,
        topology.service,
        topology.failover,
        topology.policy,
        _freeze(topology.sentinel_kwargs),
    )


def _routes(primary: str, topology: Topology) -> list[tuple[object, str]]:
    """A plan's (target, redacted URL) list: the primary (``None``: the connection's own
    settings), then each failover endpoint."""
    return [(None, primary), *((e, e.shown) for e in topology.failover)]


class Backend:
    """The plan and clients of one connection identity, shared by its tenants."""

    __slots__ = (
        "_announce",
        "_aplan",
        "_async",
        "_budget",
        "_lock",
        "_plan",
        "key",
        "settings",
        "sync",
        "users",
    )

    def __init__(
        self,
        key: Hashable,
        settings: TenantSettings,
        announce: Callable[[FailoverEvent], None] | None,
        budget: ConnectionBudget | None = None,
    ) -> None:
        self._budget = budget
        self.key = key
        self.settings = settings
        self.users: set[Tenant] = set()
        #: the sync client, once built
        self.sync: Any = None
        self._async: dict[asyncio.AbstractEventLoop, Any] = {}
        self._plan: EndpointPlan | None = None
        self._aplan: EndpointPlan | None = None
        self._announce = announce
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<Backend {self.settings.endpoint} users={len(self.users)}>"

    # -- plans --------------------------------------------------------------------------

    def plan(self) -> EndpointPlan:
        """The sync side's endpoint plan (shared with the async side when they match)."""
        if self._plan is None:
            with self._lock:
                if self._plan is None:
                    self._plan = self._new_plan(self.settings.endpoint, self.settings.topology)
        return self._plan

    def async_plan(self) -> EndpointPlan:
        settings = self.settings
        same = settings.async_endpoint == settings.endpoint
        if same and settings.async_topology.failover == settings.topology.failover:
            return self.plan()
        if self._aplan is None:
            with self._lock:
                if self._aplan is None:
                    self._aplan = self._new_plan(settings.async_endpoint, settings.async_topology)
        return self._aplan

    def _new_plan(self, primary: str, topology: Topology) -> EndpointPlan:
        return EndpointPlan(
            self.settings.name, _routes(primary, topology), topology.policy, self._announce
        )

    def set_failover(self, key: Hashable, settings: TenantSettings) -> None:
        """New failover endpoints for a backend with one user: no client is rebuilt."""
        self.key = key
        self.settings = settings
        for plan, side, topology in (
            (self._plan, settings.endpoint, settings.topology),
            (self._aplan, settings.async_endpoint, settings.async_topology),
        ):
            if plan is not None:
                plan.set_routes(_routes(side, topology))

    def touched(self) -> bool:
        """Read and clear the use bit (set by the managed connections on checkout)."""
        plan = self._plan
        if plan is None:
            return False
        used, plan.touched = plan.touched, False
        return used

    # -- clients ------------------------------------------------------------------------

    def sync_client(self) -> tuple[Any, bool]:
        """The sync client and whether this call built it."""
        with self._lock:
            if self.sync is not None:
                return self.sync, False
            settings = self.settings
            self.sync = build_sync(
                settings.redis_kwargs, settings.topology, self.plan, self._budget
            )
            return self.sync, True

    def async_client(self, loop: asyncio.AbstractEventLoop) -> tuple[Any, bool]:
        """The async client for ``loop`` (one per loop, shared by the users) and whether
        this call built it."""
        with self._lock:
            client = self._async.get(loop)
            built = client is None
            if client is None:
                for closed in [lp for lp in self._async if lp.is_closed()]:
                    del self._async[closed]
                settings = self.settings
                client = build_async(
                    settings.async_kwargs, settings.async_topology, self.async_plan, self._budget
                )
                self._async[loop] = client
            return client, built

    def detach_async(self, loop: asyncio.AbstractEventLoop) -> Any:
        """Take ``loop``'s async client away (eviction); the caller closes it."""
        with self._lock:
            return self._async.pop(loop, None)

    def detach_sync(self) -> Any:
        """Take the sync client away (eviction or retirement); the caller closes it."""
        with self._lock:
            client, self.sync = self.sync, None
            return client


class Backends:
    """Identity -> :class:`Backend`, with user counts and the live-client limit.

    Args:
        announce: passed to every plan (failover events).
        max_live_clients: at most this many sync clients stay built; ``None``: no limit.
    """

    def __init__(
        self,
        announce: Callable[[FailoverEvent], None] | None,
        max_live_clients: int | None = None,
        budget: ConnectionBudget | None = None,
    ) -> None:
        self._announce = announce
        self.budget = budget
        self.max_live_clients = max_live_clients
        self._by_key: dict[Hashable, Backend] = {}
        # The clock's rings: backends with a sync client, and per event loop those with
        # an async client on it; each ring has its own hand.
        self._built: list[Backend] = []
        self._abuilt: dict[asyncio.AbstractEventLoop, list[Backend]] = {}
        self._hands: dict[object, int] = {}
        self._lock = threading.Lock()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._by_key)

    def acquire(self, tenant: Tenant, settings: TenantSettings) -> Backend:
        """The backend for ``settings``, with ``tenant`` counted as a user."""
        key = identity(settings)
        with self._lock:
            backend = self._by_key.get(key)
            if backend is None:
                backend = self._by_key[key] = Backend(key, settings, self._announce, self.budget)
            backend.users.add(tenant)
            return backend

    def release(self, tenant: Tenant, backend: Backend) -> None:
        """``tenant`` stopped using ``backend``; close its client if nobody is left."""
        with self._lock:
            backend.users.discard(tenant)
            if backend.users or self._by_key.get(backend.key) is not backend:
                return
            del self._by_key[backend.key]
            if backend in self._built:
                self._built.remove(backend)
            for ring in self._abuilt.values():
                if backend in ring:
                    ring.remove(backend)
        client = backend.detach_sync()
        if client is not None:
            close_sync(client)

    def refailover(self, tenant: Tenant, backend: Backend, settings: TenantSettings) -> bool:
        """Give ``tenant`` new failover endpoints; True if its clients stay as they are.

        A backend used by ``tenant`` alone is updated in place. A shared one is left to
        its other users, and the tenant moves to another backend (new clients).
        """
        key = identity(settings)
        with self._lock:
            if backend.users == {tenant} and key not in self._by_key:
                del self._by_key[backend.key]
                self._by_key[key] = backend
                backend.set_failover(key, settings)
                return True
        self.release(tenant, backend)
        return False

    def built(self, backend: Backend) -> None:
        """A sync client was just built: enforce ``max_live_clients``."""
        limit = self.max_live_clients
        with self._lock:
            self._built.append(backend)
            if limit is None:
                return
            victims = self._over_limit(self._built, "sync", backend, limit)
        for victim in victims:
            self._evict(victim)

    def built_async(self, backend: Backend, loop: asyncio.AbstractEventLoop) -> None:
        """An async client was just built on ``loop`` (the running one): same limit,
        counted per loop."""
        limit = self.max_live_clients
        with self._lock:
            for closed in [lp for lp in self._abuilt if lp.is_closed()]:
                del self._abuilt[closed]
                self._hands.pop(closed, None)
            ring = self._abuilt.setdefault(loop, [])
            ring.append(backend)
            if limit is None:
                return
            victims = self._over_limit(ring, loop, backend, limit)
        for victim in victims:
            client = victim.detach_async(loop)
            if client is None:
                continue
            for tenant in list(victim.users):
                tenant.drop_async_client(loop, client)
            self.evictions += 1
            retire_async(client)

    def _over_limit(
        self, ring: list[Backend], hand: object, keep: Backend, limit: int
    ) -> list[Backend]:
        # Called with the lock held: take victims out of ``ring`` until it fits.
        victims = []
        while len(ring) > limit:
            victim = self._next_victim(ring, hand, keep)
            if victim is None:
                break
            ring.remove(victim)
            victims.append(victim)
        return victims

    def _next_victim(self, ring: list[Backend], hand: object, keep: Backend) -> Backend | None:
        # Second chance: skip (and clear) backends used since the hand last passed.
        position = self._hands.get(hand, 0)
        try:
            for _ in range(2 * len(ring)):
                position %= len(ring)
                candidate = ring[position]
                position += 1
                if candidate is not keep and not candidate.touched():
                    return candidate
        finally:
            self._hands[hand] = position
        others = [b for b in ring if b is not keep]
        return others[0] if others else None

    def _evict(self, backend: Backend) -> None:
        client = backend.detach_sync()
        if client is None:
            return
        for tenant in list(backend.users):
            tenant.drop_sync_client(client)
        self.evictions += 1
        close_sync(client)
