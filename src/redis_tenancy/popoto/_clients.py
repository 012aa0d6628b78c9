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

**Namespaced tenants.** The router's client of a namespaced tenant is a
``NamespacedRedis`` (``AsyncNamespacedRedis``) over a pool that many tenants share; a
``GuardedRedis`` over that pool would write outside the namespace. Its view is
therefore a class deriving from both the view class above and the namespaced client
(built with the namespaced client's public ``wrap()``), so Popoto's guard runs first
and every command is then rewritten into the namespace; its pipelines (and
``batch()``) derive from the recovering guarded pipeline and ``NamespacedPipeline``
(recovery re-runs the *wrapped* script body), its pub/sub from ``TenantPubSub`` and
``NamespacedPubSub``, and its async pipelines from ``GuardedAsyncPipeline`` and
``AsyncNamespacedPipeline`` (Popoto's ``pipeline()`` would reassign ``__class__`` and
lose the namespace). The guard keeps refusing ``FLUSHALL``; ``FLUSHDB`` goes to the
namespace, which empties only the tenant's keys, so it is allowed on database 0 too
(:func:`_flush_in_namespace`).

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
import redis.asyncio.client
import redis.asyncio.cluster
import redis.client
import redis.cluster
from redis.commands.core import Script

from .. import PopotoException, Router, copy_tenant_context
from .._nsclient import NamespacedPipeline, NamespacedPubSub, NamespacedRedis
from .._nsclient_async import AsyncNamespacedPipeline, AsyncNamespacedRedis
from ._errors import ClusterTenantError, PoolSwapRefusedError
from ._scripts import ScriptRegistry, retry_commands

__all__ = ["Binding", "namespaced_pipeline_class", "open_pipeline", "recovering"]

_CLUSTERS = (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster)
_NAMESPACED = (NamespacedRedis, AsyncNamespacedRedis)
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
        self.namespaced_pipeline_class = namespaced_pipeline_class(self.pipeline_class, scripts)
        self.client_class = _client_class(
            redis_db.GuardedRedis, self.pipeline_class, self.namespaced_pipeline_class, self
        )
        self.namespaced_client_class = _namespaced_client_class(self.client_class)
        self.async_client_class = _async_client_class(redis_db.GuardedAsyncRedis, self)
        self.namespaced_async_client_class = _namespaced_async_client_class(
            self.async_client_class, redis_db.GuardedAsyncPipeline
        )
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
            view = self._new_view(
                concrete, self._views, self.client_class, self.namespaced_client_class
            )
            return cast(redis.Redis, view)

    def async_view(self) -> redis.asyncio.Redis:
        """The active tenant's guarded async client for the running event loop."""
        concrete = self.router.async_client()
        try:
            return cast(redis.asyncio.Redis, self._async_views[concrete])
        except KeyError:
            view = self._new_view(
                concrete,
                self._async_views,
                self.async_client_class,
                self.namespaced_async_client_class,
            )
            return cast(redis.asyncio.Redis, view)

    async def get_async_redis_db(self) -> redis.asyncio.Redis:
        """Popoto's ``await get_async_redis_db()``: :meth:`async_view` for the running loop.

        Popoto resets its cache ``_POPOTO_ASYNC_REDIS_DB`` to ``None`` to have it rebuilt
        lazily (pytest plugin, ``StreamConsumer``); the rebuild is putting the proxy back.
        """
        if self.active and self.redis_db._POPOTO_ASYNC_REDIS_DB is None:
            self.redis_db._POPOTO_ASYNC_REDIS_DB = self.async_proxy
        return self.async_view()

    def _new_view(self, concrete: Any, views: Any, cls: type, namespaced_cls: Any) -> Any:
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
                if isinstance(concrete, _NAMESPACED):
                    # Same pool, same namespace: never a plain client over a shared pool.
                    view = namespaced_cls.wrap(concrete, concrete.namespace)
                else:
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
        pipeline recovers if the endpoint turns out not to have it. A namespaced
        pipeline runs the script wrapped in the namespace's prelude, so what the
        endpoint must have (and what is recorded) is the wrapped SHA; the namespaced
        client loads the wrapped text and the pipeline translates the caller's SHA.
        Anything else goes through redis-py's ``Script``, which reloads on
        ``NoScriptError`` by itself.
        """
        if isinstance(client, redis.client.Pipeline):
            sha = self.scripts.sha(script_text)
            on_server = (
                self.scripts.wrapped_sha(script_text)
                if isinstance(client, NamespacedPipeline)
                else sha
            )
            endpoint = self.endpoint()
            if not self.scripts.loaded(endpoint, on_server):
                self.get_REDIS_DB().script_load(script_text)
                self.scripts.mark(endpoint, on_server)
            return client.evalsha(sha, numkeys, *keys_and_args)
        keys = list(keys_and_args[:numkeys])
        args = list(keys_and_args[numkeys:])
        return self.script(script_text)(keys=keys, args=args, client=client)


class _ScriptRecovery:
    """Pipeline mixin: re-run the ``EVALSHA`` commands the server did not know, as ``EVAL``."""

    _scripts: ScriptRegistry
    #: The body of an ``EVALSHA`` of the stack by its SHA (caller's or wrapped text).
    _script_text: Callable[[str], str | bytes | None]
    command_stack: list[Any]
    scripts: set[Script]
    connection_pool: Any
    response_callbacks: Any

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack = list(self.command_stack)
        if self.scripts:  # queued through redis-py's Script: learn their bodies
            self._scripts.remember({s.sha: s.script for s in self.scripts})
        results: list[Any] = super().execute(False)  # type: ignore[misc]
        retry = retry_commands(self._script_text, stack, results)
        if retry:
            # The commands are as they were sent (a namespaced pipeline's already
            # rewritten): a plain pipeline re-runs them as they are.
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
    return _with_recovery("TenantPipeline", guarded_pipeline, scripts)


def recovering(batch_class: type, scripts: ScriptRegistry) -> type:
    """A subclass of Popoto's ``Batch`` (1.10+) that recovers like our pipelines."""
    return _with_recovery("TenantBatch", batch_class, scripts)


def _with_recovery(name: str, base: type, scripts: ScriptRegistry) -> type:
    return type(
        name,
        (_ScriptRecovery, base),
        {
            "__module__": __name__,
            "_scripts": scripts,
            "_script_text": scripts.text,
            "__doc__": base.__doc__,
        },
    )


def namespaced_pipeline_class(pipeline_class: type[Any], scripts: ScriptRegistry) -> type:
    """``pipeline_class`` (a recovering ``TenantPipeline`` or ``TenantBatch``) confined
    to a namespace: instances take the ``Namespace`` as a fifth constructor argument.

    Popoto's guard runs first, then ``NamespacedPipeline`` rewrites the command as it
    is queued; recovery looks up wrapped script bodies, since the stack holds the
    wrapped SHAs the namespace sent.
    """
    return type(
        f"Namespaced{pipeline_class.__name__}",
        (pipeline_class, NamespacedPipeline),
        {
            "__module__": __name__,
            "__doc__": f"{pipeline_class.__name__} in a tenant's namespace.",
            "_script_text": scripts.wrapped_text,
            "execute_command": _flush_in_namespace(
                pipeline_class.execute_command, redis.client.Pipeline.execute_command
            ),
        },
    )


def open_pipeline(
    client: Any, plain: type, namespaced: type, transaction: bool, shard_hint: Any
) -> Any:
    """A ``plain`` pipeline over ``client``'s pool, or a ``namespaced`` one in its
    namespace when ``client`` is a namespaced tenant's view."""
    if isinstance(client, NamespacedRedis):
        return namespaced(
            client.connection_pool,
            client.response_callbacks,
            transaction,
            shard_hint,
            client.namespace,
        )
    return plain(client.connection_pool, client.response_callbacks, transaction, shard_hint)


def _is_flushdb(name: Any) -> bool:
    """Whether Popoto's guard would take command ``name`` for ``FLUSHDB`` (it strips
    and upper-cases it). The length test keeps the common short names cheap."""
    if name.__class__ is bytes:
        name = name.decode("utf-8", "replace")
    return isinstance(name, str) and len(name) >= 7 and name.strip().upper() == "FLUSHDB"


def _flush_in_namespace(
    guarded: Callable[..., Any], namespaced: Callable[..., Any]
) -> Callable[..., Any]:
    """``execute_command`` of a namespaced view: ``FLUSHDB`` skips Popoto's db-0 guard.

    The guard refuses ``FLUSHDB`` on database 0 because it would wipe every key there.
    A namespaced tenant's ``FLUSHDB`` deletes only the keys of its namespace (the
    namespaced client emulates it with SCAN and UNLINK; a pipeline refuses it with
    ``NamespaceError``), so it goes straight to ``namespaced``, the namespaced class's
    own ``execute_command``. Everything else, ``FLUSHALL`` included, goes through
    ``guarded`` (Popoto's guard, then the namespace).
    """

    def execute_command(self: Any, *args: Any, **options: Any) -> Any:
        if args and _is_flushdb(args[0]):
            return namespaced(self, *args, **options)
        return guarded(self, *args, **options)

    return execute_command


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


def _client_class(
    guarded_redis: type, pipeline_class: type, namespaced_pipeline: type, binding: Binding
) -> type:
    def pipeline(self: Any, transaction: bool = True, shard_hint: Any = None) -> Any:
        return open_pipeline(self, pipeline_class, namespaced_pipeline, transaction, shard_hint)

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


def _namespaced_client_class(client_class: type[Any]) -> type:
    """The view of a namespaced tenant: ``client_class`` (Popoto's guard, pool-swap
    refusal, recovering pipelines) over ``NamespacedRedis``; made with ``wrap()``."""

    def pubsub(self: Any, **kwargs: Any) -> redis.client.PubSub:
        return TenantNamespacedPubSub(self.connection_pool, namespace=self.namespace, **kwargs)

    return type(
        "TenantGuardedNamespacedRedis",
        (client_class, NamespacedRedis),
        {
            "__module__": __name__,
            "__doc__": "A namespaced tenant's client with Popoto's guard (FLUSHDB: the "
            "namespace's keys only).",
            "execute_command": _flush_in_namespace(
                client_class.execute_command, NamespacedRedis.execute_command
            ),
            "pubsub": pubsub,
        },
    )


def _namespaced_async_client_class(
    async_client_class: type[Any], guarded_pipeline: type[Any]
) -> type:
    """The async view of a namespaced tenant (see :func:`_namespaced_client_class`).

    Popoto's ``GuardedAsyncRedis.pipeline()`` reassigns the pipeline's ``__class__`` to
    its plain guarded pipeline, which would drop the namespace: pipelines here are
    built as a class deriving from both instead.
    """
    pipeline_class = type(
        "TenantGuardedNamespacedAsyncPipeline",
        (guarded_pipeline, AsyncNamespacedPipeline),
        {
            "__module__": __name__,
            "__doc__": "A namespaced tenant's async pipeline with Popoto's guard.",
            "execute_command": _flush_in_namespace(
                guarded_pipeline.execute_command, redis.asyncio.client.Pipeline.execute_command
            ),
        },
    )

    def pipeline(self: Any, transaction: bool = True, shard_hint: Any = None) -> Any:
        return pipeline_class(
            self.connection_pool, self.response_callbacks, transaction, shard_hint, self.namespace
        )

    return type(
        "TenantGuardedNamespacedAsyncRedis",
        (async_client_class, AsyncNamespacedRedis),
        {
            "__module__": __name__,
            "__doc__": "A namespaced tenant's async client for one loop, with Popoto's guard.",
            "execute_command": _flush_in_namespace(
                async_client_class.execute_command, AsyncNamespacedRedis.execute_command
            ),
            "pipeline": pipeline,
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


class TenantNamespacedPubSub(TenantPubSub, NamespacedPubSub):
    """A namespaced tenant's ``PubSub``: channels in its namespace (``NamespacedPubSub``),
    handlers run under the tenant that subscribed them (``TenantPubSub``)."""
