"""A tenant's hold on shared connections, and the pool view its clients talk through.

Tenants with identical connection settings share one pool (see :mod:`._backend`), so a
pool alone cannot say which tenant a pipeline or a pub/sub object was made for. Each
tenant therefore gets a :class:`Lease` for as long as its settings stay the same, and
its clients get a :class:`TenantPool` (or :class:`AsyncTenantPool`): an object with a
connection pool's public API that hands out the shared pool's connections, labelled
with the lease. redis-py's ``Pipeline``, ``PubSub``, ``Lock`` and ``Script`` all take
their connections from ``client.connection_pool``, so every object made from a
tenant's client goes through the view.

When the tenant is replaced or removed its lease is *retired*, and nothing made from
it ever takes a connection to the old server again (where another tenant's data may
live by then); commands already running finish on the connections they hold:

- clients, pipelines, locks and scripts made before a replace **follow the tenant**:
  their next command takes a connection from the tenant's new backend;
- unless the replace changed how replies are read (protocol, decoding) or keys are
  named (the key prefix): then, like everything made before a removal, they raise
  :class:`StaleClientError`;
- pub/sub objects are **cut** (their subscriptions live on the old server's
  connection): their next read raises :class:`StaleClientError`, and so does a
  reconnect.

Adding or removing a failover URL does not retire a lease (the data has not moved):
the lease moves to the tenant's new backend, and everything made before carries on.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._errors import EndpointsDown, StaleClientError
from ._failover import INF, FailoverEvent

if TYPE_CHECKING:
    import asyncio

    from ._backend import Backend

__all__ = ["AsyncPlainTenantPool", "AsyncTenantPool", "Lease", "PlainTenantPool", "TenantPool"]


class Lease:
    """One tenant's use of one backend, from a registration until its replacement.

    Attributes:
        name: the tenant's name (errors and failover events name it).
        backend: the shared connections it uses; swapped, not retired, when only the
            tenant's failover endpoints change.
        retired: the tenant was replaced or removed: nothing made from this lease may
            take a connection any more.
    """

    __slots__ = ("__weakref__", "_successor", "announce", "backend", "name", "retired", "watched")

    def __init__(
        self, name: str, backend: Backend, announce: Callable[[FailoverEvent], None] | None
    ) -> None:
        self.name = name
        self.backend = backend
        self.announce = announce
        self.retired = False
        self._successor: Callable[[], Lease | None] | None = None
        #: Connections held by this tenant's pub/sub objects (cut on retirement); made
        #: on first use, as most tenants never subscribe.
        self.watched: weakref.WeakSet[Any] | None = None

    def __repr__(self) -> str:
        state = " retired" if self.retired else ""
        return f"<Lease {self.name!r}{state}>"

    def stale(self) -> StaleClientError:
        return StaleClientError(
            f"tenant {self.name!r}: this object was made before the tenant was removed, "
            "or before a change of its settings that objects made earlier cannot follow "
            "(pub/sub subscriptions, the reply protocol or decoding, the key prefix); it "
            "may not reach the old server again: make a new one from POPOTO_REDIS_DB / "
            "get_REDIS_DB() (or the async twins)"
        )

    def watch(self, connection: Any) -> None:
        if self.watched is None:
            self.watched = weakref.WeakSet()
        self.watched.add(connection)
        if self.retired:  # replaced while it was subscribing
            connection.cut()

    def unwatch(self, connection: Any) -> None:
        if self.watched is not None:
            self.watched.discard(connection)

    def retire(self, successor: Callable[[], Lease | None] | None = None) -> None:
        """Stop serving this lease; cut the tenant's pub/sub connections.

        ``successor`` gives the tenant's current lease (``None`` once it is removed):
        objects made from this lease follow it from now on. Without one they refuse.
        """
        self._successor = successor
        self.retired = True
        for connection in list(self.watched or ()):
            connection.cut()

    def follow(self) -> Lease:
        """The lease objects made from this retired one use now, or StaleClientError."""
        lease = self
        while lease.retired:
            successor = lease._successor
            found = None if successor is None else successor()
            if found is None:
                raise self.stale()
            lease = found
        return lease

    def checked_out(self, connection: Any) -> Any:
        """Label a connection its pool handed out; report a switch it made meanwhile
        (inside the pool nobody held it yet) as this tenant's event."""
        connection.holder = self
        switch = connection.switch
        if switch is not None:
            connection.switch = None
            connection.pool_state.report(switch, self.name)
        return connection


def _checked_in(connection: Any) -> tuple[Any, bool]:
    """A caller gave a connection back: unlabel it. Returns its pool, and whether to
    close it first (nobody routes to its pool any more, or its plan moved on)."""
    connection.busy = False
    connection.holder = None
    state = connection.pool_state
    pool = state.pool()
    plan = connection.plan
    moved = plan is not None and not plan.keep(connection.route)
    return pool, state.retired or pool is None or moved


def _idle_again(connection: Any) -> None:
    """A connection came back: the budget's LRU learns when, a waiter may take it."""
    budget = connection.pool_state.budget
    if budget is not None:
        connection.last_used = time.monotonic()
        budget.idle_now()


class _View:
    """What the sync and async pool views share: the lease they follow."""

    __slots__ = ("lease",)
    lease: Lease

    def __init__(self, lease: Lease) -> None:
        object.__setattr__(self, "lease", lease)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.lease!r} of {self.lease.backend!r}>"

    def _lease(self) -> Lease:
        lease = self.lease
        if lease.retired:
            lease = lease.follow()
            object.__setattr__(self, "lease", lease)
        return lease


class TenantPool(_View):
    """A tenant's view of its backend's sync pool: the pool API, following the tenant.

    ``get_connection`` and ``release`` label the connections the router made with the
    tenant's lease; every other attribute is the shared pool's, looked up at each use
    (the backend rebuilds its pool after an eviction, and the lease may move).
    """

    __slots__ = ()

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        lease = self.lease
        if lease.retired:
            lease = self._lease()
        backend = lease.backend
        pool = backend.pool
        if pool is None:
            pool = backend.sync_pool()
        try:
            connection = pool.get_connection()
        except EndpointsDown as down:
            raise down.plan.exhausted(lease.name) from None
        # Inline (every command passes here): what Lease.checked_out does.
        connection.holder = lease
        if connection.switch is not None:
            lease.checked_out(connection)
        return connection

    def release(self, connection: Any) -> None:
        # Inline (every command passes here): what _checked_in and _idle_again do.
        connection.busy = False
        connection.holder = None
        state = connection.pool_state
        pool = state.pool()
        plan = connection.plan
        moved = plan is not None and not (
            connection.route is plan.stable and plan.recheck_at == INF  # keep(), inline
        )
        if state.retired or pool is None or (moved and not plan.keep(connection.route)):
            connection.disconnect()  # nobody routes there any more, or the plan moved on
        if pool is not None:
            pool.release(connection)
        budget = state.budget
        if budget is not None:
            connection.last_used = time.monotonic()
            budget.idle_now()

    @property
    def connection_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = self._lease().backend.sync_pool().connection_kwargs
        return kwargs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lease().backend.sync_pool(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._lease().backend.sync_pool(), name, value)


class PlainTenantPool(TenantPool):
    """A :class:`TenantPool` over a caller's own pool or connection class: it follows or
    refuses like any view, but cannot label connections it did not make."""

    __slots__ = ()

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        return self._lease().backend.sync_pool().get_connection()

    def release(self, connection: Any) -> None:
        self._lease().backend.sync_pool().release(connection)


class AsyncTenantPool(_View):
    """The ``redis.asyncio`` twin of :class:`TenantPool`, for one event loop."""

    __slots__ = ("loop",)

    def __init__(self, lease: Lease, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(lease)
        object.__setattr__(self, "loop", loop)

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        lease = self.lease
        if lease.retired:
            lease = self._lease()
        try:
            return lease.checked_out(await lease.backend.async_pool(self.loop).get_connection())
        except EndpointsDown as down:
            raise down.plan.exhausted(lease.name) from None

    async def release(self, connection: Any) -> None:
        pool, drop = _checked_in(connection)
        if drop:
            await connection.disconnect()
        if pool is not None:
            await pool.release(connection)
        _idle_again(connection)

    @property
    def connection_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = self._lease().backend.async_pool(self.loop).connection_kwargs
        return kwargs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lease().backend.async_pool(self.loop), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._lease().backend.async_pool(self.loop), name, value)


class AsyncPlainTenantPool(AsyncTenantPool):
    """The ``redis.asyncio`` twin of :class:`PlainTenantPool`."""

    __slots__ = ()

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        return await self._lease().backend.async_pool(self.loop).get_connection()

    async def release(self, connection: Any) -> None:
        await self._lease().backend.async_pool(self.loop).release(connection)
