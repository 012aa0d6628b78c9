"""Values kept per asyncio event loop, and let go of when the loop shuts down.

An async client belongs to the loop it was made on, so the router keeps its async
objects per loop. Nothing may outlive its loop: the first value stored for a loop
registers an async generator with that loop, which the loop finalises in
``shutdown_asyncgens()`` (what ``asyncio.run`` and ``asyncio.Runner`` call) while it
can still await, and the finaliser forgets the value (closing what it holds first, if
asked to). Loops closed without ``shutdown_asyncgens()`` (a bare ``loop.close()``) are
found and forgotten the next time a value is added. This is the only place that knows
about loop lifetimes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import Any, Generic, TypeVar

__all__ = ["LoopMap", "on_loop", "running_loop", "spawn"]

V = TypeVar("V")


class LoopMap(Generic[V]):
    """A dict from event loop to value that empties itself as loops shut down.

    Args:
        close: awaited with a value when its loop shuts down (optional).
        lock: the owner's lock, taken by the shutdown finaliser; callers of the other
            methods hold it already.
    """

    def __init__(
        self,
        lock: threading.Lock | threading.RLock,
        close: Callable[[V], Awaitable[None]] | None = None,
    ) -> None:
        self._values: dict[asyncio.AbstractEventLoop, V] = {}
        # The finalisers, held here: the loop itself keeps only weak references.
        self._finalizers: dict[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = {}
        self._lock = lock
        self._close = close

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[asyncio.AbstractEventLoop]:
        return iter(list(self._values))

    def get(self, loop: asyncio.AbstractEventLoop) -> V | None:
        return self._values.get(loop)

    def values(self) -> list[V]:
        return list(self._values.values())

    def items(self) -> list[tuple[asyncio.AbstractEventLoop, V]]:
        return list(self._values.items())

    def add(self, loop: asyncio.AbstractEventLoop, value: V) -> None:
        """Store ``value`` for ``loop`` (the running one): forgotten at its shutdown."""
        for closed in [lp for lp in self._values if lp.is_closed()]:
            del self._values[closed]
            self._finalizers.pop(closed, None)
        self._values[loop] = value
        self._finalizers[loop] = _finalizer(self._forget(loop, value))

    def pop(self, loop: asyncio.AbstractEventLoop) -> V | None:
        return self._values.pop(loop, None)

    async def _forget(
        self, loop: asyncio.AbstractEventLoop, value: V
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            with self._lock:
                if self._values.get(loop) is value:
                    del self._values[loop]
                    self._finalizers.pop(loop, None)
            if self._close is not None:
                await self._close(value)


def _finalizer(agen: AsyncGenerator[None, None]) -> AsyncGenerator[None, None]:
    """Register ``agen`` with the running loop for ``shutdown_asyncgens()``.

    ``__anext__()`` fires the loop's first-iteration hook, which adds the generator to
    the set the loop finalises; driving it to its first ``yield`` by hand (no await
    happens before it) keeps this callable from sync code such as a proxy attribute
    access.
    """
    step = agen.__anext__()
    with contextlib.suppress(StopIteration):
        step.send(None)
    return agen


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop of this thread, or ``None``."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


#: Tasks started from sync code, referenced until done (loops keep only weak ones).
_TASKS: set[asyncio.Future[Any]] = set()


def spawn(awaitable: Awaitable[Any]) -> None:
    """Run ``awaitable`` as a task of the running loop, holding on to it until done."""
    task = asyncio.ensure_future(awaitable)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


def on_loop(loop: asyncio.AbstractEventLoop, call: Callable[[], object]) -> None:
    """Run ``call`` on ``loop``: now if it is the running loop, else soon, threadsafe.

    A loop that is closed already has nothing left to run it for.
    """
    if running_loop() is loop:
        call()
        return
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(call)
