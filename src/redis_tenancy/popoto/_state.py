"""Popoto state that lives outside Redis, keyed by tenant (or refused when it cannot be).

Routing connections does not separate what Popoto keeps in the process or on disk:

- ``EmbeddingField`` writes one ``.npy`` file per record under
  ``$POPOTO_CONTENT_PATH/.embeddings/<Model>/``, named by a hash of the Redis key, and
  caches each model's matrix in ``_embedding_cache[model_name]``; two tenants with a
  record of the same key overwrite each other's vector, and a search under one tenant
  can serve the other's cached matrix. Its cross-process invalidation listener
  (``_listener_threads[model_name]``) is started once, for whichever tenant came first.
- ``ContentField``'s default ``FilesystemStore`` writes ``<base>/<Model>/<key>.txt``:
  the same collision.

So the default tenant keeps Popoto's own paths and every other tenant gets
``<base>/.tenants/t_<quoted name>/`` with the same layout inside; the two dicts become
:class:`TenantKeyedDict`. A content store that is not Popoto's ``FilesystemStore``
cannot be split: the second tenant to use one gets :class:`SharedStateError`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any
from urllib.parse import quote

from .. import Router
from ._errors import SharedStateError

__all__ = ["TenantKeyedDict", "TenantState", "tenant_dirname"]

#: Under a base directory, where the non-default tenants' trees live.
TENANTS_DIR = ".tenants"


def tenant_dirname(name: str) -> str:
    """A directory name for tenant ``name``: injective, no separators, never ``.``/``..``."""
    return "t_" + quote(name, safe="")


class TenantKeyedDict(MutableMapping[Any, Any]):
    """One dict per tenant behind a single mapping.

    Item access, ``in``, iteration and ``len`` see the active tenant's dict only.
    ``clear()`` and ``values()`` span every tenant: Popoto calls them to invalidate
    every cache (``invalidate_cache()``) and to stop every listener
    (``stop_invalidation_listeners()``), which must not leave other tenants' entries
    behind.
    """

    def __init__(self, current: Callable[[], str]) -> None:
        self._current = current
        self._lock = threading.Lock()
        self._by_tenant: dict[str, dict[Any, Any]] = {}

    def _mine(self) -> dict[Any, Any]:
        name = self._current()
        try:
            return self._by_tenant[name]
        except KeyError:
            with self._lock:
                return self._by_tenant.setdefault(name, {})

    def __getitem__(self, key: Any) -> Any:
        return self._mine()[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._mine()[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._mine()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._mine()

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._mine()))

    def __len__(self) -> int:
        return len(self._mine())

    def __repr__(self) -> str:
        return f"<TenantKeyedDict {len(self._by_tenant)} tenants>"

    def clear(self) -> None:
        with self._lock:
            for entries in self._by_tenant.values():
                entries.clear()

    def values(self) -> list[Any]:  # type: ignore[override]
        with self._lock:
            return [value for entries in self._by_tenant.values() for value in entries.values()]

    def tenants(self) -> dict[str, dict[Any, Any]]:
        """A snapshot: each tenant's entries."""
        with self._lock:
            return {name: dict(entries) for name, entries in self._by_tenant.items()}


class TenantState:
    """Per-tenant paths and stores for one router's tenants."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self._lock = threading.Lock()
        self._stores: dict[tuple[str, str, str], Any] = {}
        # id(store) -> (store, tenant that used it first). Stores live as long as the
        # process or their model class, so holding them costs nothing.
        self._claims: dict[int, tuple[Any, str]] = {}

    def current(self) -> str:
        """The active tenant's name (raises in strict mode outside a tenant)."""
        return self.router.current()

    def tree(self, base: str, name: str) -> str:
        """Where tenant ``name``'s copy of the directory ``base`` is."""
        if name == self.router.default_name:
            return base
        return os.path.join(base, TENANTS_DIR, tenant_dirname(name))

    def embeddings_dir(self, original: Callable[[], str]) -> Callable[[], str]:
        """Wrap Popoto's ``_get_embeddings_dir``: ``<base>/.embeddings`` per tenant."""

        def _get_embeddings_dir() -> str:
            path = original()  # read each time: POPOTO_CONTENT_PATH may change
            name = self.current()
            if name == self.router.default_name:
                return path
            parent, leaf = os.path.split(path.rstrip(os.sep))
            return os.path.join(self.tree(parent, name), leaf)

        return _get_embeddings_dir

    def store(self, store: Any, filesystem_store: Any, what: str) -> Any:
        """The store tenant-active code should use in place of ``store``.

        Popoto's ``FilesystemStore`` gets a twin rooted in the tenant's tree; any other
        store is handed out to one tenant only.
        """
        name = self.current()
        if filesystem_store is not None and type(store) is filesystem_store:
            if name == self.router.default_name:
                return store
            key = (name, str(store.base_path), str(store.extension))
            try:
                return self._stores[key]
            except KeyError:
                twin = filesystem_store(
                    base_path=self.tree(key[1], name), extension=store.extension
                )
                with self._lock:
                    return self._stores.setdefault(key, twin)
        self.claim(store, name, what)
        return store

    def claim(self, thing: Any, name: str, what: str) -> None:
        """Record that tenant ``name`` uses ``thing``; refuse if another tenant did."""
        claimed = self._claims.get(id(thing))
        if claimed is None:
            with self._lock:
                claimed = self._claims.setdefault(id(thing), (thing, name))
        owner = claimed[1]
        if owner != name:
            raise SharedStateError(
                f"{what} ({type(thing).__name__}) is process-wide and cannot be split by "
                f"tenant: tenant {owner!r} used it first, now tenant {name!r} would share "
                "its files with it. Give each tenant its own store (a ContentField per "
                "tenant's model, or a store that keys by redis_tenancy.current_tenant()), "
                "or use Popoto's FilesystemStore, which the integration splits by tenant"
            )
