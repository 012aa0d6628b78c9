"""Selecting the active tenant: ``tenant()`` as context manager and decorator.

The active tenant lives in a ``contextvars.ContextVar`` created once per router (the
default router's at import, i.e. module scope), so threads and asyncio tasks each see
their own value and tasks inherit their creator's. Entering sets it, leaving resets
it with the token from ``set()`` in a ``finally``, so nesting and exceptions restore
exactly the previous tenant.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar

__all__ = ["Activator", "TenantContext", "copy_tenant_context"]

P = ParamSpec("P")
R = TypeVar("R")


class Activator(Protocol):
    """What a :class:`TenantContext` needs from a router.

    ``lookup`` and ``var`` let ``__enter__`` do the common case (a registered name)
    inline, without a method call; ``activate`` handles everything else.
    """

    @property
    def lookup(self) -> Mapping[str | None, Any]:
        """Tenant objects by the names callers pass (aliases included)."""
        ...

    @property
    def var(self) -> ContextVar[Any]:
        """The ContextVar holding the active tenant object."""
        ...

    def activate(self, name: str | None) -> Token[Any]:
        """Make ``name`` the active tenant; raise ``UnknownTenantError`` if unknown."""
        ...

    async def aactivate(self, name: str | None) -> Token[Any]:
        """``activate`` from async code (an async tenant loader may be awaited)."""
        ...


class TenantContext:
    """Run a block or a function with a tenant active.

    Constructing it never looks the name up, so ``@tenant("acme")`` can decorate a
    function before "acme" is registered; the name is checked each time the block is
    entered. One instance may be nested or re-entered; as a decorator it is safe to
    call from many threads and tasks at once (each call keeps its own token).

    Example::

        with tenant("acme"):
            POPOTO_REDIS_DB.set("k", "v")       # goes to acme's server

        @tenant("acme")
        async def job() -> None:
            await POPOTO_ASYNC_REDIS_DB.get("k")
    """

    __slots__ = ("_lookup", "_router", "_set", "_token", "name")

    def __init__(self, router: Activator, name: str | None) -> None:
        self._router = router
        # Bound once so __enter__ is one dict lookup and one ContextVar.set().
        self._lookup = router.lookup
        self._set = router.var.set
        self.name = name
        # The token of the open entry; a list of them only while this same instance
        # is re-entered (rare), so the common path stays two slot writes.
        self._token: Token[Any] | list[Token[Any]] | None = None

    def __repr__(self) -> str:
        return f"tenant({self.name!r})"

    def __enter__(self) -> TenantContext:
        try:
            token = self._set(self._lookup[self.name])
        except (KeyError, TypeError):
            token = self._router.activate(self.name)  # raises UnknownTenantError
        held = self._token
        if held is None:  # the common case, inline: a method call here costs ~30 ns
            self._token = token
            return self
        return self._hold(token)

    def _hold(self, token: Token[Any]) -> TenantContext:
        held = self._token
        if held is None:
            self._token = token
        elif type(held) is list:
            held.append(token)
        else:
            self._token = [held, token]  # type: ignore[list-item]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held = self._token
        token: Token[Any]
        if type(held) is list:
            token = held.pop()
            if len(held) == 1:
                self._token = held[0]
        elif held is None:
            raise RuntimeError(f"{self!r} exited without being entered")
        else:
            token = held  # type: ignore[assignment]
            self._token = None
        token.var.reset(token)

    async def __aenter__(self) -> TenantContext:
        try:
            token = self._set(self._lookup[self.name])
        except (KeyError, TypeError):
            token = await self._router.aactivate(self.name)
        return self._hold(token)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Decorate a sync or async function so every call runs under this tenant."""
        activate = self._router.activate
        name = self.name
        if inspect.iscoroutinefunction(func):
            aactivate = self._router.aactivate

            @functools.wraps(func)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                token = await aactivate(name)
                try:
                    return await func(*args, **kwargs)
                finally:
                    token.var.reset(token)

            return run_async  # type: ignore[return-value]

        @functools.wraps(func)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            token = activate(name)
            try:
                return func(*args, **kwargs)
            finally:
                token.var.reset(token)

        return run


def copy_tenant_context(func: Callable[P, R]) -> Callable[P, R]:
    """Bind ``func`` to the current context (active tenant included) for another thread.

    ``ThreadPoolExecutor`` and ``loop.run_in_executor`` do not carry context
    variables into their worker threads; wrap the callable at submit time::

        with tenant("acme"):
            pool.submit(copy_tenant_context(work), arg)   # work() runs as "acme"

    Each call runs in its own copy of the captured context, so the wrapped callable
    may run in several threads at once.
    """
    captured = contextvars.copy_context()

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(func, *args, **kwargs)

    return run
