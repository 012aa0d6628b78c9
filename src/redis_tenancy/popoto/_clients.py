"""The clients Popoto's code gets under the integration: a tenant's, with Popoto's guard.

Popoto builds its clients as ``GuardedRedis`` / ``GuardedAsyncRedis``, which refuse
``FLUSHDB`` on database 0 and ``FLUSHALL``. The router builds plain redis-py clients,
so for each tenant client the integration makes a *view*: a ``GuardedRedis`` subclass
constructed over the very same connection pool (redis-py's public
``Redis(connection_pool=...)``), so commands go through the router's pool, failover
plan and budget, and through Popoto's guard. Views are kept per router client in a
``WeakKeyDictionary``: they live as long as the client they view and hold only its
pool, never a tenant name (tenants with identical settings may share a client).

A view also

- makes pipelines of a class that recovers from ``NoScriptError`` (see ``_scripts``),
  built with redis-py's public ``Pipeline(pool, callbacks, transaction, shard_hint)``
  constructor rather than by reassigning ``__class__`` as Popoto does;
- makes ``pubsub()`` objects whose message and exception handlers run in the context
  (so under the tenant) of the code that subscribed them, also in
  ``run_in_thread`` worker threads, which do not inherit context variables;
- refuses to have its ``connection_pool`` rebound to another place (Popoto's in-place
  pool swaps); a swap to the place it already uses changes nothing and is accepted.

``POPOTO_REDIS_DB`` and ``_POPOTO_ASYNC_REDIS_DB`` become proxies over the active
tenant's view, built like the router's proxies: instances of the client class whose
``__getattribute__`` resolves on every access, so ``isinstance(x, GuardedRedis)``
still holds.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import Any, cast

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.client
import redis.cluster
from redis.commands.core import Script

from .. import PopotoException, Router, copy_tenant_context
from ._errors import ClusterTenantError, PoolSwapRefusedError
from ._scripts import ScriptRegistry, retry_commands

__all__ = ["Binding"]

_CLUSTERS = (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster)
_BOUND = "_redis_tenancy_bound"


class Binding:
    """Popoto's view of one router: guarded tenant clients, proxies and scripts.

    Args:
        router: whose active tenant every call resolves.
        redis_db: the loaded ``popoto.redis_db`` module (for its guarded classes).
        scripts: the per-endpoint script registry.
    """

    def __init__(self, router: Router, redis_db: ModuleType, scripts: ScriptRegistry) -> None:
        self.router = router
        self.scripts = scripts
        self.redis_db: Any = redis_db
        #: Cleared by uninstall(): a stale reference to a method must not re-patch.
        self.active = True
        self._lock = threading.Lock()
        self._views: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._async_views: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._script_objects: dict[str, Script] = {}
        # id(settings) -> (settings, active endpoint); emptied on every failover event.
        self._endpoints: dict[int, tuple[Any, str]] = {}
        self._generation = 0
        self.pipeline_class = _pipeline_class(redis_db.GuardedPipeline, scripts)
        self.client_class = _client_class(redis_db.GuardedRedis, self.pipeline_class, self)
        self.async_client_class = _async_client_class(redis_db.GuardedAsyncRedis, self)
        self.proxy: redis.Redis = _make_proxy(
            self.client_class, self.get_REDIS_DB, "POPOTO_REDIS_DB"
        )
        self.async_proxy: redis.asyncio.Redis = _make_proxy(
            self.async_client_class, self.async_view, "_POPOTO_ASYNC_REDIS_DB"
        )

    # -- the active tenant's clients (hot paths) -------------------------------------

    def get_REDIS_DB(self) -> redis.Redis:
        """The active tenant's guarded client (Popoto's ``get_REDIS_DB()``)."""
        concrete = self.router.client()
        try:
            return cast(redis.Redis, self._views[concrete])
        except KeyError:
            return cast(redis.Redis, self._new_view(concrete, self._views, self.client_class))

    def async_view(self) -> redis.asyncio.Redis:
        """The active tenant's guarded async client for the running event loop."""
        concrete = self.router.async_client()
        try:
            return cast(redis.asyncio.Redis, self._async_views[concrete])
        except KeyError:
            view = self._new_view(concrete, self._async_views, self.async_client_class)
            return cast(redis.asyncio.Redis, view)

    async def get_async_redis_db(self) -> redis.asyncio.Redis:
        """Popoto's ``await get_async_redis_db()``: :meth:`async_view` for the running loop.

        Popoto resets its cache ``_POPOTO_ASYNC_REDIS_DB`` to ``None`` to have it rebuilt
        lazily (pytest plugin, ``StreamConsumer``); the rebuild is putting the proxy back.
        """
        if self.active and self.redis_db._POPOTO_ASYNC_REDIS_DB is None:
            self.redis_db._POPOTO_ASYNC_REDIS_DB = self.async_proxy
        return self.async_view()

    def _new_view(self, concrete: Any, views: Any, cls: type) -> Any:
        if isinstance(concrete, _CLUSTERS):
            raise ClusterTenantError(
                f"tenant {self.router.current()!r} is a Redis Cluster tenant "
                f"({self.router.settings().endpoint}); Popoto models need a standalone or "
                "Sentinel tenant: Popoto joins writes to transactions with "
                "isinstance(pipeline, redis.client.Pipeline), which a ClusterPipeline is "
                "not, and runs multi-key Lua scripts and MULTI/EXEC across hash slots"
            )
        with self._lock:
            view = views.get(concrete)
            if view is None:
                view = cls(connection_pool=concrete.connection_pool)
                views[concrete] = view
        return view

    # -- who is active, for scripts and messages --------------------------------------

    def endpoint(self) -> str:
        """The redacted URL of the endpoint the active tenant's connections go to now.

        ``Router.status()`` builds a report on every call (~20 µs); the answer only
        changes when the tenant's settings are replaced (a new settings object) or a
        failover event fires (:meth:`forget_endpoints`), so it is kept per settings.
        """
        settings = self.router.settings()
        kept = self._endpoints.get(id(settings))
        if kept is not None and kept[0] is settings:
            return kept[1]
        generation = self._generation
        endpoint = self.router.status().active or settings.endpoint
        if generation == self._generation:  # no failover while we asked
            if len(self._endpoints) >= 4096:
                self._endpoints.clear()
            self._endpoints[id(settings)] = (settings, endpoint)
        return endpoint

    def forget_endpoints(self) -> None:
        """A tenant switched endpoints: ask the router again next time."""
        self._generation += 1
        self._endpoints.clear()

    def describe(self) -> str:
        """``tenant 'acme' (redis://host:port/db)`` for error messages (redacted)."""
        try:
            return f"tenant {self.router.current()!r} ({self.router.settings().endpoint})"
        except PopotoException:
            return "the active tenant"

    def script(self, text: str) -> Script:
        """A redis-py ``Script`` for ``text`` bound to the proxy, so it follows the tenant."""
        try:
            return self._script_objects[text]
        except KeyError:
            return self._script_objects.setdefault(text, Script(self.proxy, text))

    # -- Popoto's run_lua ------------------------------------------------------------

    def run_lua(self, client: Any, script_text: str, numkeys: int, *keys_and_args: Any) -> Any:
        """``popoto.redis_db.run_lua`` with the script cache per endpoint.

        On a pipeline the script is loaded (``SCRIPT LOAD``) on the active tenant's
        endpoint the first time it is queued there, then queued as ``EVALSHA``; the
        pipeline recovers if the endpoint turns out not to have it. Anything else goes
        through redis-py's ``Script``, which reloads on ``NoScriptError`` by itself.
        """
        if isinstance(client, redis.client.Pipeline):
            sha = self.scripts.sha(script_text)
            endpoint = self.endpoint()
            if not self.scripts.loaded(endpoint, sha):
                self.get_REDIS_DB().script_load(script_text)
                self.scripts.mark(endpoint, sha)
            return client.evalsha(sha, numkeys, *keys_and_args)
        keys = list(keys_and_args[:numkeys])
        args = list(keys_and_args[numkeys:])
        return self.script(script_text)(keys=keys, args=args, client=client)


class _ScriptRecovery:
    """Pipeline mixin: re-run the ``EVALSHA`` commands the server did not know, as ``EVAL``."""

    _scripts: ScriptRegistry
    command_stack: list[Any]
    scripts: set[Script]
    connection_pool: Any
    response_callbacks: Any

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack = list(self.command_stack)
        if self.scripts:  # queued through redis-py's Script: learn their bodies
            self._scripts.remember({s.sha: s.script for s in self.scripts})
        results: list[Any] = super().execute(False)  # type: ignore[misc]
        retry = retry_commands(self._scripts, stack, results)
        if retry:
            again = redis.client.Pipeline(
                self.connection_pool, self.response_callbacks, False, None
            )
            for _, command in retry:
                again.pipeline_execute_command(*command)
            for (index, _), result in zip(retry, again.execute(raise_on_error=False), strict=True):
                results[index] = result
        if raise_on_error:
            cast(Any, self).raise_first_error(stack, results)
        return results


def _pipeline_class(guarded_pipeline: type, scripts: ScriptRegistry) -> type:
    """``GuardedPipeline`` plus :class:`_ScriptRecovery`."""
    return type(
        "TenantPipeline",
        (_ScriptRecovery, guarded_pipeline),
        {"__module__": __name__, "_scripts": scripts, "__doc__": guarded_pipeline.__doc__},
    )


def recovering(batch_class: type, scripts: ScriptRegistry) -> type:
    """A subclass of Popoto's ``Batch`` (1.10+) that recovers like our pipelines."""
    return type(
        "TenantBatch",
        (_ScriptRecovery, batch_class),
        {"__module__": __name__, "_scripts": scripts, "__doc__": batch_class.__doc__},
    )


def _target(pool: Any) -> tuple[Any, ...]:
    """Where a pool's connections go: host, port (or unix path) and db."""
    kwargs = getattr(pool, "connection_kwargs", {})
    return (kwargs.get("host"), kwargs.get("port"), kwargs.get("path"), kwargs.get("db") or 0)


def _refuse_pool_swap(binding: Binding) -> Callable[[Any, str, Any], None]:
    def __setattr__(self: Any, name: str, value: Any) -> None:
        current = vars(self).get("connection_pool")
        if name == "connection_pool" and current is not None and value is not current:
            if _target(value) == _target(current):
                # Nothing to route: the tenant already talks to that place (the pytest
                # plugin re-asserting its test db). The tenant keeps the router's pool.
                return
            raise PoolSwapRefusedError(
                f"refused to replace the connection pool of {binding.describe()} in place "
                "(popoto.pytest_plugin._swap_db or popoto.integrations.config."
                "bind_connection?): under redis_tenancy.popoto.install() each tenant's "
                "pool belongs to the router and may be shared with other tenants. "
                "Register the tenant's new settings instead, e.g. "
                "set_REDIS_DB_settings('<tenant>', url='redis://host:6379/15')"
            )
        object.__setattr__(self, name, value)

    return __setattr__


def _client_class(guarded_redis: type, pipeline_class: type, binding: Binding) -> type:
    def pipeline(self: Any, transaction: bool = True, shard_hint: Any = None) -> Any:
        return pipeline_class(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )

    def pubsub(self: Any, **kwargs: Any) -> redis.client.PubSub:
        return TenantPubSub(self.connection_pool, **kwargs)

    return type(
        "TenantGuardedRedis",
        (guarded_redis,),
        {
            "__module__": __name__,
            "__doc__": "A tenant's client, over the router's pool, with Popoto's flush guard.",
            "pipeline": pipeline,
            "pubsub": pubsub,
            "__setattr__": _refuse_pool_swap(binding),
        },
    )


def _async_client_class(guarded_async_redis: type, binding: Binding) -> type:
    return type(
        "TenantGuardedAsyncRedis",
        (guarded_async_redis,),
        {
            "__module__": __name__,
            "__doc__": "A tenant's async client for one loop, with Popoto's flush guard.",
            "__setattr__": _refuse_pool_swap(binding),
        },
    )


def _bind(handler: Any) -> Any:
    """``handler`` run in the current context; already-bound handlers are kept as they are."""
    if not callable(handler) or getattr(handler, _BOUND, False):
        return handler
    bound = copy_tenant_context(handler)
    setattr(bound, _BOUND, True)
    return bound


class TenantPubSub(redis.client.PubSub):
    """A ``PubSub`` whose handlers run under the tenant that subscribed them.

    ``run_in_thread`` runs handlers in a worker thread that does not inherit context
    variables; without this, a handler touching tenant state (Popoto's embedding
    cache invalidation does) would act for the default tenant.
    """

    def subscribe(self, *args: Any, **kwargs: Any) -> Any:
        return super().subscribe(*args, **{k: _bind(v) for k, v in kwargs.items()})

    def psubscribe(self, *args: Any, **kwargs: Any) -> Any:
        return super().psubscribe(*args, **{k: _bind(v) for k, v in kwargs.items()})

    def ssubscribe(self, *args: Any, **kwargs: Any) -> Any:
        return super().ssubscribe(*args, **{k: _bind(v) for k, v in kwargs.items()})

    def run_in_thread(
        self,
        sleep_time: float = 0.0,
        daemon: bool = False,
        exception_handler: Callable[..., None] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> redis.client.PubSubWorkerThread:
        return super().run_in_thread(sleep_time, daemon, _bind(exception_handler), *args, **kwargs)


def _make_proxy(base: type, resolve: Callable[[], Any], what: str) -> Any:
    """One instance of a ``base`` subclass that forwards everything to ``resolve()``.

    ``base.__init__`` never runs. Dunder lookups that cannot resolve (no tenant in
    strict mode, a Cluster tenant) answer ``AttributeError`` so that introspection
    stays quiet; everything else raises the router's clear error.
    """

    def __getattribute__(self: Any, name: str) -> Any:
        try:
            target = resolve()
        except PopotoException:
            if name == "__class__":
                return object.__getattribute__(self, name)
            if name[:2] == "__" and name[-2:] == "__":
                raise AttributeError(f"{name}: {what} cannot resolve a client here") from None
            raise
        return getattr(target, name)

    def __setattr__(self: Any, name: str, value: Any) -> None:
        setattr(resolve(), name, value)

    def __delattr__(self: Any, name: str) -> None:
        delattr(resolve(), name)

    def __repr__(self: Any) -> str:
        try:
            return f"<{what} proxy {resolve()!r}>"
        except Exception:  # repr must never raise
            return f"<{what} proxy (unresolvable)>"

    def __dir__(self: Any) -> list[str]:
        try:
            return dir(resolve())
        except PopotoException:
            return dir(base)

    cls = type(
        f"{base.__name__}Proxy",
        (base,),
        {
            "__module__": __name__,
            "__doc__": f"{what} under redis_tenancy.popoto: the active tenant's client.",
            "__getattribute__": __getattribute__,
            "__setattr__": __setattr__,
            "__delattr__": __delattr__,
            "__repr__": __repr__,
            "__dir__": __dir__,
            # redis-py's __del__ would close the active tenant's client.
            "__del__": lambda self: None,
        },
    )
    return object.__new__(cls)
