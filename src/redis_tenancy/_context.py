"""Selecting the active tenant: ``tenant()`` as context manager and decorator.

The active tenant lives in a ``contextvars.ContextVar`` created once per router (the
default router's at import, i.e. module scope), so threads and asyncio tasks each see
their own value and tasks inherit their creator's. Entering sets it; leaving resets
it with the token that entry got from ``set()``, so nesting and exceptions restore
exactly the previous tenant.

Where an entry keeps its token
------------------------------
``with tenant("acme"):`` gets an object no other block has open (a new one, or a free
one handed out again by :func:`reusing`), so the token can live on the object: one
slot write in, one slot read out. One object may also be shared
(``ACME = tenant("acme")`` at module level) and entered by many threads and tasks at
once, or re-entered while open. An entry that finds the object already holding a
token keeps its own on a per-context stack instead (a module-level ContextVar, so
each thread and task sees only its own entries), and the object switches for good to
a :class:`_Shared` record that remembers the first entry's token. Each exit therefore
finds the token its own thread or task made, in the right order.

The slot is only ever changed by a read and a write with no call in between. The
GIL switches threads only at calls and backward jumps (CPython 3.10+), so such a pair
is atomic and two threads can never both claim the slot. On a free-threaded build
there is no such guarantee: there every object starts in the shared state
(:data:`STACK_ONLY`) and every entry goes on its context's stack, which needs no
atomicity at all.

Generators
----------
A ``with tenant()`` block around a ``yield`` stays open while the generator is
suspended, i.e. in the *consumer's* context: ContextVars work that way. Decorate
the generator function instead: ``@tenant("acme")`` runs the generator in a context
of its own (copied from the consumer's at its first resumption, with acme active)
and every resumption — ``next``, ``send``, ``throw``, ``close`` and their async
twins — inside it, so the consumer's tenant never changes.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import sys
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Mapping,
)
from contextvars import Context, ContextVar, Token
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar

from ._errors import TenantContextError
from ._settings import check_name

__all__ = [
    "STACK_ONLY",
    "Activator",
    "TenantContext",
    "TenantFactory",
    "copy_tenant_context",
    "fast_paths",
    "reusing",
]

P = ParamSpec("P")
R = TypeVar("R")
Y = TypeVar("Y")
S = TypeVar("S")


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


class _Shared:
    """The slot of an object that was entered while already entered (for good).

    ``first`` is the token of the entry that held the slot when that happened, until
    it exits; every later entry is on its own context's stack.
    """

    __slots__ = ("first",)

    def __init__(self) -> None:
        self.first: Token[Any] | None = None


#: The slot of every entered object on a free-threaded build: every entry stacked.
STACK_ONLY = _Shared()

#: Whether a read and a write of a slot with no call between them are atomic (the GIL).
ATOMIC_SLOTS: bool = getattr(sys, "_is_gil_enabled", lambda: True)()


#: One open entry kept on its context's stack: (object, its token, the entry below).
#: A plain tuple, not a NamedTuple: its constructor is C, this is on every shared entry.
_Entry = tuple["TenantContext", Token[Any], "_Entry | None"]


#: Entries of shared objects, per thread/task (each context sees only its own).
_ENTRIES: ContextVar[_Entry | None] = ContextVar("redis_tenancy.shared_entries", default=None)


class TenantContext:
    """Run a block or a function with a tenant active.

    Constructing it never looks the name up, so ``@tenant("acme")`` can decorate a
    function before "acme" is registered; the name is checked each time the block is
    entered. One instance may be nested, re-entered, and entered by any number of
    threads and tasks at once: each exit restores what its own thread or task had.
    As a decorator it works on functions, coroutine functions, generator functions
    and async-generator functions (see the module docstring for generators).

    Example::

        with tenant("acme"):
            POPOTO_REDIS_DB.set("k", "v")       # goes to acme's server

        @tenant("acme")
        async def job() -> None:
            await POPOTO_ASYNC_REDIS_DB.get("k")

    Raises:
        TenantContextError: on ``__exit__`` without a matching ``__enter__`` in the
            same thread or task (or a second exit).
    """

    __slots__ = ("_router", "_token", "name")

    def __init__(self, router: Activator, name: str | None) -> None:
        self._router = router
        self.name = name
        # None (free), the open entry's Token, or a _Shared record (see module doc).
        self._token: Token[Any] | _Shared | None = None

    def __repr__(self) -> str:
        return f"tenant({self.name!r})"

    def __enter__(self) -> TenantContext:
        token = self._set_if_live() or self._router.activate(self.name)
        return self._hold(token)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release()

    async def __aenter__(self) -> TenantContext:
        token = self._set_if_live() or await self._router.aactivate(self.name)
        return self._hold(token)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release()

    # -- where tokens are kept ------------------------------------------------------

    def _set_if_live(self) -> Token[Any] | None:
        """Activate a live tenant without the router's slow path; None if not live.

        ``activate`` (sync) or ``aactivate`` (an async loader may be awaited) does
        the rest: unknown names, never-used registrations, bad types.
        """
        router = self._router
        try:
            return router.var.set(router.lookup[self.name])
        except (KeyError, TypeError):
            return None

    def _hold(self, token: Token[Any]) -> TenantContext:
        """Keep ``token`` for the exit: on the object if it is free, else stacked."""
        if self._token is None and ATOMIC_SLOTS:
            self._token = token
            return self
        return self._push(token)

    def _push(self, token: Token[Any]) -> TenantContext:
        held = self._token
        if held.__class__ is not _Shared:  # free, or one entry's token: claim or convert
            shared = _Shared()
            held = self._token  # read again after that call; no call from here to the write
            if held is None:
                if ATOMIC_SLOTS:  # freed since the caller looked
                    self._token = token
                    return self
                self._token = STACK_ONLY  # every thread writes the same object
            elif held.__class__ is not _Shared:
                shared.first = held  # type: ignore[assignment]
                self._token = shared
        _ENTRIES.set((self, token, _ENTRIES.get()))
        return self

    def _release(self) -> None:
        """Reset the newest open entry of this thread or task, wherever it is kept."""
        held = self._token
        if held.__class__ is _Shared:
            if self._pop_stacked():
                return
            token = held.first
        else:
            token = held  # type: ignore[assignment]
        if token is not None:
            try:
                token.var.reset(token)
            except (ValueError, RuntimeError):
                pass  # another thread's or task's entry, or already reset
            else:
                if token is held:
                    if self._token is token:
                        self._token = None
                else:
                    held.first = None  # type: ignore[union-attr]
                return
        raise TenantContextError(
            f"{self!r} exited without being entered in this thread or task (or exited twice)"
        )

    def _pop_stacked(self) -> bool:
        passed: list[_Entry] = []
        entry = _ENTRIES.get()
        while entry is not None:
            owner, token, below = entry
            if owner is self:
                try:
                    token.var.reset(token)
                except (ValueError, RuntimeError):
                    pass  # inherited from the context this task was copied from
                else:
                    for kept in reversed(passed):  # only if blocks were left out of order
                        below = (kept[0], kept[1], below)
                    _ENTRIES.set(below)
                    return True
            passed.append(entry)
            entry = below
        return False

    # -- decorator ------------------------------------------------------------------

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Decorate a function so every call (or every resumption) runs as this tenant."""
        router = self._router
        name = check_name(self.name)
        if inspect.isasyncgenfunction(func):
            return _async_generator_as(router, name, func)  # type: ignore[return-value]
        if inspect.isgeneratorfunction(func):
            return _generator_as(router, name, func)  # type: ignore[return-value]
        if inspect.iscoroutinefunction(func):
            aactivate = router.aactivate

            @functools.wraps(func)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                token = await aactivate(name)
                try:
                    return await func(*args, **kwargs)
                finally:
                    token.var.reset(token)

            return run_async  # type: ignore[return-value]

        activate = router.activate

        @functools.wraps(func)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            token = activate(name)
            try:
                return func(*args, **kwargs)
            finally:
                token.var.reset(token)

        return run


def fast_paths(
    router: Activator,
) -> tuple[
    Callable[[TenantContext], TenantContext],
    Callable[
        [TenantContext, type[BaseException] | None, BaseException | None, TracebackType | None],
        None,
    ],
]:
    """``__enter__`` and ``__exit__`` for a subclass bound to one router.

    Same behaviour as :class:`TenantContext`'s, with the router's ``set``, ``reset``
    and ``lookup`` in closure cells and the free-slot case of ``_hold`` and
    ``_release`` inline: ``with tenant("acme"):`` is on every request's path.
    """
    set_ = router.var.set
    reset = router.var.reset
    lookup = router.lookup
    activate = router.activate

    def __enter__(self: TenantContext) -> TenantContext:
        try:
            token = set_(lookup[self.name])
        except (KeyError, TypeError):
            token = activate(self.name)  # raises UnknownTenantError
        if self._token is None:
            self._token = token
            return self
        return self._push(token)

    def __exit__(
        self: TenantContext,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token = self._token
        try:
            reset(token)  # type: ignore[arg-type]
        except (TypeError, ValueError, RuntimeError):  # not a Token of this context
            return self._release()
        # Another thread may have made the object shared since the reset (a call, so a
        # possible thread switch): clear the slot only if it still holds our token.
        if self._token is token:
            self._token = None
        return None

    if not ATOMIC_SLOTS:  # no claiming without atomic slots: the base class stacks them all
        return TenantContext.__enter__, __exit__
    return __enter__, __exit__


class TenantFactory(Protocol):
    """``tenant()``: makes (or hands out again) the object for a ``with`` block."""

    def __call__(self, name: str | None = None) -> TenantContext: ...


#: How many names :func:`reusing` remembers a free object for before it starts over.
REUSE_LIMIT = 16384


def reusing(make: Callable[[str | None], TenantContext], router: Activator) -> TenantFactory:
    """``make`` wrapped so that ``with tenant("acme"):`` re-uses a free object.

    Constructing a slotted object runs a Python ``__init__``, which is about 40% of a
    whole ``with tenant("acme"): pass``. An object whose block has been left is free
    again (its token slot is ``None``), so the factory hands out the last object it
    made for that name while it is still free, and makes a new one otherwise.

    Two threads may both be handed the same free object before either enters it; the
    second entry then finds the slot taken and uses its own context's stack, which is
    the shared-object path (correct, only slower), and the factory never hands that
    object out again. Unhashable names get a new object, which reports the bad name
    when it is entered. Only names ``router`` serves already (live tenants and their
    aliases, ``router.lookup``) are remembered, at most :data:`REUSE_LIMIT` of them:
    names are often request input, and unknown ones (of any length) must not be kept.
    Without atomic slots (a free-threaded build) every call makes a new object.
    """
    if not ATOMIC_SLOTS:
        return make  # type: ignore[return-value]
    free: dict[Any, TenantContext] = {}

    def tenant(name: str | None = None) -> TenantContext:
        try:
            obj = free.get(name)
        except TypeError:  # unhashable: the object says what is wrong when entered
            return make(name)
        if obj is not None and obj._token is None:
            return obj
        obj = make(name)
        if name in router.lookup:
            if len(free) >= REUSE_LIMIT:
                free.clear()
            free[name] = obj
        return obj

    tenant.__doc__ = make.__doc__
    tenant.__module__ = make.__module__
    tenant.__qualname__ = "tenant"
    return tenant


# -- generators ---------------------------------------------------------------------


def _drive(context: Context, steps: Generator[Y, S, R]) -> Generator[Y, S, R]:
    """``yield from steps`` with each resumption of ``steps`` run inside ``context``.

    Shared by the generator decorator and, for each step of an async generator, by
    :class:`_InContext`: both relay ``send``/``throw``/``close`` as PEP 380 does.
    """
    run = context.run
    try:
        value = run(steps.send, None)  # type: ignore[arg-type]
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    while True:
        try:
            sent = yield value
        except GeneratorExit:
            run(steps.close)
            raise
        except BaseException as exc:
            try:
                value = run(steps.throw, exc)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
        else:
            try:
                value = run(steps.send, sent)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]


class _InContext(Awaitable[R]):
    """Await ``step`` with each of its resumptions run inside ``context``."""

    __slots__ = ("_context", "_step")

    def __init__(self, context: Context, step: Awaitable[R]) -> None:
        self._context = context
        self._step = step

    def __await__(self) -> Generator[Any, Any, R]:
        return _drive(self._context, self._step.__await__())


def _generator_as(
    router: Activator, name: str | None, func: Callable[P, Generator[Y, S, R]]
) -> Callable[P, Generator[Y, S, R]]:
    activate = router.activate

    @functools.wraps(func)
    def run_generator(*args: P.args, **kwargs: P.kwargs) -> Generator[Y, S, R]:
        context = contextvars.copy_context()
        context.run(activate, name)
        return (yield from _drive(context, func(*args, **kwargs)))

    return run_generator


def _async_generator_as(
    router: Activator, name: str | None, func: Callable[P, AsyncGenerator[Y, S]]
) -> Callable[P, AsyncGenerator[Y, S]]:
    aactivate: Callable[[str | None], Coroutine[Any, Any, Token[Any]]] = router.aactivate

    @functools.wraps(func)
    async def run_async_generator(*args: P.args, **kwargs: P.kwargs) -> AsyncGenerator[Y, S]:
        context = contextvars.copy_context()
        await _InContext(context, aactivate(name))
        steps = func(*args, **kwargs)
        try:
            value = await _InContext(context, steps.asend(None))  # type: ignore[arg-type]
            while True:
                try:
                    sent = yield value
                except GeneratorExit:
                    await _InContext(context, steps.aclose())
                    raise
                except BaseException as exc:
                    value = await _InContext(context, steps.athrow(exc))
                else:
                    value = await _InContext(context, steps.asend(sent))
        except StopAsyncIteration:
            return

    return run_async_generator


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
