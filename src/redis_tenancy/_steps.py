"""Driving a generator of I/O steps: one loop for blocking I/O, one for asyncio.

Procedures shared by sync and async code are written once as generators that yield
the I/O they need (a request) and receive its result; these two drivers run them,
with ``call`` doing that one request's I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import TypeVar

__all__ = ["arun_steps", "run_steps"]

Q = TypeVar("Q")
A = TypeVar("A")
R = TypeVar("R")


def run_steps(steps: Generator[Q, A, R], call: Callable[[Q], A]) -> R:
    """Run ``steps`` to the end, answering each request with ``call(request)``."""
    try:
        request = next(steps)
        while True:
            request = steps.send(call(request))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def arun_steps(steps: Generator[Q, A, R], call: Callable[[Q], Awaitable[A]]) -> R:
    """The asyncio twin of :func:`run_steps`: each request answered by ``await call()``."""
    try:
        request = next(steps)
        while True:
            request = steps.send(await call(request))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
