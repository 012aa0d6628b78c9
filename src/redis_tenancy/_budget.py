"""One cap on the connections a router opens, across every pool of every tenant.

``Router(max_connections=N)`` gives all the router's managed connections (standalone
tenants, sync and async) N slots. A connection takes a slot when it opens a socket
and gives it back when it closes. When every slot is taken, the caller that needs a
new connection first closes the least recently used *idle* connection of any pool
(it sits in its pool's free list: nobody is running a command on it) with ``QUIT``, so
the server has let it go before the slot is reused, and otherwise
waits, up to ``wait_timeout``, for a slot; then it gets
:class:`ConnectionBudgetExceededError`. A command that is running is never
interrupted: a connection is closed only while its own pool's lock proves it idle.

With ``idle_timeout``, one reaper thread per router (not per tenant) closes
connections idle for longer than that; they reopen on demand. Async connections are
closed on their own event loop (``call_soon_threadsafe``), never from another thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from ._errors import ConnectionBudgetExceededError

__all__ = ["ConnectionBudget"]


class ConnectionBudget:
    """Slots for open connections, shared by every managed pool of a router.

    Args:
        limit: how many connections may be open at once.
        wait_timeout: seconds a caller waits for a slot before the typed error.
        idle_timeout: close connections idle this long (``None``: never).
    """

    def __init__(
        self,
        limit: int,
        *,
        wait_timeout: float = 5.0,
        idle_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.wait_timeout = wait_timeout
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.evicted = 0
        self.reaped = 0
        self._cond = threading.Condition(threading.Lock())
        # Connections holding a slot. Weak: a connection collected without being
        # disconnected (its pool was dropped) must not keep its slot forever.
        self._holders: weakref.WeakSet[Any] = weakref.WeakSet()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._sleepers = 0  # sync callers waiting on the condition
        self._tasks: set[asyncio.Future[bool]] = set()
        self._reaper: threading.Thread | None = None
        self._stop = threading.Event()

    def __repr__(self) -> str:
        return f"<ConnectionBudget {self.open}/{self.limit} open>"

    @property
    def open(self) -> int:
        """Connections holding a slot now."""
        return len(self._holders)

    # -- taking and giving back slots --------------------------------------------------------

    def _take(self, conn: Any) -> bool:
        # Called with the condition held.
        if len(self._holders) < self.limit:
            self._holders.add(conn)
            return True
        return False

    def release(self, conn: Any) -> None:
        """``conn`` closed its socket: its slot is free."""
        with self._cond:
            if conn not in self._holders:
                return
            self._holders.discard(conn)
            self._wake_one()

    def idle_now(self) -> None:
        """A connection went back to its pool: a waiter may now close it for a slot."""
        if self._sleepers or self._waiters:
            with self._cond:
                self._wake_one()

    def _wake_one(self) -> None:
        # Called with the condition held: one sync waiter and the longest-waiting async
        # one (waking them all would stampede).
        self._cond.notify()
        while self._waiters:
            loop, future = self._waiters.pop(0)
            if future.done() or loop.is_closed():
                continue
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                loop.call_soon_threadsafe(_wake, future)
                break

    def acquire(self, conn: Any) -> None:
        """Take a slot for ``conn`` (sync): evict an idle connection or wait for one."""
        self._start_reaper()
        deadline = None
        while True:
            with self._cond:
                if self._take(conn):
                    return
                victim = self._idlest(exclude=conn)
            if victim is not None and self._evict(victim):
                continue
            with self._cond:
                if self._take(conn):
                    return
                deadline, pause = self._pause(deadline)
                self._sleepers += 1
                try:
                    self._cond.wait(pause)
                finally:
                    self._sleepers -= 1

    async def aacquire(self, conn: Any) -> None:
        """Take a slot for ``conn`` (async): the same rules, waiting without blocking."""
        self._start_reaper()
        loop = asyncio.get_running_loop()
        deadline = None
        while True:
            with self._cond:
                if self._take(conn):
                    return
                victim = self._idlest(exclude=conn)
            if victim is not None:
                if getattr(victim, "_loop", None) is loop:
                    victim._evicting = True
                    if await _aevict(victim, self):
                        continue
                elif self._evict(victim):
                    continue
            future: asyncio.Future[None] = loop.create_future()
            with self._cond:
                if self._take(conn):
                    return
                self._waiters.append((loop, future))
            deadline, pause = self._pause(deadline)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, pause)

    def _pause(self, deadline: float | None) -> tuple[float, float]:
        """The wait's deadline and how long to sleep before looking again; raises the
        typed error once the deadline has passed. Sleeps are short (50 ms at most) so a
        missed wake-up costs little."""
        now = self.clock()
        deadline = now + self.wait_timeout if deadline is None else deadline
        if now >= deadline:
            raise self._exhausted()
        return deadline, min(deadline - now, 0.05)

    def _exhausted(self) -> ConnectionBudgetExceededError:
        return ConnectionBudgetExceededError(
            f"connection budget exhausted: all {self.limit} connections of this router are "
            f"busy and none freed up within {self.wait_timeout:g}s; raise "
            "Router(max_connections=...), lower concurrency, or shorten long commands"
        )

    # -- idle connections ------------------------------------------------------------------

    def _idlest(self, exclude: Any) -> Any:
        """The least recently used connection that sits idle in its pool (a candidate)."""
        best = None
        best_used = float("inf")
        for conn in list(self._holders):
            if conn is exclude or getattr(conn, "_evicting", False):
                continue
            if _idle(conn) and conn._last_used < best_used:
                best, best_used = conn, conn._last_used
        return best

    def _evict(self, conn: Any) -> bool:
        """Close ``conn`` if it is still idle; async ones are handed to their loop.

        Returns True if a slot was freed now.
        """
        loop = getattr(conn, "_loop", None)
        if loop is not None:
            conn._evicting = True
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_schedule_aevict, conn, self)
            return False
        pool = conn._owner()
        if pool is None:
            return False
        with pool._lock:
            if conn not in pool._available_connections or conn._sock is None:
                return False
            with contextlib.suppress(Exception):
                conn.send_command("QUIT", check_health=False)
                conn.read_response()
            conn.disconnect()
        self.evicted += 1
        return True

    def _start_reaper(self) -> None:
        if self.idle_timeout is None or self._reaper is not None:
            return
        with self._cond:
            if self._reaper is not None:
                return
            self._reaper = threading.Thread(
                target=_reap,
                args=(weakref.ref(self), self._stop),
                daemon=True,
                name="redis-tenancy-reaper",
            )
        self._reaper.start()

    def reap_once(self) -> None:
        """Close every connection idle for longer than ``idle_timeout``."""
        if self.idle_timeout is None:
            return
        cutoff = self.clock() - self.idle_timeout
        with self._cond:
            stale = [c for c in list(self._holders) if c._last_used < cutoff and _idle(c)]
        for conn in stale:
            if self._evict(conn):
                self.reaped += 1

    def close(self) -> None:
        """Stop the reaper thread (connections close with their pools)."""
        self._stop.set()


def _idle(conn: Any) -> bool:
    pool = conn._owner()
    return pool is not None and conn in pool._available_connections


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _schedule_aevict(conn: Any, budget: ConnectionBudget) -> None:
    task = asyncio.ensure_future(_aevict(conn, budget))
    budget._tasks.add(task)  # a reference until it is done (the loop keeps only a weak one)
    task.add_done_callback(budget._tasks.discard)


async def _aevict(conn: Any, budget: ConnectionBudget) -> bool:
    """Close an async connection on its own loop if its pool still holds it idle
    (counted in ``budget.evicted``)."""
    try:
        pool = conn._owner()
        if pool is None:
            return False
        async with pool._lock:
            if conn not in pool._available_connections or not conn.is_connected:
                return False
            with contextlib.suppress(Exception):
                await conn.send_command("QUIT", check_health=False)
                await conn.read_response()
            await conn.disconnect()
        budget.evicted += 1
        return True
    finally:
        conn._evicting = False


def _reap(ref: weakref.ReferenceType[ConnectionBudget], stop: threading.Event) -> None:
    while True:
        budget = ref()
        if budget is None or budget.idle_timeout is None:
            return
        interval = max(budget.idle_timeout / 4, 0.01)
        budget.reap_once()
        del budget
        if stop.wait(interval):
            return
