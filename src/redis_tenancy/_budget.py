"""One cap on the connections a router opens, across every pool of every tenant.

``Router(max_connections=N)`` gives all the router's managed connections (standalone
tenants, sync and async) N slots. A connection takes a slot when it opens a socket
and gives it back when it closes. When every slot is taken, the caller that needs a
new connection first closes the least recently used *idle* connection of any pool
(one nobody has checked out) with ``QUIT``, so the server has let it go before the slot
is reused, and otherwise waits, up to ``wait_timeout``, to be woken by the next slot or
idle connection that frees up; then it gets :class:`ConnectionBudgetExceededError`. A
command that is running is never interrupted: the connections themselves decide,
race-free, whether they are idle (:meth:`ManagedConnection.close_if_idle`).

With ``idle_timeout``, one reaper thread per router (not per tenant) closes
connections idle for longer than that; they reopen on demand. Async connections are
closed on their own event loop, never from another thread.

After ``fork()`` (multiprocessing, gunicorn ``--preload``, Celery prefork) the child
starts with an empty budget: the parent's connections are not the child's to count,
and redis-py's pools drop them in the child on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from ._errors import ConnectionBudgetExceededError
from ._loops import spawn

__all__ = ["ConnectionBudget"]

#: Every budget of this process, reset in a forked child.
_BUDGETS: weakref.WeakSet[ConnectionBudget] = weakref.WeakSet()


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
        self._start_empty()
        _BUDGETS.add(self)

    def _start_empty(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        # Connections holding a slot. Weak: a connection collected without being
        # disconnected (its pool was dropped) must not keep its slot forever.
        self._holders: weakref.WeakSet[Any] = weakref.WeakSet()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._sleepers = 0  # sync callers waiting on the condition
        #: Slots handed out since the budget was made (or since fork): one per
        #: connection the router opened under it. Compared with a server's
        #: ``total_connections_received`` it shows no connection went around the budget.
        self.granted = 0
        self._reaper: threading.Thread | None = None
        self._stop = threading.Event()

    def __repr__(self) -> str:
        return f"<ConnectionBudget {self.open}/{self.limit} open>"

    @property
    def open(self) -> int:
        """Connections holding a slot now."""
        return len(self._holders)

    @property
    def waiting(self) -> int:
        """Callers waiting for a slot now (sync and async)."""
        return self._sleepers + sum(not future.done() for _, future in list(self._waiters))

    # -- taking and giving back slots --------------------------------------------------------

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

    def _take_or_pick(self, conn: Any) -> Any:
        """Take a slot for ``conn`` (returns ``conn``), else name an idle connection to
        close for one (or ``None``). The decision both drivers share."""
        with self._cond:
            return conn if self._take(conn) else self._idlest(exclude=conn)

    def _take(self, conn: Any) -> bool:
        # Called with the condition held.
        if len(self._holders) < self.limit:
            self._holders.add(conn)
            self.granted += 1
            return True
        return False

    def acquire(self, conn: Any) -> None:
        """Take a slot for ``conn`` (sync): close an idle connection or wait for one."""
        self._start_reaper()
        deadline = self.clock() + self.wait_timeout
        while True:
            found = self._take_or_pick(conn)
            if found is conn:
                return
            if found is not None and self._close(found):
                continue
            with self._cond:
                if self._take(conn):
                    return
                self._sleepers += 1
                try:
                    woken = self._cond.wait(self._left(deadline))
                finally:
                    self._sleepers -= 1
            if not woken:  # the whole wait passed without a slot or an idle connection
                raise self._exhausted()

    async def aacquire(self, conn: Any) -> None:
        """Take a slot for ``conn`` (async): the same rules, waiting without blocking."""
        self._start_reaper()
        loop = asyncio.get_running_loop()
        deadline = self.clock() + self.wait_timeout
        while True:
            found = self._take_or_pick(conn)
            if found is conn:
                return
            if found is not None:
                if found.loop is loop:  # ours to close, right here
                    if await found.aclose_if_idle():
                        continue
                elif self._close(found):
                    continue
            future: asyncio.Future[None] = loop.create_future()
            with self._cond:
                if self._take(conn):
                    return
                self._waiters.append((loop, future))
            try:
                await asyncio.wait_for(future, self._left(deadline))
            except TimeoutError:
                raise self._exhausted() from None

    def _left(self, deadline: float) -> float:
        """Seconds left of a wait; the typed error once none are."""
        left = deadline - self.clock()
        if left <= 0:
            raise self._exhausted()
        return left

    def _exhausted(self) -> ConnectionBudgetExceededError:
        return ConnectionBudgetExceededError(
            f"connection budget exhausted: all {self.limit} connections of this router are "
            f"busy and none freed up within {self.wait_timeout:g}s; raise "
            "Router(max_connections=...), lower concurrency, or shorten long commands",
            key=("budget", id(self)),
        )

    # -- idle connections ------------------------------------------------------------------

    def _idlest(self, exclude: Any) -> Any:
        """The least recently used idle connection (a candidate to close)."""
        best = None
        best_used = float("inf")
        for conn in list(self._holders):
            if conn is exclude or conn.closing or not conn.is_idle():
                continue
            if conn.last_used < best_used:
                best, best_used = conn, conn.last_used
        return best

    def _close(self, conn: Any) -> bool:
        """Close ``conn`` if it is still idle. An async one is closed on its own loop
        (its slot frees up, and wakes a waiter, when that is done). True if a slot was
        freed now."""
        loop = conn.loop
        if loop is None:
            return bool(conn.close_if_idle())
        with contextlib.suppress(RuntimeError):  # its loop is closed: nothing to do
            loop.call_soon_threadsafe(_close_on_loop, conn)
        return False

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

    def reap_once(self) -> int:
        """Close every connection idle for longer than ``idle_timeout``; how many were
        closed now (async ones close on their loops a moment later)."""
        if self.idle_timeout is None:
            return 0
        cutoff = self.clock() - self.idle_timeout
        with self._cond:
            stale = [c for c in list(self._holders) if c.last_used < cutoff and c.is_idle()]
        return sum(self._close(conn) for conn in stale)

    def close(self) -> None:
        """Stop the reaper thread (connections close with their pools)."""
        self._stop.set()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _close_on_loop(conn: Any) -> None:
    spawn(conn.aclose_if_idle())


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


def _forget_after_fork() -> None:
    for budget in list(_BUDGETS):
        budget._start_empty()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget_after_fork)
