"""Connections that choose their endpoint from a tenant's failover plan when they connect.

This is redis-py's own pattern for Sentinel (``SentinelManagedConnection`` re-resolves
the master's address on every reconnect): because the endpoint is picked when a
*connection* opens, plain commands, pipelines, transactions, pub/sub (which
re-subscribes on reconnect) and Lua all follow the same plan, and redis-py's pools,
retries and parsers are used unchanged.

What the managed connections add, sync and async alike (the decisions all live in
:class:`~redis_tenancy._failover.EndpointPlan`; only the I/O differs here):

- ``connect()`` walks the plan: endpoints in priority order, skipping open circuits;
  a refused or timed-out connect opens that endpoint's circuit and the next one is
  tried in the same call. When none is left: :class:`NoHealthyEndpointError`.
- a pooled connection is reused only while :meth:`EndpointPlan.keep` says so; else it
  is dropped when taken or released and reconnects by the plan (failback, or moving
  off an endpoint whose circuit opened). The connection that makes a switch also
  closes its pool's idle connections, so nothing lingers on the endpoint left behind.
- a read timeout counts as a failure of the endpoint (a paused server accepts TCP
  connections but never answers); other errors after a command was sent do not:
  redis-py's retry reconnects, and that connect is what judges the endpoint.
- the connection's ``Retry`` never retries :class:`NoHealthyEndpointError`, so a
  tenant whose endpoints are all down fails at once instead of sleeping through ten
  backoffs.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from typing import Any

import redis.asyncio.connection as aconnection
import redis.asyncio.retry
import redis.connection as connection
import redis.retry
from redis.exceptions import AuthenticationError, ConnectionError, ResponseError, TimeoutError

from ._budget import ConnectionBudget
from ._errors import NoHealthyEndpointError
from ._failover import EndpointPlan, Route
from ._handshake import head_only, tail

__all__ = ["AsyncManagedConnection", "ManagedConnection", "managed_class"]


def _retryable(error: Exception) -> bool:
    return not isinstance(error, NoHealthyEndpointError)


class _PlanRetry:
    """Put in front of a connection's ``Retry`` class: never retry "every endpoint is down".

    It narrows ``is_retryable`` and hands over to the class it is mixed into, so a
    user's own ``Retry`` subclass keeps whatever else it does.
    """

    __slots__ = ()

    def call_with_retry(
        self, do: Any, fail: Any, is_retryable: Any = None, with_failure_count: bool = False
    ) -> Any:
        check = _retryable if is_retryable is None else _both(is_retryable)
        return super().call_with_retry(do, fail, check, with_failure_count)  # type: ignore[misc]


class _AsyncPlanRetry:
    """The async twin of :class:`_PlanRetry`."""

    __slots__ = ()

    async def call_with_retry(
        self, do: Any, fail: Any, is_retryable: Any = None, with_failure_count: bool = False
    ) -> Any:
        check = _retryable if is_retryable is None else _both(is_retryable)
        return await super().call_with_retry(do, fail, check, with_failure_count)  # type: ignore[misc]


def _both(is_retryable: Any) -> Any:
    return lambda error: _retryable(error) and is_retryable(error)


_PLAN_RETRY_CLASSES: dict[type, type] = {}


def _wrap_retry(retry: Any) -> Any:
    """A copy of ``retry`` whose class is ``retry``'s with :class:`_PlanRetry` in front.

    redis-py's own ``Retry`` and any subclass of it are wrapped (sync or async); other
    objects are returned as they are.
    """
    if isinstance(retry, redis.asyncio.retry.Retry):
        mixin: type = _AsyncPlanRetry
    elif isinstance(retry, redis.retry.Retry):
        mixin = _PlanRetry
    else:
        return retry
    cls = type(retry)
    if issubclass(cls, mixin):
        return retry
    planned = _PLAN_RETRY_CLASSES.get(cls)
    if planned is None:
        name = f"Plan{cls.__name__}"
        namespace = {"__module__": __name__, "__qualname__": name}
        planned = _PLAN_RETRY_CLASSES[cls] = type(name, (mixin, cls), namespace)
    wrapped: Any = object.__new__(planned)  # a copy: the pool's other connections share ``retry``
    wrapped.__dict__.update(vars(retry))
    return wrapped


def _nobody() -> None:
    return None


def _judge(plan: EndpointPlan, route: Route, error: BaseException) -> bool:
    """Report a failed connect to ``plan``; True if the next endpoint should be tried.

    Refused or timed-out connects count against the endpoint. Wrong credentials are a
    settings problem, not ill health, and anything else (cancellation, a bug) is not
    the endpoint's fault either: those release a claimed probe and propagate.
    """
    if isinstance(error, ConnectionError | TimeoutError) and not isinstance(
        error, AuthenticationError
    ):
        plan.failed(route, error)
        return True
    plan.abandon(route)
    return False


class _FollowsPlan:
    """What the sync and async managed connections share besides their I/O."""

    plan: EndpointPlan
    route: Route | None
    _should_reconnect: bool

    def __init__(
        self,
        *,
        plan: EndpointPlan,
        owner: Callable[[], Any] = _nobody,
        budget: ConnectionBudget | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # redis-py's Connection (this class is mixed in first)
        conn: Any = self
        self.plan = plan
        self.route = None
        self._owner = owner
        self.budget = budget
        self._slot = False  # holds one of the budget's slots
        self._last_used = 0.0  # monotonic time of the last checkout (budget's LRU)
        self._loop: Any = None  # async: the loop the socket belongs to
        conn.retry = _wrap_retry(conn.retry)
        conn._home = (conn.host, conn.port, conn.db, conn.username, conn.password)

    def should_reconnect(self) -> bool:
        # ``route`` is None while connecting: pub/sub re-subscribes from inside connect.
        route = self.route
        return self._should_reconnect or (route is not None and not self.plan.keep(route))

    def _checkout(self) -> None:
        # Every command's checkout passes here: the plan's use bit, the budget's LRU.
        self.plan.touched = True
        if self.budget is not None:
            self._last_used = time.monotonic()

    def _slot_back(self) -> None:
        if self._slot:
            self._slot = False
            self.budget.release(self)  # type: ignore[union-attr]

    def _count_timeout(self, error: TimeoutError, args: Any, kwargs: dict[str, Any]) -> None:
        # An explicit per-read timeout is the caller's choice, not a sick server.
        explicit = len(args) > 1 or kwargs.get("timeout") is not None
        if not explicit and self.route is not None:
            self.plan.failed(self.route, error)


def _aim(conn: Any, route: Route) -> None:
    """Point ``conn`` at ``route``'s endpoint; unset parts keep the primary's values."""
    endpoint = route.target
    host, port, db, username, password = conn._home
    conn.host = getattr(endpoint, "host", host)
    conn.port = getattr(endpoint, "port", port)
    given_db = getattr(endpoint, "db", None)
    conn.db = db if given_db is None else given_db
    if getattr(endpoint, "password", None) is not None:
        conn.username = endpoint.username  # type: ignore[attr-defined]
        conn.password = endpoint.password  # type: ignore[attr-defined]
    else:
        conn.username, conn.password = username, password


class ManagedConnection(_FollowsPlan, connection.Connection):
    """A ``redis.Connection`` that connects wherever its tenant's plan says."""

    def connect(self) -> None:
        self._checkout()
        if self._sock is not None:
            if self.plan.keep(self.route):
                return
            self.disconnect()
        self.connect_check_health()

    def disconnect(self, *args: Any, **kwargs: Any) -> None:
        super().disconnect(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._slot_back()

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        # redis-py reconnects through here (send_packed_command), not only connect().
        if self._sock is not None:
            return
        plan = self.plan
        self.route = None  # not counted against any endpoint until connected
        for route, probe in plan.attempts():
            _aim(self, route)
            if self.budget is not None and not self._slot:
                self.budget.acquire(self)  # may wait; raises ConnectionBudgetExceededError
                self._slot = True
            since = route.failed_total  # a failure reported while we connect outranks us
            try:
                super().connect_check_health(check_health, retry_socket_connect=False)
                if probe:
                    self.send_command("PING", check_health=False)  # type: ignore[no-untyped-call]
                    connection.Connection.read_response(self)
            except BaseException as exc:
                self.disconnect()
                if _judge(plan, route, exc):
                    continue
                raise
            self.route = route
            if plan.succeeded(route, since) is not None:
                pool = self._owner()
                if pool is not None:  # idle connections to the endpoint we left
                    pool.disconnect(inuse_connections=False)
            return
        self.route = None
        raise plan.exhausted()

    def on_connect_check_health(self, check_health: bool = True) -> None:
        # One write for everything after AUTH/HELLO: see _handshake for why.
        conn: Any = self
        with head_only(conn):
            super().on_connect_check_health(check_health)
        steps = tail(conn)
        if steps:
            packed = conn.pack_commands([command for command, _ in steps])
            conn.send_packed_command(packed, check_health=check_health)
            for _, judge in steps:
                try:
                    reply = conn.read_response()
                except ResponseError as exc:
                    reply = exc
                judge(reply)

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except TimeoutError as exc:
            self._count_timeout(exc, args, kwargs)
            raise


class ManagedSSLConnection(ManagedConnection, connection.SSLConnection):
    """TLS variant of :class:`ManagedConnection`."""


class AsyncManagedConnection(_FollowsPlan, aconnection.Connection):
    """The ``redis.asyncio`` twin of :class:`ManagedConnection`."""

    async def connect(self) -> None:
        self._checkout()
        if self.is_connected:
            if self.plan.keep(self.route):
                return
            await self.disconnect()
        await self.connect_check_health()

    async def disconnect(self, *args: Any, **kwargs: Any) -> None:
        try:
            await super().disconnect(*args, **kwargs)
        finally:
            self._slot_back()

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if self.is_connected:
            return
        plan = self.plan
        self.route = None
        for route, probe in plan.attempts():
            _aim(self, route)
            if self.budget is not None and not self._slot:
                await self.budget.aacquire(self)
                self._slot = True
                self._loop = asyncio.get_running_loop()
            since = route.failed_total
            try:
                await super().connect_check_health(check_health, retry_socket_connect=False)
                if probe:
                    await self.send_command("PING", check_health=False)
                    await aconnection.Connection.read_response(self)
            except BaseException as exc:
                await self.disconnect()
                if _judge(plan, route, exc):
                    continue
                raise
            self.route = route
            if plan.succeeded(route, since) is not None:
                pool = self._owner()
                if pool is not None:  # idle connections to the endpoint we left
                    await pool.disconnect(inuse_connections=False)
            return
        self.route = None
        raise plan.exhausted()

    async def on_connect_check_health(self, check_health: bool = True) -> None:
        conn: Any = self
        with head_only(conn):
            await super().on_connect_check_health(check_health)
        steps = tail(conn)
        if steps:
            packed = conn.pack_commands([command for command, _ in steps])
            await conn.send_packed_command(packed, check_health=check_health)
            for _, judge in steps:
                try:
                    reply = await conn.read_response()
                except ResponseError as exc:
                    reply = exc
                judge(reply)

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except TimeoutError as exc:
            self._count_timeout(exc, args, kwargs)
            raise


class AsyncManagedSSLConnection(AsyncManagedConnection, aconnection.SSLConnection):
    """TLS variant of :class:`AsyncManagedConnection`."""


_MANAGED: dict[type, type] = {
    connection.Connection: ManagedConnection,
    connection.SSLConnection: ManagedSSLConnection,
    aconnection.Connection: AsyncManagedConnection,
    aconnection.SSLConnection: AsyncManagedSSLConnection,
}


def managed_class(connection_class: type) -> type | None:
    """The managed twin of redis-py's ``connection_class``, or ``None`` if it has none.

    Unix sockets and user-supplied connection classes have no twin: such tenants
    connect exactly as configured, without failover.
    """
    return _MANAGED.get(connection_class)


def manage_pool(pool: Any, plan: EndpointPlan, budget: ConnectionBudget | None = None) -> bool:
    """Make ``pool`` (sync or async, not yet used) open managed connections.

    Returns False (pool unchanged) if its connection class has no managed twin.
    """
    managed = managed_class(pool.connection_class)
    if managed is None:
        return False
    pool.connection_class = managed
    pool.connection_kwargs["plan"] = plan
    pool.connection_kwargs["owner"] = weakref.ref(pool)
    if budget is not None:
        pool.connection_kwargs["budget"] = budget
        pool.__class__ = _BUDGET_POOLS[type(pool)]
    return True


class _BudgetPool(connection.ConnectionPool):
    """Tells the budget when a connection goes back to the pool (a waiter may take it)."""

    def release(self, connection: Any) -> None:
        super().release(connection)
        self.connection_kwargs["budget"].idle_now()


class _AsyncBudgetPool(aconnection.ConnectionPool):
    """The async twin of :class:`_BudgetPool`."""

    async def release(self, connection: Any) -> None:
        await super().release(connection)
        self.connection_kwargs["budget"].idle_now()


_BUDGET_POOLS: dict[type, type] = {
    connection.ConnectionPool: _BudgetPool,
    aconnection.ConnectionPool: _AsyncBudgetPool,
}
