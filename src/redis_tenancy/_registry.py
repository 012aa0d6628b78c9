"""The registry behind a router: tenant names to settings, and settings to Tenant objects.

Registering 100 000 tenants must be nearly free, so a name starts life as one entry
in :attr:`Registry.pending` pointing at a :class:`TenantSettings` that many names may
share: identical registration arguments are parsed once and the result reused (the
settings are frozen, so sharing is safe). Only when a name is first *used* does it get
its :class:`Tenant` object (client slots, locks, per-loop maps) in :attr:`lookup`,
the dict that ``tenant().__enter__`` reads inline. A name nobody registered can be
loaded on demand from a ``loader`` callable, once per name however many callers ask at
the same moment, with ``None`` answers remembered for a short time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from typing import Any

from ._errors import TenantConfigError, UnknownTenantError
from ._settings import TenantSettings, check_name, parse_settings
from ._tenant import Tenant

__all__ = ["AsyncLoader", "Loader", "Registry"]

#: ``loader(name)`` returns the tenant's settings (``redis.Redis`` keywords, ``url=``
#: accepted, or a URL string), or ``None`` for "no such tenant".
Loader = Callable[[str], "Mapping[str, Any] | str | None"]
AsyncLoader = Callable[[str], "Awaitable[Mapping[str, Any] | str | None]"]

#: Distinct registration arguments remembered for reuse; beyond this the cache restarts.
_CACHE_SIZE = 4096


def _cache_key(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Hashable | None:
    """A hashable form of registration arguments, or None when they cannot be keyed.

    Each value is keyed with its type, all the way down: ``db=True`` must not find
    the settings parsed for ``db=1`` (``True == 1`` in Python, but only one of them
    is a valid db).
    """
    if args:
        return None
    items = []
    plain = True
    for key, value in kwargs.items():
        if type(key) is not str:
            return None
        kind = type(value)
        if kind not in _SCALARS:
            plain = False
            value = _typed(value)
        items.append((key, kind, value))
    items.sort(key=_first)  # keys are distinct strings: only they are compared
    key_ = tuple(items)
    if not plain:
        try:
            hash(key_)
        except TypeError:
            return None
    return key_


#: Types whose values hash and compare by value (the common case: URLs, ints, flags).
_SCALARS = frozenset({str, int, float, bool, type(None), bytes})


def _first(item: tuple[str, type, Any]) -> str:
    return item[0]


def _typed(value: Any) -> Hashable:
    if isinstance(value, tuple | frozenset):
        return (type(value), tuple(_typed(v) for v in value))
    return (type(value), value)


def named(settings: TenantSettings, name: str) -> TenantSettings:
    """``settings`` as tenant ``name``'s own (shared settings carry the first name)."""
    return settings if settings.name == name else dataclasses.replace(settings, name=name)


class Registry:
    """Names to pending settings or live Tenant objects, plus on-demand loading.

    Args:
        default: the default tenant, always live.
        make_tenant: builds a Tenant from its settings (the router passes its hooks).
        loader / async_loader: asked for settings of names nobody registered.
        negative_ttl: seconds a ``None`` answer from a loader is remembered.
    """

    def __init__(
        self,
        default: Tenant,
        make_tenant: Callable[[TenantSettings], Tenant],
        *,
        loader: Loader | None = None,
        async_loader: AsyncLoader | None = None,
        negative_ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        name = default.name
        self.default_name = name
        #: Live tenants by the names callers pass: ``None`` and ``""`` alias the default.
        self.lookup: dict[str | None, Tenant] = {name: default, "": default, None: default}
        self.live: dict[str, Tenant] = {name: default}
        #: Registered names not used yet, mapped to (possibly shared) settings.
        self.pending: dict[str, TenantSettings] = {}
        self.lock = threading.RLock()
        self._make = make_tenant
        self._cache: dict[Hashable, TenantSettings] = {}
        self._loader = loader
        self._async_loader = async_loader
        self._negative_ttl = negative_ttl
        self._clock = clock
        self._negative: dict[str, float] = {}
        self._loading: dict[str, concurrent.futures.Future[Tenant | None]] = {}

    # -- registering ----------------------------------------------------------------------

    def parse(self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> TenantSettings:
        """Validated settings for these arguments; identical arguments share one object.

        What depends on the name (a key prefix derived from it) is checked for ``name``
        on every call, cached or not.
        """
        key = _cache_key(args, kwargs)
        settings = None if key is None else self._cache.get(key)
        if settings is None:
            settings = parse_settings(name, args, kwargs)
            if key is not None:
                if len(self._cache) >= _CACHE_SIZE:
                    self._cache.clear()
                self._cache[key] = settings
        settings.check_tenant(name)
        return settings

    def apply(self, entries: Iterable[tuple[str, TenantSettings]]) -> None:
        """Register or replace each ``(name, settings)``; everything was validated.

        A replacement keeps the tenant's failover endpoints unless its settings name
        them (see :meth:`TenantSettings.with_failover_of`); that is decided for every
        entry before any is applied, so a refusal changes nothing.
        """
        with self.lock:
            final = [(name, self._keeping(name, settings)) for name, settings in entries]
            live, pending = self.live, self.pending
            for name, settings in final:
                tenant = live.get(name)
                if tenant is None:
                    pending[name] = settings
                    self._negative.pop(name, None)
                else:
                    tenant.replace(named(settings, name))

    def _keeping(self, name: str, settings: TenantSettings) -> TenantSettings:
        """``settings`` for ``name``, with the failover endpoints it has now if they are
        to be kept. Called with the lock held."""
        tenant = self.live.get(name)
        previous = self.pending.get(name) if tenant is None else tenant.settings
        if previous is None or not previous.topology.failover:
            return settings
        return settings.with_failover_of(previous, tenant=name)

    def bulk(self, names: Iterable[str], settings: TenantSettings) -> int:
        """Register every name in ``names`` with the same ``settings``, all or nothing."""
        names = list(names)
        for name in names:
            if type(name) is not str:
                check_name(name)
                raise TenantConfigError("tenant name must not be None in a bulk registration")
            if not name:
                raise TenantConfigError("the default tenant ('') cannot be bulk-registered")
        if settings.namespace is True:
            for name in names:
                settings.check_tenant(name)
        with self.lock:
            live, pending = self.live, self.pending
            # Only names registered already can have failover endpoints to keep.
            known = [n for n in names if n in pending or n in live]
            kept = {name: self._keeping(name, settings) for name in known}
            clash = [n for n in known if n in live]
            fresh = dict.fromkeys(names, settings)
            for name in clash:
                del fresh[name]
            for name, own in kept.items():
                if name in fresh:
                    fresh[name] = own
            pending.update(fresh)
            if self._negative:
                for name in names:
                    self._negative.pop(name, None)
            for name in clash:
                self.live[name].replace(named(kept[name], name))
        return len(names)

    def remove(self, name: str) -> Tenant | None:
        """Unregister ``name``; return its live Tenant (to close) if it had one.

        Raises:
            UnknownTenantError: ``name`` is not registered.
        """
        with self.lock:
            if self.pending.pop(name, None) is not None:
                return None
            tenant = self.live.pop(name, None)
            if tenant is None:
                raise UnknownTenantError(name, len(self))
            del self.lookup[name]
            return tenant

    # -- finding --------------------------------------------------------------------------

    def find(self, name: str) -> Tenant | None:
        """The live Tenant of a registered ``name`` (made live now if pending), else None."""
        tenant = self.lookup.get(name)
        if tenant is not None:
            return tenant
        with self.lock:
            tenant = self.lookup.get(name)
            if tenant is not None:
                return tenant
            settings = self.pending.pop(name, None)
            if settings is None:
                return None
            return self._go_live(name, settings)

    def _go_live(self, name: str, settings: TenantSettings) -> Tenant:
        # Called with the lock held.
        tenant = self._make(named(settings, name))
        self.live[name] = tenant
        self.lookup[name] = tenant
        return tenant

    def resolve(self, name: str) -> Tenant:
        """``find``, else ask the sync loader; raise ``UnknownTenantError`` if nobody knows."""
        tenant = self.find(name)
        if tenant is not None:
            return tenant
        if self._loader is None:
            if self._async_loader is not None:
                raise UnknownTenantError(
                    name,
                    len(self),
                    hint="it can only be loaded from async code: use `async with tenant(...)`",
                )
            raise UnknownTenantError(name, len(self))
        future, mine = self._claim(name)
        if mine:
            self._settle(name, future, lambda: self._loader(name))  # type: ignore[misc]
        return self._loaded(name, future.result())

    async def aresolve(self, name: str) -> Tenant:
        """``resolve`` for async code: prefers the async loader, awaits other loads."""
        tenant = self.find(name)
        if tenant is not None:
            return tenant
        if self._async_loader is None:
            return self.resolve(name)
        future, mine = self._claim(name)
        if mine:
            try:
                answer = await self._async_loader(name)
            except BaseException as exc:
                self._fail(name, future, exc)
                raise
            self._settle(name, future, lambda: answer)
        return self._loaded(name, await asyncio.wrap_future(future))

    def _claim(self, name: str) -> tuple[concurrent.futures.Future[Tenant | None], bool]:
        """The pending load of ``name`` and whether this caller must run it."""
        with self.lock:
            expires = self._negative.get(name)
            if expires is not None:
                if self._clock() < expires:
                    raise UnknownTenantError(name, len(self), hint="the loader did not know it")
                del self._negative[name]
            future = self._loading.get(name)
            if future is not None:
                return future, False
            future = concurrent.futures.Future()
            self._loading[name] = future
            return future, True

    def _settle(
        self,
        name: str,
        future: concurrent.futures.Future[Tenant | None],
        answer: Callable[[], Mapping[str, Any] | str | None],
    ) -> None:
        """Run the loader's answer through validation and registration; wake waiters."""
        try:
            found = answer()
            tenant = None if found is None else self._register_loaded(name, found)
        except BaseException as exc:
            self._fail(name, future, exc)
            raise
        with self.lock:
            self._loading.pop(name, None)
            if tenant is None:
                self._negative[name] = self._clock() + self._negative_ttl
        future.set_result(tenant)

    def _fail(
        self, name: str, future: concurrent.futures.Future[Tenant | None], exc: BaseException
    ) -> None:
        # Loader errors are not remembered: the next use asks again.
        with self.lock:
            self._loading.pop(name, None)
        future.set_exception(exc)

    def _register_loaded(self, name: str, found: Mapping[str, Any] | str) -> Tenant:
        if isinstance(found, str):
            found = {"url": found}
        if not isinstance(found, Mapping):
            raise TenantConfigError(
                f"tenant {name!r}: the loader must return a dict of settings, a URL or None, "
                f"got {type(found).__name__}"
            )
        settings = self.parse(name, (), found)
        with self.lock:
            # Registered by hand while the loader ran (live or still pending): that wins.
            return self.find(name) or self._go_live(name, settings)

    def _loaded(self, name: str, tenant: Tenant | None) -> Tenant:
        if tenant is None:
            raise UnknownTenantError(name, len(self), hint="the loader did not know it")
        return tenant

    # -- counting -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.live) + len(self.pending)

    def __contains__(self, name: object) -> bool:
        return name in self.lookup or name in self.pending

    def names(self) -> list[str]:
        """Registered names, default first, the rest sorted."""
        default = self.default_name
        rest = [n for n in self.live if n != default]
        rest.extend(self.pending)
        return [default, *sorted(rest)]

    def settings_of(self, name: str) -> TenantSettings | None:
        """The settings of a registered name, without making it live."""
        tenant = self.lookup.get(name)
        if tenant is not None:
            return tenant.settings
        settings = self.pending.get(name)
        return None if settings is None else named(settings, name)
