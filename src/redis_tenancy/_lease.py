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

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._errors import StaleClientError
from ._failover import FailoverEvent
from ._retry import EndpointsDown

if TYPE_CHECKING:
    import asyncio

    from ._backend import Backend

__all__ = ["AsyncTenantPool", "Lease", "TenantPool"]


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
        """Label a connection the pool handed out; report a switch it made meanwhile."""
        if getattr(connection, "pool_state", None) is None:
            return connection  # the caller's own connection class: nothing to label
        connection.holder = self
        switch = connection.switch
        if switch is not None:
            connection.switch = None
            connection.pool_state.report(switch, self.name)
        return connection

    def exhausted(self, down: EndpointsDown) -> Exception:
        return down.plan.exhausted(self.name)


class TenantPool:
    """A tenant's view of its backend's sync pool: the pool API, refusing once stale.

    Only ``get_connection`` and ``release`` add anything; every other attribute is the
    shared pool's, looked up at each use (the backend may rebuild its pool after an
    eviction).
    """

    __slots__ = ("lease",)

    def __init__(self, lease: Lease) -> None:
        object.__setattr__(self, "lease", lease)

    def __repr__(self) -> str:
        return f"<TenantPool {self.lease!r} of {self.lease.backend!r}>"

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        lease = self.lease
        if lease.retired:
            lease = lease.follow()
            object.__setattr__(self, "lease", lease)
        try:
            connection = lease.backend.sync_pool().get_connection()
        except EndpointsDown as down:
            raise lease.exhausted(down) from None
        return lease.checked_out(connection)

    def release(self, connection: Any) -> None:
        state = getattr(connection, "pool_state", None)
        if state is None:  # the caller's own pool and connection class
            self.lease.backend.sync_pool().release(connection)
            return
        connection.checked_in()
        pool = state.pool()
        if pool is None or state.retired:  # nobody routes to its pool any more
            connection.disconnect()
        if pool is not None:
            pool.release(connection)
        budget = self.lease.backend.budget
        if budget is not None:
            budget.idle_now()

    @property
    def connection_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = self.lease.backend.sync_pool().connection_kwargs
        return kwargs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lease.backend.sync_pool(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.lease.backend.sync_pool(), name, value)


class AsyncTenantPool:
    """The ``redis.asyncio`` twin of :class:`TenantPool`, for one event loop."""

    __slots__ = ("lease", "loop")

    def __init__(self, lease: Lease, loop: asyncio.AbstractEventLoop) -> None:
        object.__setattr__(self, "lease", lease)
        object.__setattr__(self, "loop", loop)

    def __repr__(self) -> str:
        return f"<AsyncTenantPool {self.lease!r} of {self.lease.backend!r}>"

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        lease = self.lease
        if lease.retired:
            lease = lease.follow()
            object.__setattr__(self, "lease", lease)
        try:
            connection = await lease.backend.async_pool(self.loop).get_connection()
        except EndpointsDown as down:
            raise lease.exhausted(down) from None
        return lease.checked_out(connection)

    async def release(self, connection: Any) -> None:
        state = getattr(connection, "pool_state", None)
        if state is None:
            await self.lease.backend.async_pool(self.loop).release(connection)
            return
        connection.checked_in()
        pool = state.pool()
        if pool is None or state.retired:
            await connection.disconnect()
        if pool is not None:
            await pool.release(connection)
        budget = self.lease.backend.budget
        if budget is not None:
            budget.idle_now()

    @property
    def connection_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = self.lease.backend.async_pool(self.loop).connection_kwargs
        return kwargs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lease.backend.async_pool(self.loop), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.lease.backend.async_pool(self.loop), name, value)
