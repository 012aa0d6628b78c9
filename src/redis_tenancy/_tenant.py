"""One registered tenant: its settings and the clients built from them, on demand.

A :class:`Tenant` object lives as long as its name is registered and is what the
router's ContextVar holds. Replacing a tenant's settings mutates this object in place,
so a ``with tenant(...)`` block that is already open sees the new connection on its
very next access, and the proxies' hot path is two attribute reads with no lock.

Clients are built lazily: until the first use, the ``client`` slot holds a
:class:`Pending` stand-in whose every attribute read builds the real client (under the
tenant's lock), stores it in the slot and forwards the read. The proxies' hot path is
therefore a plain slot read with no branch and no ``try``; removed tenants and strict
mode keep a stand-in forever, whose reads raise :class:`Unresolved`.

Async clients are kept per (tenant, event loop); each loop's clients are closed by an
async generator that the loop itself finalises in ``shutdown_asyncgens()`` (what
``asyncio.run`` and ``asyncio.Runner`` call), so nothing outlives its loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Any, TypeVar

import redis
import redis.asyncio

from ._backend import Backend, Backends
from ._errors import NoActiveTenantError, NoEventLoopError, PopotoException, UnknownTenantError
from ._failover import EndpointPlan, TenantStatus
from ._settings import TenantSettings

__all__ = ["LoopClients", "Pending", "StrictSlot", "Tenant", "Unresolved", "resolved"]

T = TypeVar("T")


class Unresolved(Exception):
    """Internal: the active slot cannot give a client.

    Raised instead of the public error so that a proxy can answer introspection of
    dunder names with a quiet ``AttributeError`` (``PopotoException`` logs on
    creation); :meth:`public` builds the real, logged error when it is needed.
    """

    def __init__(self, make: Callable[[], PopotoException]) -> None:
        super().__init__()
        self.public = make


def resolved(call: Callable[[], T]) -> T:
    """Run ``call``; turn an internal :class:`Unresolved` into its public, logged error."""
    try:
        return call()
    except Unresolved as exc:
        raise exc.public() from None


class Pending:
    """Stand-in for a sync client that is not built (yet, or ever).

    Any attribute read asks the owner to build the client and forwards the read;
    owners that cannot build (removed tenant, strict mode) raise :class:`Unresolved`.
    """

    __slots__ = ("_owner",)

    def __init__(self, owner: Tenant | StrictSlot) -> None:
        object.__setattr__(self, "_owner", owner)

    def __getattribute__(self, name: str) -> Any:
        owner = object.__getattribute__(self, "_owner")
        return getattr(owner.build_client(), name)

    def __repr__(self) -> str:
        return "<client not built yet>"


class LoopClients:
    """The async clients of one tenant on one event loop."""

    __slots__ = ("client", "closer", "generation", "loop", "retired")

    def __init__(self, loop: asyncio.AbstractEventLoop, client: redis.asyncio.Redis, gen: int):
        self.loop = loop
        self.client = client
        self.generation = gen
        self.retired: list[redis.asyncio.Redis] = []
        self.closer: AsyncGenerator[None, None] | None = None


def _no_thread_id(loop: asyncio.AbstractEventLoop) -> bool:
    return not hasattr(loop, "_thread_id")


class Tenant:
    """A registered tenant: settings plus lazily built sync and per-loop async clients.

    Attributes read on the hot path:
        client: the sync ``redis.Redis`` (built on first access).
        athreads: thread id -> :class:`LoopClients` of the loop last seen running in
            that thread; a fast path that is replaced wholesale (never mutated in
            place) when the tenant's settings change.
    """

    __slots__ = (
        "__weakref__",
        "_aloops",
        "_backend",
        "_backends",
        "_lock",
        "athreads",
        "client",
        "generation",
        "name",
        "removed",
        "settings",
    )

    client: redis.Redis | Pending

    def __init__(self, settings: TenantSettings, backends: Backends | None = None) -> None:
        self.client = Pending(self)
        self.name = settings.name
        self.settings = settings
        self.generation = 0
        self.removed = False
        self.athreads: dict[int, LoopClients] = {}
        self._aloops: dict[asyncio.AbstractEventLoop, LoopClients] = {}
        self._lock = threading.Lock()
        self._backends = backends if backends is not None else Backends(None)
        self._backend: Backend | None = None

    def __repr__(self) -> str:
        return f"<Tenant {self.name!r} {self.settings.endpoint}>"

    # -- sync -------------------------------------------------------------------------

    def sync_client(self) -> redis.Redis:
        """The sync client, built on first use."""
        client = self.client
        if type(client) is Pending:
            return self.build_client()
        return client  # type: ignore[return-value]

    def build_client(self) -> redis.Redis:
        """Build the sync client if no other thread did meanwhile (slow path)."""
        with self._lock:
            client = self.client
            if type(client) is not Pending:
                return client  # type: ignore[return-value]
            if self.removed:
                raise Unresolved(lambda: UnknownTenantError(self.name))
            backend = self.backend()
            client, built = backend.sync_client()
            self.client = client
        if built:
            self._backends.built(backend)
        return client  # type: ignore[no-any-return]

    def drop_sync_client(self, client: Any) -> None:
        """``client`` was evicted: the next access builds (or finds) a fresh one."""
        with self._lock:
            if self.client is client:
                self.client = Pending(self)

    def backend(self) -> Backend:
        """The shared backend of this tenant's connection identity (lock held or not)."""
        backend = self._backend
        if backend is None:
            backend = self._backend = self._backends.acquire(self, self.settings)
        return backend

    # -- failover plans ---------------------------------------------------------------

    def plan(self) -> EndpointPlan:
        """The sync side's endpoint plan (shared with every tenant of the same identity)."""
        return self.backend().plan()

    def set_failover(self, settings: TenantSettings) -> None:
        """Swap in settings that differ only in failover endpoints.

        The plans learn the new endpoint list at once, so the next connection the
        tenant opens may use it; connections already open are not touched and, unless
        other tenants share this tenant's connections, no client is rebuilt.
        """
        with self._lock:
            self.settings = settings
            backend = self._backend
            if backend is None or self._backends.refailover(self, backend, settings):
                return
            self._backend = None
            self.client = Pending(self)
            self._bump_async_generation()

    def status(self) -> TenantStatus:
        """Endpoints, their circuit states and switch counters (see Router.status)."""
        topology = self.settings.topology
        if topology.kind in ("sentinel", "cluster"):
            return TenantStatus(self.name, topology.kind, self.settings.endpoint, ())
        return self.plan().status(self.name, topology.kind)

    def built_client(self) -> redis.Redis | None:
        """The sync client if it has been built, without building it."""
        client = self.client
        return None if type(client) is Pending else client  # type: ignore[return-value]

    def replace(self, settings: TenantSettings) -> None:
        """Swap in new settings; running commands finish on the old clients.

        New accesses build fresh clients from ``settings``. The old sync pool's idle
        connections are closed now, busy ones as their commands finish.
        """
        self._retire_clients(settings)

    def replace_async(self, settings: TenantSettings) -> redis.asyncio.Redis | None:
        """Swap in new async settings; return this loop's old client, if any."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            entry = self._aloops.get(loop) if loop is not None else None
            old = entry.client if entry is not None and entry.generation >= 0 else None
            self.settings = settings
            backend, self._backend = self._backend, None
            self.client = Pending(self)
            self._bump_async_generation()
        if backend is not None:
            self._backends.release(self, backend)
        return old

    def _bump_async_generation(self) -> None:
        # Called with the lock held. Old clients move to ``retired`` so the loop that
        # owns them closes them; a fresh dict empties every thread's fast path.
        self.generation += 1
        self.athreads = {}
        for entry in self._aloops.values():
            if entry.generation >= 0:
                entry.retired.append(entry.client)
                entry.generation = -1

    # -- async ------------------------------------------------------------------------

    def async_client(self) -> redis.asyncio.Redis:
        """This tenant's async client for the running event loop (built if needed)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise Unresolved(
                lambda: NoEventLoopError(
                    f"tenant {self.name!r}: the async client needs a running event loop; "
                    "use POPOTO_ASYNC_REDIS_DB inside a coroutine"
                )
            ) from None
        ident = threading.get_ident()
        built = None
        with self._lock:
            if self.removed:
                raise Unresolved(lambda: UnknownTenantError(self.name))
            entry = self._aloops.get(loop)
            if entry is None:
                self._prune_closed_loops()
                client, built = self._new_async_client(loop)
                entry = LoopClients(loop, client, self.generation)
                self._aloops[loop] = entry
                entry.closer = _start_closer(self, entry)
            elif entry.generation != self.generation:
                entry.client, built = self._new_async_client(loop)
                entry.generation = self.generation
            if not _no_thread_id(loop):
                self.athreads[ident] = entry
            client = entry.client
        if built is not None:  # outside our lock: eviction takes other tenants' locks
            self._backends.built_async(built, loop)
        return client

    def drop_async_client(self, loop: asyncio.AbstractEventLoop, client: Any) -> None:
        """``client`` (this tenant's on ``loop``) was evicted: rebuild on next access."""
        with self._lock:
            entry = self._aloops.get(loop)
            if entry is None or entry.client is not client or entry.generation < 0:
                return
            entry.generation = -1  # not retired: the evictor closes it
            self.athreads = {k: v for k, v in self.athreads.items() if v is not entry}

    def _new_async_client(
        self, loop: asyncio.AbstractEventLoop
    ) -> tuple[redis.asyncio.Redis, Backend | None]:
        """The backend's client for ``loop``, and the backend if this call built it."""
        backend = self.backend()
        client, built = backend.async_client(loop)
        return client, backend if built else None

    def _prune_closed_loops(self) -> None:
        # Loops closed without shutdown_asyncgens() (a bare loop.close()) never ran
        # our closer; forget them so they can be collected.
        for loop in [lp for lp in self._aloops if lp.is_closed()]:
            self._forget(self._aloops[loop])

    def _forget(self, entry: LoopClients) -> None:
        if self._aloops.get(entry.loop) is entry:
            del self._aloops[entry.loop]
        for ident, seen in list(self.athreads.items()):
            if seen is entry:
                self.athreads.pop(ident, None)

    def clients(self) -> list[Any]:
        """Every client this tenant has built and still routes to (for statistics)."""
        with self._lock:
            found: list[Any] = [e.client for e in self._aloops.values() if e.generation >= 0]
        sync = self.built_client()
        return found if sync is None else [sync, *found]

    def loop_count(self) -> int:
        """How many event loops currently hold clients of this tenant."""
        return len(self._aloops)

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        """Unregister: later use raises; running commands finish, then connections close."""
        self._retire_clients(None)

    def _retire_clients(self, settings: TenantSettings | None) -> None:
        # One place for replace and removal: swap under the lock, close outside it.
        with self._lock:
            if settings is None:
                self.removed = True
            else:
                self.settings = settings
            self.client = Pending(self)
            backend, self._backend = self._backend, None
            self._bump_async_generation()
        if backend is not None:  # its clients close if no other tenant shares them
            self._backends.release(self, backend)


async def _closer(tenant: Tenant, entry: LoopClients) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        with tenant._lock:
            tenant._forget(entry)
        for client in (entry.client, *entry.retired):
            await client.aclose()


def _start_closer(tenant: Tenant, entry: LoopClients) -> AsyncGenerator[None, None]:
    """Register an async generator with the running loop that closes ``entry``.

    ``__anext__()`` fires the loop's first-iteration hook, which adds the generator to
    the set the loop finalises in ``shutdown_asyncgens()``; driving it to its first
    ``yield`` by hand (no await happens before it) keeps this callable from sync code
    such as a proxy attribute access.
    """
    agen = _closer(tenant, entry)
    step = agen.__anext__()
    with contextlib.suppress(StopIteration):
        step.send(None)
    return agen


class StrictSlot:
    """What the ContextVar holds outside any ``tenant()`` block in strict mode."""

    __slots__ = ("client",)
    name = None
    athreads: dict[int, LoopClients] = {}  # noqa: RUF012 - shared and always empty

    def __init__(self) -> None:
        self.client = Pending(self)

    def __repr__(self) -> str:
        return "<no active tenant (strict mode)>"

    def sync_client(self) -> redis.Redis:
        raise Unresolved(_strict_error)

    def build_client(self) -> redis.Redis:
        raise Unresolved(_strict_error)

    def async_client(self) -> redis.asyncio.Redis:
        raise Unresolved(_strict_error)


def _strict_error() -> PopotoException:
    return NoActiveTenantError(
        "no active tenant: strict mode requires every Redis use to run inside "
        "`with tenant(name):` (or a function decorated with @tenant(name))"
    )
