"""Thread pools whose tasks run with the submitter's tenant, and never anyone else's.

``concurrent.futures.ThreadPoolExecutor`` runs a task in whatever context its worker
thread happens to have: on Python up to 3.13 an empty one (no tenant: the default
tenant, or an error in strict mode), and from 3.14, where new threads may inherit the
context of the code that started them, the context of whichever submitter happened
to make the pool start that thread, i.e. possibly *another request's tenant*.
Neither is the submitter's. :class:`TenantThreadPoolExecutor` copies the submitter's
context at ``submit()`` and runs the task inside that copy, whatever the thread
holds; :func:`submit` does the same for any existing executor.

Example::

    pool = TenantThreadPoolExecutor(max_workers=8)
    with tenant("acme"):
        future = pool.submit(POPOTO_REDIS_DB.get, "greeting")   # runs as acme

    # asyncio: loop.run_in_executor(pool, work) copies the calling task's context too.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["TenantThreadPoolExecutor", "submit"]

P = ParamSpec("P")
T = TypeVar("T")


def submit(
    executor: Executor, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> Future[T]:
    """``executor.submit(fn, ...)`` with ``fn`` run in a copy of the caller's context.

    Each call takes its own copy, so tasks never share (or leak) context changes.
    """
    return executor.submit(_in_copy(fn, *args, **kwargs))


class TenantThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose every task runs in a copy of its submitter's context.

    ``map()`` goes through ``submit()`` and so is covered too.
    """

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        return super().submit(_in_copy(fn, *args, **kwargs))


def _in_copy(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Callable[[], T]:
    """``fn(*args, **kwargs)`` bound to a copy of the current context, taken now."""
    context = contextvars.copy_context()

    def run() -> T:
        return context.run(fn, *args, **kwargs)

    return run
