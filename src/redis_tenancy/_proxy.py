"""The proxies behind ``POPOTO_REDIS_DB`` and ``POPOTO_ASYNC_REDIS_DB``.

A proxy is an instance of a subclass of ``redis.Redis`` (or ``redis.asyncio.Redis``)
that never runs the client's ``__init__``: ``isinstance`` checks and IDE completion
see a real client type, while every attribute access goes through
``__getattribute__`` to the active tenant's concrete client. Nothing is cached on the
proxy, so a patch applied to a concrete client, or a tenant replaced mid-block, is
seen on the very next access.

The hot path is one ``ContextVar.get()``, one slot read and one ``getattr``; the
router's ContextVar and the helpers are bound as default arguments when the class is
made (once per router), so the path never branches on configuration. Resolution
failures come back as :class:`Unresolved`; for dunder names they become a quiet
``AttributeError`` so that introspection (pytest's ``__test__``, ``inspect``'s
``__wrapped__``, ``isinstance``'s ``__class__``) never sees a ``LookupError`` or an
error log line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol, cast

import redis
import redis.asyncio

from ._errors import Unresolved, resolved
from ._tenant import NO_LOOP, StrictSlot, Tenant

if TYPE_CHECKING:
    pass

__all__ = ["ProxyHost", "make_async_proxy", "make_sync_proxy"]


class ProxyHost(Protocol):
    """What a proxy needs from its router."""

    @property
    def var(self) -> ContextVar[Tenant | StrictSlot]:
        """The router's active-tenant ContextVar."""
        ...

    def describe_active(self) -> str:
        """A safe, redacted one-line description of the active tenant."""
        ...


def _failure(name: str, exc: Unresolved) -> Exception:
    if name[:2] == "__" and name[-2:] == "__":
        return AttributeError(f"{name}: the proxy cannot resolve a client here")
    return exc.public()


def _unresolved(proxy: object, name: str, exc: Unresolved) -> Any:
    """Answer ``name`` when the active slot cannot give a client."""
    if name == "__class__":  # isinstance() via ABCMeta asks for it
        return object.__getattribute__(proxy, name)
    raise _failure(name, exc) from None


def _slow_attr(proxy: object, name: str, build: Callable[[], Any]) -> Any:
    """Resolve ``name`` when the hot path found no ready client."""
    try:
        client = build()
    except Unresolved as exc:
        return _unresolved(proxy, name, exc)
    return getattr(client, name)


def _safe_repr(kind: str, host: ProxyHost) -> str:
    try:
        return f"<{kind} proxy {host.describe_active()}>"
    except Exception:  # repr must never raise, whatever state the router is in
        return f"<{kind} proxy (unresolvable)>"


def _build_proxy(
    name: str,
    base: type,
    kind: str,
    host: ProxyHost,
    getattribute: Callable[..., Any],
    resolve: Callable[[], Any],
    doc: str,
) -> Any:
    """Make the proxy class over ``base`` and return its single instance.

    Only ``__getattribute__`` differs between the sync and async proxies; writes,
    deletes, ``dir()`` and ``repr()`` share this code and go through ``resolve``.
    """

    def __setattr__(self: object, attr: str, value: Any) -> None:
        setattr(resolved(resolve), attr, value)

    def __delattr__(self: object, attr: str) -> None:
        delattr(resolved(resolve), attr)

    def __dir__(self: object) -> list[str]:
        try:
            return dir(resolve())
        except Unresolved:
            return dir(base)

    cls = type(
        name,
        (base,),
        {
            "__slots__": (),
            "__module__": __name__,
            "__doc__": doc,
            "__getattribute__": getattribute,
            "__setattr__": __setattr__,
            "__delattr__": __delattr__,
            "__dir__": __dir__,
            "__repr__": lambda self: _safe_repr(kind, host),
            # redis-py's __del__ would close the *active* client when the proxy dies.
            "__del__": lambda self: None,
        },
    )
    return object.__new__(cls)


def make_sync_proxy(host: ProxyHost) -> redis.Redis:
    """Build the ``redis.Redis``-typed proxy over ``host``'s active tenant."""
    get = host.var.get

    def resolve() -> redis.Redis:
        return get().sync_client()

    def __getattribute__(self: object, name: str, _get: Any = get, _getattr: Any = getattr) -> Any:
        try:
            return _getattr(_get().client, name)
        except Unresolved as exc:  # removed tenant or strict mode
            return _unresolved(self, name, exc)

    return cast(
        redis.Redis,
        _build_proxy(
            "TenantRedisProxy",
            redis.Redis,
            "redis.Redis",
            host,
            __getattribute__,
            resolve,
            "Proxy resolving to the active tenant's redis.Redis on every access.",
        ),
    )


def make_async_proxy(host: ProxyHost) -> redis.asyncio.Redis:
    """Build the ``redis.asyncio.Redis``-typed proxy over ``host``'s active tenant.

    The running loop is found without ``asyncio.get_running_loop()`` on the hot path
    (it costs a ``getpid()`` system call on 3.11): each tenant remembers the loop it
    served last, and per thread the loop it last served there. An asyncio loop is
    trusted only while it runs in this very thread (``loop._thread_id``); a thread runs
    at most one loop at a time, so that check is exact. Loops that do not say which
    thread runs them (uvloop) are trusted while they run and were last resolved in
    this thread; anything else takes the slow path, which looks the loop up.
    """
    get = host.var.get

    def resolve() -> redis.asyncio.Redis:
        return get().async_client()

    def __getattribute__(
        self: object,
        name: str,
        _get: Any = get,
        _ident: Any = threading.get_ident,
        _getattr: Any = getattr,
        _none: Any = NO_LOOP,
    ) -> Any:
        slot = _get()
        entry = slot.last_loop
        ident = _ident()
        if entry.probe._thread_id == ident:  # an asyncio loop running in this thread
            return _getattr(entry.client, name)
        if entry.thread == ident:  # uvloop & co (see LoopClient), last resolved here
            if entry.loop.is_running():
                return _getattr(entry.client, name)
        else:
            entry = slot.loops_by_thread.get(ident, _none)
            if entry.probe._thread_id == ident or (
                entry.thread == ident and entry.loop.is_running()
            ):
                return _getattr(entry.client, name)
        return _slow_attr(self, name, slot.async_client)

    return cast(
        redis.asyncio.Redis,
        _build_proxy(
            "TenantAsyncRedisProxy",
            redis.asyncio.Redis,
            "redis.asyncio.Redis",
            host,
            __getattribute__,
            resolve,
            "Proxy resolving to the active tenant's redis.asyncio.Redis "
            "for the running event loop on every access.",
        ),
    )
