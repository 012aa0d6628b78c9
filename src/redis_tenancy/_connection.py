"""The connections the router builds: they know their tenant, and follow a failover plan.

Two layers, each a mixin put in front of redis-py's own connection class (sync and
async; TLS, Sentinel and unix-socket variants alike), through the public
``connection_class`` extension point:

- **Tracked** (every connection the router builds): while a tenant's client, pipeline
  or pub/sub holds it, ``holder`` is that tenant's :class:`~redis_tenancy._lease.Lease`
  (failover events and errors name that tenant). A pub/sub connection of a tenant that
  is replaced or removed is cut at once and refuses to read or reconnect
  (:class:`StaleClientError`), so it never hears the old server again; every other
  connection finishes the command it runs, and the tenant's pool view decides what
  its next command gets (see :mod:`redis_tenancy._lease`).
- **Managed** (standalone tenants): ``connect()`` picks its endpoint from the plan of
  :mod:`redis_tenancy._failover` — the endpoint is chosen when a *connection* opens, as
  redis-py's own ``SentinelManagedConnection`` does, so commands, pipelines,
  transactions, pub/sub and Lua all follow it. A read timeout makes the connection
  verify its endpoint with a fresh connect and ``PING`` before anything is counted
  against it. Connections take a slot of the router's connection budget while their
  socket is open, and offer ``is_idle()`` / ``close_if_idle()`` so the budget can close
  idle ones without reading any pool's internals.

Every decision (where to aim, whether an error counts, what a success changes, who is
told) lives in I/O-free code shared by the sync and async drivers; the drivers only do
the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any

import redis.asyncio.connection as aconnection
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.backoff
import redis.connection as connection
import redis.retry
import redis.sentinel
from redis.exceptions import AuthenticationError, ConnectionError, ResponseError, TimeoutError
from redis.utils import SENTINEL

from ._budget import ConnectionBudget
from ._errors import EndpointsDown
from ._failover import INF, EndpointPlan, FailoverEvent, Route, Switch
from ._handshake import head_only, tail, trusted
from ._loops import spawn

if TYPE_CHECKING:
    from ._lease import Lease

__all__ = [
    "AsyncManagedConnection",
    "AsyncManagedSSLConnection",
    "EndpointsDown",
    "ManagedConnection",
    "ManagedSSLConnection",
    "PoolState",
    "tracked_class",
]


def _nothing() -> None:
    return None


class PoolState:
    """What the connections of one shared pool have in common (no I/O here).

    Attributes:
        pool: weak reference to the pool (released connections go back there).
        retired: the pool's clients are gone: its connections close when released
            and never reconnect.
        touched: set on every checkout; the live-client clock reads and clears it.
        announce: tells the router about a tenant's failover event.
    """

    __slots__ = ("__weakref__", "announce", "budget", "members", "pool", "retired", "touched")

    def __init__(
        self,
        announce: Callable[[FailoverEvent], None] | None = None,
        budget: ConnectionBudget | None = None,
    ) -> None:
        self.pool: Callable[[], Any] = _nothing
        self.retired = False
        self.touched = False
        self.announce = announce
        #: The router's connection budget, told when a connection comes back idle.
        self.budget = budget
        #: Every connection the pool made (for statistics: open and idle sockets).
        self.members: weakref.WeakSet[Any] = weakref.WeakSet()

    def counts(self) -> tuple[int, int]:
        """``(open, idle)`` sockets of this pool's connections."""
        opened = idle = 0
        for member in list(self.members):
            if member.is_connected:
                opened += 1
                idle += not member.busy
        return opened, idle

    def attach(self, pool: Any) -> None:
        self.pool = weakref.ref(pool)

    def report(self, switch: Switch, tenant: str) -> None:
        if self.announce is not None:
            self.announce(switch.seen_by(tenant))


class _Tracked:
    """Knows the tenant that holds it; refuses to serve a retired tenant or pool."""

    holder: Lease | None
    #: The failover plan of a managed connection (the pool views read it on release).
    plan: EndpointPlan | None = None
    route: Route | None = None

    def __init__(self, *, pool_state: PoolState, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # redis-py's connection (this class is mixed in first)
        self.pool_state = pool_state
        pool_state.members.add(self)
        self.busy = False  # checked out by a caller
        self.holder = None
        #: The lease of the pub/sub object subscribed on this connection, if any.
        self.watcher: Lease | None = None
        #: A switch seen while no tenant held the connection (inside the pool's
        #: ``get_connection``); the tenant's pool view reports it as the tenant's event.
        self.switch: Switch | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # async: the socket's loop

    def register_connect_callback(self, callback: Any) -> None:
        # redis-py's PubSub registers itself on the connection it holds: that is how a
        # tenant's subscribers are found and cut when the tenant is replaced.
        super().register_connect_callback(callback)  # type: ignore[misc]
        holder = self.holder
        if holder is not None:
            self.watcher = holder
            holder.watch(self)

    def deregister_connect_callback(self, callback: Any) -> None:
        super().deregister_connect_callback(callback)  # type: ignore[misc]
        watcher, self.watcher = self.watcher, None
        if watcher is not None:
            watcher.unwatch(self)

    def refuse_if_cut(self) -> None:
        """A retired tenant's subscriber reads nothing more, not even what is buffered."""
        watcher = self.watcher
        if watcher is not None and watcher.retired:
            raise watcher.stale()

    def report(self, switch: Switch | None) -> None:
        """Tell the router about a switch, as the holding tenant's event (or keep it for
        the pool view to report once it knows the tenant)."""
        if switch is None:
            return
        holder = self.holder
        if holder is None:
            self.switch = switch
        else:
            self.pool_state.report(switch, holder.name)

    def cut(self) -> None:
        """Close a retired tenant's subscriber from any thread, so it receives nothing more.

        Sync: ``disconnect()`` shuts the socket down, which wakes a reader blocked on it
        in another thread; its reconnect then raises :class:`StaleClientError`. Async:
        the disconnect runs on the connection's own loop.
        """
        loop = self.loop
        if loop is None:
            with contextlib.suppress(Exception):
                self.disconnect()  # type: ignore[attr-defined]
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to cut
            loop.call_soon_threadsafe(_start_disconnect, self)


def _start_disconnect(conn: Any) -> None:
    spawn(conn.disconnect())


class _TrackedSync(_Tracked):
    def connect(self) -> None:
        self.busy = True
        self.pool_state.touched = True
        if not self.is_connected:  # type: ignore[attr-defined]
            self.refuse_if_cut()
        super().connect()  # type: ignore[misc]

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        self.refuse_if_cut()
        return super().read_response(*args, **kwargs)  # type: ignore[misc]


class _TrackedAsync(_Tracked):
    async def connect(self) -> None:
        self.busy = True
        self.pool_state.touched = True
        if not self.is_connected:  # type: ignore[attr-defined]
            self.refuse_if_cut()
            self.loop = asyncio.get_running_loop()
        await super().connect()  # type: ignore[misc]

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        self.refuse_if_cut()
        return await super().read_response(*args, **kwargs)  # type: ignore[misc]


class TrackedSentinelConnection(_TrackedSync, redis.sentinel.SentinelManagedConnection):
    """redis-py's Sentinel connection, tracked."""


class TrackedUnixConnection(_TrackedSync, connection.UnixDomainSocketConnection):
    """A unix-socket connection, tracked."""


class AsyncTrackedSentinelConnection(
    _TrackedAsync, redis.asyncio.sentinel.SentinelManagedConnection
):
    """The async twin of :class:`TrackedSentinelConnection`."""


class AsyncTrackedUnixConnection(_TrackedAsync, aconnection.UnixDomainSocketConnection):
    """The async twin of :class:`TrackedUnixConnection`."""


# -- managed (standalone) connections: the shared decisions ---------------------------------

_HOME = ("host", "port", "db", "username", "password")
#: Keywords of ours, or bound to the pool, that a throwaway probe connection must not get.
_NOT_FOR_PROBES = ("plan", "pool_state", "budget", "retry")


def aim(home: Mapping[str, Any], route: Route) -> dict[str, Any]:
    """Where a connection for ``route`` goes: its endpoint's host, port, db and
    credentials, each one the endpoint leaves unset taken from the primary (``home``)."""
    endpoint = route.target
    where = dict(home)
    if endpoint is None:
        return where
    where["host"] = getattr(endpoint, "host", where["host"])
    where["port"] = getattr(endpoint, "port", where["port"])
    db = getattr(endpoint, "db", None)
    if db is not None:
        where["db"] = db
    if getattr(endpoint, "password", None) is not None:
        where["username"] = getattr(endpoint, "username", None)
        where["password"] = getattr(endpoint, "password", None)
    return where


def counts_against(error: BaseException) -> bool:
    """Does a failed connect count against its endpoint? Refused and timed-out connects
    (and TLS failures, which redis-py reports as ConnectionError) do; wrong credentials
    are a settings problem, and anything else (cancellation, a bug) is not the
    endpoint's fault either."""
    return isinstance(error, ConnectionError | TimeoutError) and not isinstance(
        error, AuthenticationError
    )


def read_timed_out(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
    """Was a read timeout the connection's own ``socket_timeout``? An explicit per-read
    timeout (pub/sub ``get_message(timeout=...)``) is the caller's choice instead."""
    if len(args) > 1:
        return False
    explicit = kwargs.get("timeout")
    return explicit is None or explicit is SENTINEL


Outcome = tuple[Any, BaseException | None]
"""What a driver sends back for a step: the I/O's value, or the exception it raised."""

Step = tuple[str, Any]
"""An I/O step a procedure asks for: the name of the driver's method, and its argument."""

Procedure = Generator[Step, Outcome, Any]
"""Decisions written once, as a generator of the I/O steps they need (see _Managed)."""


def advance(steps: Procedure, outcome: Outcome | None) -> Step | None:
    """The next step of a procedure (``None`` once it is done); ``outcome`` is that of
    the previous step, ``None`` to start."""
    try:
        return steps.send(outcome)  # type: ignore[arg-type]
    except StopIteration:
        return None


class _Managed(_Tracked):
    """What the sync and async managed connections share: every decision.

    ``connect_steps``, ``verify_steps`` and ``tail_steps`` are written once, as
    generators of the I/O steps they need; :class:`ManagedConnection` and
    :class:`AsyncManagedConnection` each run them with a three-line driver and a method
    per step that does only that step's I/O.
    """

    plan: EndpointPlan
    route: Route | None
    probe_class: type
    probe_retry_class: type

    def __init__(
        self, *, plan: EndpointPlan, budget: ConnectionBudget | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        conn: Any = self
        self.plan = plan
        self.route = None
        self.budget = budget
        self.slot = False  # holds one of the budget's slots
        self.closing = False  # the budget is closing it (idle)
        self.last_used = 0.0  # monotonic time of the last checkin (the budget's LRU)
        self.connecting = False
        self._closing_lock = threading.Lock()
        self.home = {name: getattr(conn, name) for name in _HOME}
        self.probe_kwargs = {
            k: v
            for k, v in kwargs.items()
            if k not in _NOT_FOR_PROBES and not k.startswith(("maint_notifications", "oss_"))
        }

    # -- checkout and checkin --------------------------------------------------------------

    def is_idle(self) -> bool:
        """Open and not checked out: the budget may close it."""
        return not self.busy and bool(self.is_connected)  # type: ignore[attr-defined]

    # -- the procedures ------------------------------------------------------------------------

    def connect_steps(self, check_health: bool) -> Procedure:
        """Open a socket wherever the plan says: each endpoint in turn, judged as it goes.

        A refused connect counts against its endpoint and the next one is tried; so does
        a timed-out one, unless no other endpoint could take over (then the caller gets
        the timeout, as a plain client would, and the endpoint stays usable for
        everyone else). Anything else propagates (a claimed probe is released). With no
        endpoint left: :class:`NoHealthyEndpointError` naming the tenant holding the
        connection (or, inside the pool's ``get_connection``, the internal
        :class:`EndpointsDown` its pool view turns into that error). Either is a
        ``ConnectionError``: the connection's ``Retry`` decides, as for a plain client,
        whether to try again.
        """
        self.refuse_if_cut()
        self.route = None  # not counted against any endpoint until connected
        self.connecting = True
        try:
            for route, probe in self.plan.attempts():
                self.aim_at(route)
                error = None
                if self.budget is not None and not self.slot:
                    _, error = yield "take_slot", None  # may wait; or the budget's error
                    self.slot = error is None
                since = route.failed_total  # a failure reported meanwhile outranks us
                if error is None:
                    _, error = yield "open", (probe, check_health)
                if error is not None:
                    yield "drop", None
                    if counts_against(error):
                        definite = not isinstance(error, TimeoutError)
                        if self.plan.failed(route, error, definite=definite):
                            continue  # the next endpoint may take it
                        raise error  # a timeout with nowhere else to go: as for a plain client
                    if probe:
                        self.plan.abandon(route)
                    raise error
                self.route = route
                switch = self.plan.succeeded(route, since)
                self.report(switch)
                if switch is not None:  # idle connections to the endpoint we left
                    yield "close_idle", None
                return
            raise self.exhausted()
        finally:
            self.connecting = False

    def verify_steps(self, route: Route) -> Procedure:
        """After a read timeout: check ``route`` with a fresh connect and PING."""
        probe = self.probe_class(**self.probe_settings(route))
        probe.retry = self.probe_retry_class(redis.backoff.NoBackoff(), 0)
        _, error = yield "probe_open", probe
        if error is None:
            _, error = yield "probe_ping", probe
        yield "probe_close", probe
        if error is not None and not counts_against(error):
            self.plan.verified(route, None)  # not the endpoint's fault
            raise error
        self.plan.verified(route, error, definite=not isinstance(error, TimeoutError))

    def tail_steps(self, check_health: bool) -> Procedure:
        """The handshake after AUTH/HELLO, in one write, each reply judged as redis-py
        would (see _handshake)."""
        conn: Any = self
        steps = tail(conn)
        if not steps:
            return
        packed = conn.pack_commands([command for command, _ in steps])
        _, error = yield "send_tail", (packed, check_health)
        if error is not None:
            raise error
        for _, judge in steps:
            reply, error = yield "read_tail", None
            if error is not None and not isinstance(error, ResponseError):
                raise error
            judge(reply if error is None else error)

    # -- what the procedures decide ---------------------------------------------------------------

    def aim_at(self, route: Route) -> None:
        conn: Any = self
        for name, value in aim(self.home, route).items():
            setattr(conn, name, value)

    def exhausted(self) -> EndpointsDown | Exception:
        """What to raise when no endpoint took the connection."""
        self.route = None
        holder = self.holder
        if holder is None:
            return EndpointsDown(self.plan)
        return self.plan.exhausted(holder.name)

    def probe_settings(self, route: Route) -> dict[str, Any]:
        """Keywords of a throwaway connection that checks ``route`` after a read timeout:
        the same endpoint and options, the connect timeout for every wait, no retries."""
        settings = {**self.probe_kwargs, **aim(self.home, route)}
        timeout = settings.get("socket_connect_timeout") or settings.get("socket_timeout")
        settings["socket_timeout"] = timeout
        return settings

    def suspects(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Route | None:
        """A read timed out: the route to check, if this caller is the one to check it."""
        route = self.route
        if route is not None and read_timed_out(args, kwargs) and self.plan.suspect(route):
            return route
        return None

    def home_pool(self) -> Any:
        return self.pool_state.pool()


def _capture(do: Callable[[Any], Any], arg: Any) -> Outcome:
    try:
        return do(arg), None
    except BaseException as exc:  # the procedure decides what to do with it
        return None, exc


async def _acapture(do: Callable[[Any], Any], arg: Any) -> Outcome:
    try:
        return await do(arg), None
    except BaseException as exc:
        return None, exc


class ManagedConnection(_Managed, connection.Connection):
    """A ``redis.Connection`` that connects wherever its plan says (sync driver)."""

    probe_class: type = connection.Connection
    probe_retry_class: type = redis.retry.Retry

    def run(self, steps: Procedure) -> None:
        """Drive a procedure of :class:`_Managed`: do each step's I/O, send the outcome."""
        outcome = None
        while (step := advance(steps, outcome)) is not None:
            outcome = _capture(getattr(self, step[0]), step[1])

    def connect(self) -> None:
        # Every checkout passes here: the live-client clock's use bit, and whether the
        # open socket may be used as it is (the plan may have moved on: failback).
        self.busy = True
        self.pool_state.touched = True
        if self.closing:  # the budget is closing it this very moment: wait, then reopen
            with self._closing_lock:
                pass
        if self.is_connected:
            plan, route = self.plan, self.route
            if (route is plan.stable and plan.recheck_at == INF) or self.connecting:
                return  # healthy: keep()'s answer without the call
            if plan.keep(route):
                return
            self.disconnect()
        # redis-py's own connect: its Retry around connect_check_health, exactly as a
        # plain client retries a refused or timed-out connect.
        super().connect()  # type: ignore[no-untyped-call]

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        # redis-py reconnects through here (send_packed_command), not only connect().
        if not self.is_connected:
            self.run(self.connect_steps(check_health))

    def on_connect_check_health(self, check_health: bool = True) -> None:
        with head_only(self) if trusted() else contextlib.nullcontext():
            super().on_connect_check_health(check_health)
        if trusted():
            self.run(self.tail_steps(check_health))

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        if self.watcher is not None:
            self.refuse_if_cut()
        try:
            return super().read_response(*args, **kwargs)
        except TimeoutError:
            route = self.suspects(args, kwargs)
            if route is not None:
                self.run(self.verify_steps(route))
            raise

    def disconnect(self, *args: Any, **kwargs: Any) -> None:
        super().disconnect(*args, **kwargs)  # type: ignore[no-untyped-call]
        if self.slot:
            self.slot = False
            self.budget.release(self)  # type: ignore[union-attr]

    # -- one method per step: the I/O and nothing else -------------------------------------------

    def take_slot(self, _: Any) -> None:
        self.budget.acquire(self)  # type: ignore[union-attr]

    def open(self, arg: tuple[bool, bool]) -> None:
        probe, check_health = arg
        super().connect_check_health(check_health, retry_socket_connect=False)
        if probe:
            self.send_command("PING", check_health=False)  # type: ignore[no-untyped-call]
            connection.Connection.read_response(self)

    def drop(self, _: Any) -> None:
        self.disconnect()

    def close_idle(self, _: Any) -> None:
        pool = self.home_pool()
        if pool is not None:
            pool.disconnect(inuse_connections=False)

    def send_tail(self, arg: tuple[Any, bool]) -> None:
        self.send_packed_command(arg[0], check_health=arg[1])  # type: ignore[no-untyped-call]

    def read_tail(self, _: Any) -> Any:
        return connection.Connection.read_response(self)

    def probe_open(self, probe: Any) -> None:
        probe.connect()

    def probe_ping(self, probe: Any) -> None:
        probe.send_command("PING", check_health=False)
        probe.read_response()

    def probe_close(self, probe: Any) -> None:
        probe.disconnect()

    def close_if_idle(self) -> bool:
        """Close the socket if nobody has the connection checked out (from any thread).

        The checkout side sets ``busy`` before it reads ``closing``; this side sets
        ``closing`` before it reads ``busy``: one of them always sees the other, so a
        socket is never closed under a running command.
        """
        with self._closing_lock:
            self.closing = True
            try:
                if self.busy or not self.is_connected:
                    return False
                with contextlib.suppress(Exception):  # polite: the server frees it first
                    self.send_command("QUIT", check_health=False)  # type: ignore[no-untyped-call]
                    connection.Connection.read_response(self)
                self.disconnect()
                return True
            finally:
                self.closing = False


class ManagedSSLConnection(ManagedConnection, connection.SSLConnection):
    """TLS variant of :class:`ManagedConnection`."""

    probe_class = connection.SSLConnection


class AsyncManagedConnection(_Managed, aconnection.Connection):
    """The ``redis.asyncio`` twin of :class:`ManagedConnection` (async driver)."""

    probe_class: type = aconnection.Connection
    probe_retry_class: type = redis.asyncio.retry.Retry
    _closed: asyncio.Event | None = None

    async def run(self, steps: Procedure) -> None:
        """Drive a procedure of :class:`_Managed`, awaiting each step's I/O."""
        outcome = None
        while (step := advance(steps, outcome)) is not None:
            outcome = await _acapture(getattr(self, step[0]), step[1])

    async def connect(self) -> None:
        self.busy = True
        self.pool_state.touched = True
        if self.closing and self._closed is not None:
            await self._closed.wait()
        if self.is_connected:
            plan, route = self.plan, self.route
            if (route is plan.stable and plan.recheck_at == INF) or self.connecting:
                return
            if plan.keep(route):
                return
            await self.disconnect()
        await super().connect()  # type: ignore[no-untyped-call]

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if not self.is_connected:
            await self.run(self.connect_steps(check_health))

    async def on_connect_check_health(self, check_health: bool = True) -> None:
        with head_only(self) if trusted() else contextlib.nullcontext():
            await super().on_connect_check_health(check_health)
        if trusted():
            await self.run(self.tail_steps(check_health))

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        if self.watcher is not None:
            self.refuse_if_cut()
        try:
            return await super().read_response(*args, **kwargs)
        except TimeoutError:
            route = self.suspects(args, kwargs)
            if route is not None:
                await self.run(self.verify_steps(route))
            raise

    async def disconnect(self, *args: Any, **kwargs: Any) -> None:
        try:
            await super().disconnect(*args, **kwargs)
        finally:
            if self.slot:
                self.slot = False
                self.budget.release(self)  # type: ignore[union-attr]

    # -- one method per step: the I/O and nothing else -------------------------------------------

    async def take_slot(self, _: Any) -> None:
        await self.budget.aacquire(self)  # type: ignore[union-attr]

    async def open(self, arg: tuple[bool, bool]) -> None:
        probe, check_health = arg
        self.loop = asyncio.get_running_loop()
        await super().connect_check_health(check_health, retry_socket_connect=False)
        if probe:
            await self.send_command("PING", check_health=False)
            await aconnection.Connection.read_response(self)

    async def drop(self, _: Any) -> None:
        await self.disconnect()

    async def close_idle(self, _: Any) -> None:
        pool = self.home_pool()
        if pool is not None:
            await pool.disconnect(inuse_connections=False)

    async def send_tail(self, arg: tuple[Any, bool]) -> None:
        await self.send_packed_command(arg[0], check_health=arg[1])

    async def read_tail(self, _: Any) -> Any:
        return await aconnection.Connection.read_response(self)

    async def probe_open(self, probe: Any) -> None:
        await probe.connect()

    async def probe_ping(self, probe: Any) -> None:
        await probe.send_command("PING", check_health=False)
        await probe.read_response()

    async def probe_close(self, probe: Any) -> None:
        await probe.disconnect()

    async def aclose_if_idle(self) -> bool:
        """Close the socket if nobody has it checked out (on its own loop only)."""
        if self.busy or self.closing or not self.is_connected:
            return False
        self.closing = True
        self._closed = asyncio.Event()
        try:
            with contextlib.suppress(Exception):
                await self.send_command("QUIT", check_health=False)
                await aconnection.Connection.read_response(self)
            await self.disconnect()
            return True
        finally:
            self.closing = False
            self._closed.set()


class AsyncManagedSSLConnection(AsyncManagedConnection, aconnection.SSLConnection):
    """TLS variant of :class:`AsyncManagedConnection`."""

    probe_class = aconnection.SSLConnection


_TRACKED: dict[type, type] = {
    connection.Connection: ManagedConnection,
    connection.SSLConnection: ManagedSSLConnection,
    connection.UnixDomainSocketConnection: TrackedUnixConnection,
    redis.sentinel.SentinelManagedConnection: TrackedSentinelConnection,
    aconnection.Connection: AsyncManagedConnection,
    aconnection.SSLConnection: AsyncManagedSSLConnection,
    aconnection.UnixDomainSocketConnection: AsyncTrackedUnixConnection,
    redis.asyncio.sentinel.SentinelManagedConnection: AsyncTrackedSentinelConnection,
}


def tracked_class(connection_class: type) -> type | None:
    """The router's class for redis-py's ``connection_class``, or ``None`` (a caller's
    own connection class is used exactly as given)."""
    return _TRACKED.get(connection_class)
