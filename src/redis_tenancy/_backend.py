"""Connections shared by tenants whose connection settings are identical.

Thousands of tenants often point at a handful of servers with the same options. Each
distinct *connection identity* (endpoints, db, credentials, TLS and every other client
option, failover list included; a key prefix is not part of it) gets one
:class:`Backend`: one endpoint plan, one sync pool, and one async pool per event loop.
Every tenant with that identity uses those same pools through its own lease (see
:mod:`redis_tenancy._lease`), so 10 000 tenants spread over 16 databases of one server
open connections for 16 pools, not 10 000. Tenants on the same server with a different
db or credentials have a different identity and never share.

:class:`Backends` owns the identity -> Backend map, counts users, retires a backend's
pools when its last tenant leaves, and keeps at most ``max_live_clients`` sync pools
open: beyond that, the least recently used one (a "second chance" clock over a use bit
that the connections set on checkout) is closed; it is rebuilt on the next use, and
the tenants' clients never notice.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from ._budget import ConnectionBudget
from ._clients import build, close_async, pool_of, retire_async, retire_sync
from ._connection import PoolState
from ._errors import NoEventLoopError
from ._failover import EndpointPlan, FailoverEvent
from ._loops import LoopMap, running_loop
from ._settings import TenantSettings, Topology

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
    return (type(value), value)  # True and 1 are different settings


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


class _Side:
    """One built template client and the state its connections share."""

    __slots__ = ("client", "pool", "state")

    def __init__(self, client: Any, state: PoolState) -> None:
        self.client = client
        self.state = state
        self.pool = pool_of(client)


class Backend:
    """The plans and pools of one connection identity, shared by its tenants."""

    __slots__ = (
        "_announce",
        "_aplan",
        "_async",
        "_lock",
        "_notify",
        "_plan",
        "_sync",
        "budget",
        "key",
        "pool",
        "settings",
        "users",
    )

    def __init__(
        self,
        key: Hashable,
        settings: TenantSettings,
        announce: Callable[[FailoverEvent], None] | None,
        budget: ConnectionBudget | None = None,
        notify: Callable[[Backend, asyncio.AbstractEventLoop | None], None] | None = None,
    ) -> None:
        self.budget = budget
        self._notify = notify
        self.key = key
        self.settings = settings
        self.users = 0
        self._sync: _Side | None = None
        #: The shared sync pool once built (``None`` after an eviction): the pool views
        #: read it on every command, so it is a plain attribute.
        self.pool: Any = None
        self._lock = threading.RLock()
        self._async: LoopMap[_Side] = LoopMap(self._lock, _close_async)
        self._plan: EndpointPlan | None = None
        self._aplan: EndpointPlan | None = None
        self._announce = announce

    def __repr__(self) -> str:
        return f"<Backend {self.settings.endpoint} users={self.users}>"

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
        return EndpointPlan(_routes(primary, topology), topology.policy)

    def set_failover(self, key: Hashable, settings: TenantSettings) -> None:
        """New failover endpoints for a backend with one user: no pool is rebuilt."""
        self.key = key
        self.settings = settings
        for plan, side, topology in (
            (self._plan, settings.endpoint, settings.topology),
            (self._aplan, settings.async_endpoint, settings.async_topology),
        ):
            if plan is not None:
                plan.set_routes(_routes(side, topology))

    def touched(self) -> bool:
        """Read and clear the sync pool's use bit (set by its connections on checkout)."""
        side = self._sync
        if side is None:
            return False
        used, side.state.touched = side.state.touched, False
        return used

    def touched_async(self, loop: asyncio.AbstractEventLoop) -> bool:
        side = self._async.get(loop)
        if side is None:
            return False
        used, side.state.touched = side.state.touched, False
        return used

    # -- templates and pools ---------------------------------------------------------------

    def sync_template(self) -> tuple[Any, bool]:
        """The sync template client and whether this call built it."""
        side = self._sync
        if side is not None:
            return side.client, False
        return self._build(None)

    def sync_pool(self) -> Any:
        """The shared sync pool, (re)built on demand."""
        side = self._sync
        if side is not None:
            return side.pool
        return pool_of(self.sync_template()[0])

    def tracked(self) -> bool:
        """Are this backend's connections the router's own (not a caller's pool or
        connection class)? Only those can be labelled with a tenant's lease."""
        settings = self.settings
        if settings.topology.kind == "cluster" or "connection_pool" in settings.redis_kwargs:
            return False
        return "connection_class" not in settings.redis_kwargs

    def async_template(self, loop: asyncio.AbstractEventLoop) -> tuple[Any, bool]:
        """The async template client for ``loop`` (the running one) and whether this
        call built it."""
        side = self._async.get(loop)
        if side is not None:
            return side.client, False
        return self._build(loop)

    def async_pool(self, loop: asyncio.AbstractEventLoop) -> Any:
        """The shared async pool of ``loop``, (re)built on demand from that loop only."""
        side = self._async.get(loop)
        if side is not None:
            return side.pool
        if running_loop() is not loop:
            raise NoEventLoopError(
                "an async client's pool can only be rebuilt from inside its own event loop"
            )
        return pool_of(self.async_template(loop)[0])

    def _build(self, loop: asyncio.AbstractEventLoop | None) -> tuple[Any, bool]:
        """Build the sync template (``loop`` None) or ``loop``'s, unless another thread
        did meanwhile; then tell the live-client clock (outside our lock: eviction takes
        other backends' locks)."""
        with self._lock:
            side = self._sync if loop is None else self._async.get(loop)
            if side is not None:
                return side.client, False
            settings = self.settings
            state = PoolState(self._announce, self.budget)
            if loop is None:
                client = build(
                    settings.redis_kwargs, settings.topology, self.plan, state, self.budget
                )
            else:
                client = build(
                    settings.async_kwargs,
                    settings.async_topology,
                    self.async_plan,
                    state,
                    self.budget,
                    asynchronous=True,
                )
            side = _Side(client, state)
            if loop is None:
                self._sync = side
                self.pool = side.pool
            else:
                self._async.add(loop, side)
        if self._notify is not None:
            self._notify(self, loop)
        return side.client, True

    def sync_built(self) -> Any:
        """The sync template if built (for statistics and ``Router.close``), else None."""
        side = self._sync
        return None if side is None else side.client

    def templates(self) -> list[Any]:
        """Every template client built (sync, then one per loop)."""
        with self._lock:
            found = [side.client for side in self._async.values()]
            if self._sync is not None:
                found.insert(0, self._sync.client)
            return found

    def states(self) -> list[PoolState]:
        with self._lock:
            sides = [side for side in (self._sync, *self._async.values()) if side is not None]
            return [side.state for side in sides]

    # -- closing ------------------------------------------------------------------------------

    def close_sync(self) -> None:
        """Retire the sync pool (eviction or retirement); the next use rebuilds it."""
        with self._lock:
            side, self._sync = self._sync, None
            self.pool = None
        if side is not None:
            retire_sync(side.client, side.state)

    def close_async(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Retire ``loop``'s async pool on that loop; True if there was one."""
        with self._lock:
            side = self._async.pop(loop)
        if side is None:
            return False
        retire_async(side.client, side.state, loop)
        return True

    def retire(self) -> None:
        """The last tenant left: retire every pool, each on its own loop."""
        self.close_sync()
        for loop in self._async:
            self.close_async(loop)


async def _close_async(side: _Side) -> None:
    side.state.retired = True
    await close_async(side.client)


class Backends:
    """Identity -> :class:`Backend`, with user counts and the live-client limit.

    Args:
        announce: tells the router about a tenant's failover event.
        max_live_clients: at most this many sync pools stay open (and this many async
            pools per event loop); ``None``: no limit.
        budget: the router's connection budget, if any.
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
        # The clock's rings: backends with a sync pool, and per event loop those with
        # an async pool on it; each ring has its own hand.
        self._built: list[Backend] = []
        self._abuilt: dict[asyncio.AbstractEventLoop, list[Backend]] = {}
        self._hands: dict[object, int] = {}
        self._lock = threading.Lock()
        self.evictions = 0

    def acquire(self, settings: TenantSettings) -> Backend:
        """The backend for ``settings``, counted as used once more."""
        key = identity(settings)
        with self._lock:
            backend = self._by_key.get(key)
            if backend is None:
                backend = Backend(key, settings, self._announce, self.budget, self.pool_built)
                self._by_key[key] = backend
            backend.users += 1
            return backend

    def release(self, backend: Backend) -> None:
        """One user stopped using ``backend``; retire its pools if nobody is left."""
        with self._lock:
            backend.users -= 1
            if backend.users > 0 or self._by_key.get(backend.key) is not backend:
                return
            del self._by_key[backend.key]
            if backend in self._built:
                self._built.remove(backend)
            for ring in self._abuilt.values():
                if backend in ring:
                    ring.remove(backend)
        backend.retire()

    def for_new_failover(self, backend: Backend, settings: TenantSettings) -> Backend:
        """The backend for a user of ``backend`` whose failover endpoints changed.

        A backend with that one user is updated in place (its pools stay); a shared
        one is left to its other users and the caller moves to another backend.
        """
        key = identity(settings)
        with self._lock:
            if backend.users == 1 and key not in self._by_key:
                del self._by_key[backend.key]
                self._by_key[key] = backend
                backend.set_failover(key, settings)
                return backend
        moved = self.acquire(settings)
        self.release(backend)
        return moved

    def pool_built(self, backend: Backend, loop: asyncio.AbstractEventLoop | None) -> None:
        """A pool was just built (``loop`` None: the sync one): enforce the limit."""
        if loop is None:
            self._sync_pool_built(backend)
        else:
            self._async_pool_built(backend, loop)

    def _sync_pool_built(self, backend: Backend) -> None:
        """A sync pool was just built: enforce ``max_live_clients``."""
        limit = self.max_live_clients
        with self._lock:
            self._built.append(backend)
            if limit is None:
                return
            victims = self._over_limit(self._built, "sync", backend, limit, Backend.touched)
        for victim in victims:
            victim.close_sync()
            self.evictions += 1

    def _async_pool_built(self, backend: Backend, loop: asyncio.AbstractEventLoop) -> None:
        """An async pool was just built on ``loop`` (the running one): the same limit,
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
            victims = self._over_limit(ring, loop, backend, limit, lambda b: b.touched_async(loop))
        for victim in victims:
            if victim.close_async(loop):
                self.evictions += 1

    def _over_limit(
        self,
        ring: list[Backend],
        hand: object,
        keep: Backend,
        limit: int,
        touched: Callable[[Backend], bool],
    ) -> list[Backend]:
        # Called with the lock held: take victims out of ``ring`` until it fits.
        victims = []
        while len(ring) > limit:
            victim = self._next_victim(ring, hand, keep, touched)
            if victim is None:
                break
            ring.remove(victim)
            victims.append(victim)
        return victims

    def _next_victim(
        self,
        ring: list[Backend],
        hand: object,
        keep: Backend,
        touched: Callable[[Backend], bool],
    ) -> Backend | None:
        # Second chance: skip (and clear) backends used since the hand last passed.
        position = self._hands.get(hand, 0)
        try:
            for _ in range(2 * len(ring)):
                position %= len(ring)
                candidate = ring[position]
                position += 1
                if candidate is not keep and not touched(candidate):
                    return candidate
        finally:
            self._hands[hand] = position
        others = [b for b in ring if b is not keep]
        return others[0] if others else None

    def all(self) -> list[Backend]:
        with self._lock:
            return list(self._by_key.values())
