"""Carrying an active tenant into code that runs after its block has ended.

A streamed response body is produced after the view returned: the WSGI server pulls
the iterable chunk by chunk, Django's ASGI handler iterates ``streaming_content``
itself. Leaving the tenant set on the thread until then is how tenants leak (the
server reuses the thread, or never calls ``close()``). Instead, the iterators here
set the tenant around each step (``next``, ``anext``, ``close``) and reset it right
after, so the tenant is active exactly while response code runs, and the thread or
task is left as it was found after every step.

The tenant object itself is carried (the value of ``Router.var``), not its name:
no lookup per chunk, and a tenant replaced or removed mid-stream still finishes the
response it started.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

__all__ = ["BoundAsyncIterator", "BoundIterator"]

T = TypeVar("T")


class BoundIterator(Generic[T]):
    """Iterate ``iterable`` with ``var`` set to ``value`` during each step and ``close()``.

    ``close()`` is forwarded (under the tenant) when the wrapped object has one, as
    PEP 3333 requires of anything standing in for a WSGI response.
    """

    __slots__ = ("_iterable", "_iterator", "_value", "_var")

    def __init__(self, iterable: Iterable[T], var: ContextVar[Any], value: Any) -> None:
        self._iterable = iterable
        self._iterator: Iterator[T] | None = None
        self._var = var
        self._value = value

    def __iter__(self) -> BoundIterator[T]:
        return self

    def __next__(self) -> T:
        token = self._var.set(self._value)
        try:
            if self._iterator is None:
                self._iterator = iter(self._iterable)
            return next(self._iterator)
        finally:
            self._var.reset(token)

    def close(self) -> None:
        close = getattr(self._iterable, "close", None)
        if close is None:
            return
        token = self._var.set(self._value)
        try:
            close()
        finally:
            self._var.reset(token)


class BoundAsyncIterator(Generic[T]):
    """The async twin of :class:`BoundIterator` (``__anext__`` and ``aclose()``)."""

    __slots__ = ("_iterable", "_iterator", "_value", "_var")

    def __init__(self, iterable: AsyncIterable[T], var: ContextVar[Any], value: Any) -> None:
        self._iterable = iterable
        self._iterator: AsyncIterator[T] | None = None
        self._var = var
        self._value = value

    def __aiter__(self) -> BoundAsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        # Set and reset inside one coroutine step sequence: the same task, the same
        # Context, so the reset always matches its set.
        token = self._var.set(self._value)
        try:
            if self._iterator is None:
                self._iterator = aiter(self._iterable)
            return await anext(self._iterator)
        finally:
            self._var.reset(token)

    async def aclose(self) -> None:
        aclose = getattr(self._iterable, "aclose", None)
        if aclose is None:
            return
        token = self._var.set(self._value)
        try:
            await aclose()
        finally:
            self._var.reset(token)
