"""Popoto models per tenant: ``install()`` once, then ``with tenant("acme"):`` routes the ORM.

Popoto reaches Redis through module globals of ``popoto.redis_db`` (and names other
modules copied from it). :func:`install` replaces each of them with a tenant-routed
equivalent and :func:`uninstall` puts back exactly what was there, in the style of
OpenTelemetry's instrumentors: both are idempotent and thread-safe, and
:func:`install` works before or after ``import popoto`` (a post-import hook patches
Popoto's modules as they load).

What is replaced (Popoto 1.9.x and 1.10.x):

==========================================  ==============================================
``redis_db.POPOTO_REDIS_DB``                proxy to the active tenant's guarded client
``redis_db.get_REDIS_DB()``                 the active tenant's guarded client
``redis_db.get_async_redis_db()``           its guarded async client for the running loop
``redis_db._POPOTO_ASYNC_REDIS_DB``         proxy to the same (when Popoto resets it to
                                            ``None``, the next accessor call puts it back)
``set_REDIS_DB_settings`` (+ async twin)     register or replace the named tenant
``redis_db.run_lua``                        script cache per endpoint, pipelines recover
                                            from ``NoScriptError``
``batch.batch`` (1.10)                      a ``Batch`` that recovers the same way
``embedding_field._get_embeddings_dir``,    per-tenant directory, cache and listeners
``_embedding_cache``, ``_listener_threads``
``content_field.get_default_store``,        per-tenant ``FilesystemStore``; other stores
``ContentField.store``                      refused under a second tenant
``BloomLockRenewer`` (1.10)                 its renewal thread runs under its starter's
                                            tenant
==========================================  ==============================================

plus every copy of these names in other ``popoto`` modules. The guarded clients keep
Popoto's refusal to ``FLUSHDB`` database 0; Popoto's in-place pool swaps are refused
with :class:`PoolSwapRefusedError`; a Cluster tenant gets :class:`ClusterTenantError`.

A namespaced tenant (``namespace=True``) gets a client that is both guarded and
namespaced, with namespaced pipelines, ``batch()``, async pipelines and pub/sub, so
every key Popoto writes carries the tenant's prefix; its ``FLUSHDB`` empties only the
namespace and is therefore allowed on database 0 (``FLUSHALL`` stays refused). See
``_clients`` and docs/POPOTO.md.

Example::

    import redis_tenancy.popoto
    from redis_tenancy import set_REDIS_DB_settings, tenant

    redis_tenancy.popoto.install()
    set_REDIS_DB_settings("acme", url="redis://acme-redis:6379/0")
    with tenant("acme"):
        Customer.create(name="Ada")   # on acme's server only
"""

from __future__ import annotations

import contextvars
import importlib.metadata
import logging
import re
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .. import FailoverEvent, Router, default_router
from ._clients import Binding, namespaced_pipeline_class, open_pipeline, recovering
from ._errors import (
    ClusterTenantError,
    PoolSwapRefusedError,
    PopotoIntegrationError,
    PopotoNotSupportedError,
    SharedStateError,
)
from ._import_hook import PostImportHook
from ._patches import PatchSet, loaded_modules
from ._scripts import ScriptRegistry
from ._state import TenantKeyedDict, TenantState

__all__ = [
    "SUPPORTED_VERSIONS",
    "ClusterTenantError",
    "PoolSwapRefusedError",
    "PopotoIntegrationError",
    "PopotoNotSupportedError",
    "SharedStateError",
    "install",
    "installed_router",
    "uninstall",
]

logger = logging.getLogger("POPOTO-REDIS_DB")

#: Popoto versions this integration knows every Redis path of: ``>= 1.9, < 1.11``.
SUPPORTED_VERSIONS = ((1, 9), (1, 11))
_SUPPORTED_TEXT = "1.9.x and 1.10.x"

#: The modules patched, in the order they depend on each other.
_WATCHED = (
    "popoto.redis_db",
    "popoto.batch",
    "popoto.fields.existence_filter",
    "popoto.fields.embedding_field",
    "popoto.fields.content_field",
)

#: Where a Popoto-started thread keeps the context (tenant) of the code that started it.
_CONTEXT = "_redis_tenancy_context"

_lock = threading.RLock()
_installation: _Installation | None = None


def install(router: Router = default_router) -> None:
    """Route every Popoto model through ``router``'s active tenant.

    Idempotent for the same router; call :func:`uninstall` before installing for
    another one. Safe to call before ``import popoto``: Popoto's modules are then
    patched as they are imported. Nothing connects until a model is used.

    Raises:
        PopotoNotSupportedError: popoto is not installed, or not a supported version.
        PopotoIntegrationError: already installed for another router.
    """
    global _installation
    with _lock:
        if _installation is not None:
            if _installation.router is router:
                return
            raise PopotoIntegrationError(
                f"redis_tenancy.popoto is already installed for {_installation.router!r}; "
                "call uninstall() first"
            )
        installation = _Installation(router, check_version(_installed_version()))
        installation.start()
        _installation = installation


def uninstall() -> None:
    """Put back everything :func:`install` replaced; a no-op when not installed."""
    global _installation
    with _lock:
        if _installation is not None:
            _installation.stop()
            _installation = None


def installed_router() -> Router | None:
    """The router Popoto is routed through, or ``None`` when not installed."""
    installation = _installation
    return None if installation is None else installation.router


def check_version(text: str) -> tuple[int, int]:
    """``(major, minor)`` of a supported Popoto version string, else a clear error."""
    match = re.match(r"\s*(\d+)\.(\d+)", text)
    version = (int(match.group(1)), int(match.group(2))) if match else None
    if version is None or not SUPPORTED_VERSIONS[0] <= version < SUPPORTED_VERSIONS[1]:
        raise PopotoNotSupportedError(
            f"popoto {text!r} is not supported by redis_tenancy.popoto "
            f"(supported: {_SUPPORTED_TEXT}); install one with "
            "pip install 'redis-tenancy[popoto]'"
        )
    return version


def _installed_version() -> str:
    try:
        return importlib.metadata.version("popoto")
    except importlib.metadata.PackageNotFoundError:
        loaded = sys.modules.get("popoto")
        version = getattr(loaded, "__version__", None)
        if isinstance(version, str):
            return version
        raise PopotoNotSupportedError(
            "popoto is not installed: pip install 'redis-tenancy[popoto]'"
        ) from None


def _nothing() -> None:
    pass


class _Installation:
    """One ``install()``: what it replaced, and the objects it replaced them with."""

    def __init__(self, router: Router, version: tuple[int, int]) -> None:
        self.router = router
        self.version = version
        self.patches = PatchSet()
        self.scripts = ScriptRegistry()
        self.state = TenantState(router)
        self.binding: Binding | None = None
        self.listeners: TenantKeyedDict | None = None
        self.caches: list[Any] = []
        self.active = False
        self.done: set[str] = set()
        self.hook = PostImportHook(dict.fromkeys(_WATCHED, self._on_import))
        self._unsubscribe: Callable[[], None] = _nothing

    def start(self) -> None:
        self.active = True
        self._unsubscribe = self.router.on_failover(self._on_failover)
        self.hook.enable()
        try:
            for name in _WATCHED:
                module = sys.modules.get(name)
                if module is not None:
                    self._patch(module)
            self.patches.sweep(loaded_modules("popoto"))
        except BaseException:
            self.stop()
            raise
        self._warn_stale_copies()

    def stop(self) -> None:
        self.active = False
        if self.binding is not None:
            self.binding.active = False
        self.hook.disable()
        self._unsubscribe()
        embedding = sys.modules.get("popoto.fields.embedding_field")
        if self.listeners is not None and embedding is not None:
            # Listener threads subscribed through tenants' pools: stop them all; Popoto
            # starts a fresh one on its own connection at the next search.
            embedding.stop_invalidation_listeners()
        skipped = self.patches.restore(loaded_modules("popoto"))
        for cache in self.caches:
            cache.clear()  # built from routed reads: stale for Popoto's own connection
        if skipped:
            logger.debug("redis_tenancy.popoto: changed by someone else, left as is: %s", skipped)

    # -- patching ------------------------------------------------------------------------

    def _on_import(self, module: ModuleType) -> None:
        with _lock:
            if self.active:
                self._patch(module)

    def _patch(self, module: ModuleType) -> None:
        name = module.__name__
        if name in self.done:
            return
        self.done.add(name)
        if name == "popoto.redis_db":
            self._patch_redis_db(module)
        elif name == "popoto.batch":
            self._patch_batch(module)
        elif name == "popoto.fields.existence_filter":
            self._patch_existence_filter(module)
        elif name == "popoto.fields.embedding_field":
            self._patch_embedding_field(module)
        elif name == "popoto.fields.content_field":
            self._patch_content_field(module)

    def _patch_redis_db(self, module: ModuleType) -> None:
        binding = self.binding = Binding(self.router, module, self.scripts)
        replace = self.patches.replace
        replace(module, "POPOTO_REDIS_DB", binding.proxy, copies=True)
        replace(module, "_POPOTO_ASYNC_REDIS_DB", binding.async_proxy, copies=True)
        replace(module, "get_REDIS_DB", binding.get_REDIS_DB, copies=True)
        replace(module, "get_async_redis_db", binding.get_async_redis_db, copies=True)
        replace(module, "set_REDIS_DB_settings", self.set_REDIS_DB_settings, copies=True)
        replace(
            module, "set_async_redis_db_settings", self.set_async_redis_db_settings, copies=True
        )
        replace(module, "run_lua", binding.run_lua, copies=True)

    def _patch_batch(self, module: ModuleType) -> None:
        assert self.binding is not None, "popoto.batch imports popoto.redis_db first"
        get_client = self.binding.get_REDIS_DB
        batch_class = recovering(module.Batch, self.scripts)
        namespaced_batch_class = namespaced_pipeline_class(batch_class, self.scripts)

        def batch(transaction: bool = True) -> Any:
            """``popoto.batch()`` on the active tenant's client (see ``popoto.batch``)."""
            return open_pipeline(
                get_client(), batch_class, namespaced_batch_class, transaction, None
            )

        self.patches.replace(module, "batch", batch, copies=True)

    def _patch_existence_filter(self, module: ModuleType) -> None:
        """Popoto 1.10's bloom-rebuild lock renewer thread: run it under its starter's tenant.

        ``Model.rebuild_indexes(bloom_hash_version=2)`` renews its locks from a thread
        it starts; threads do not inherit context variables, so without this the
        renewals would go to the default tenant and the tenant's locks would lapse.
        """
        renewer = getattr(module, "BloomLockRenewer", None)
        if renewer is None:  # Popoto 1.9 has no such thread
            return
        original_enter = vars(renewer)["__enter__"]
        original_run = vars(renewer)["_run"]

        def __enter__(self: Any) -> Any:
            vars(self)[_CONTEXT] = contextvars.copy_context()
            return original_enter(self)

        def _run(self: Any) -> None:
            context = vars(self).get(_CONTEXT)
            if context is None:
                original_run(self)
            else:
                context.run(original_run, self)

        self.patches.replace(renewer, "__enter__", __enter__)
        self.patches.replace(renewer, "_run", _run)

    def _patch_embedding_field(self, module: ModuleType) -> None:
        module.stop_invalidation_listeners()  # started on Popoto's own connection
        replace = self.patches.replace
        original_dir = module._get_embeddings_dir
        replace(module, "_get_embeddings_dir", self.state.embeddings_dir(original_dir), copies=True)
        self.caches.append(module._embedding_cache)
        replace(module, "_embedding_cache", TenantKeyedDict(self.state.current))
        self.listeners = TenantKeyedDict(self.state.current)
        replace(module, "_listener_threads", self.listeners)

    def _patch_content_field(self, module: ModuleType) -> None:
        state = self.state
        original_get = module.get_default_store

        def filesystem_store() -> Any:
            stores = sys.modules.get("popoto.stores.filesystem")
            return getattr(stores, "FilesystemStore", None)

        def get_default_store() -> Any:
            """Popoto's default content store, split by tenant (see redis_tenancy.popoto)."""
            return state.store(original_get(), filesystem_store(), "ContentField's default store")

        def store(field: Any) -> Any:
            own = field._store
            if own is None:
                return get_default_store()
            return state.store(own, filesystem_store(), f"the store of ContentField {field.name!r}")

        self.patches.replace(module, "get_default_store", get_default_store, copies=True)
        original = vars(module.ContentField)["store"]
        self.patches.replace(module.ContentField, "store", property(store, doc=original.__doc__))

    # -- Popoto's setters ----------------------------------------------------------------

    def set_REDIS_DB_settings(
        self, env_partition_name: str | None = "", *args: Any, **kwargs: Any
    ) -> None:
        """Register tenant ``env_partition_name`` (``""``: the default) or replace it."""
        before = self._endpoint(env_partition_name)
        self.router.register(env_partition_name, *args, **kwargs)
        self.scripts.forget(before, self._endpoint(env_partition_name))

    async def set_async_redis_db_settings(
        self, env_partition_name: str | None = "", *args: Any, **kwargs: Any
    ) -> None:
        """Override the async side of tenant ``env_partition_name`` (registering it if new).

        The router closes the old pools itself (idle connections at once, each on its
        own event loop)."""
        before = self._endpoint(env_partition_name)
        self.router.register_async(env_partition_name, *args, **kwargs)
        self.scripts.forget(before, self._endpoint(env_partition_name))

    def _endpoint(self, name: str | None) -> str | None:
        key = self.router.canonical(name)
        return self.router.settings(key).endpoint if key in self.router else None

    # -- events --------------------------------------------------------------------------

    def _on_failover(self, event: FailoverEvent) -> None:
        if self.binding is not None:
            self.binding.forget_endpoints()
        self.scripts.forget(event.from_endpoint, event.to_endpoint)

    def _warn_stale_copies(self) -> None:
        """Name modules outside Popoto that copied Popoto's client before ``install()``."""
        redis_db = sys.modules.get("popoto.redis_db")
        if redis_db is None:
            return
        client = self.patches.original(redis_db, "POPOTO_REDIS_DB")
        getter = self.patches.original(redis_db, "get_async_redis_db")
        stale = []
        for module in list(sys.modules.values()):
            namespace = getattr(module, "__dict__", None)
            if not isinstance(namespace, dict):
                continue
            name = str(namespace.get("__name__", ""))
            if name.split(".")[0] in ("popoto", "src"):
                continue
            for value in list(namespace.values()):
                if value is client or value is getter:
                    stale += [f"{name}.{k}" for k, v in namespace.items() if v is value]
        if stale:
            logger.warning(
                "redis_tenancy.popoto: %s copied Popoto's connection before install() and "
                "will not follow the active tenant; import it after install() or use "
                "popoto.redis_db.get_REDIS_DB() / get_async_redis_db() at call time",
                ", ".join(sorted(set(stale))),
            )
