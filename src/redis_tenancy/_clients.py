"""Building (and retiring) the redis-py clients behind a backend, for each topology.

One function per side reads the :class:`~redis_tenancy._settings.Topology` and makes the
client redis-py itself offers for it, so Sentinel and Cluster tenants get redis-py's
own ``Sentinel.master_for`` and ``RedisCluster`` rather than an imitation:

- ``standalone``: ``redis.Redis`` whose pool opens
  :class:`~redis_tenancy._connection.ManagedConnection` s following the backend's
  :class:`~redis_tenancy._failover.EndpointPlan` (even with no failover URL yet, so one
  can be added at runtime without rebuilding anything);
- ``custom``: a unix socket (tracked connections, no failover), or the caller's own
  pool or connection class, used exactly as given;
- ``sentinel``: ``Sentinel(nodes, **kwargs).master_for(service)``, tracked;
- ``cluster``: ``RedisCluster(startup_nodes=..., **kwargs)``.

These are *templates*: tenants never use them directly but get cheap copies whose pool
is their own view of the template's pool (:mod:`redis_tenancy._lease`).

The pools are configured through redis-py's public extension points before their first
use: ``connection_class`` (the class the pool instantiates) and ``connection_kwargs``
(what it passes to it). redis-py offers no public way to build a pool from client
keywords other than ``redis.Redis(**kwargs)`` itself, whose mapping (TLS, unix
sockets, maintenance notifications, client-side caching) is not ours to copy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.driver_info import resolve_driver_info

from ._budget import ConnectionBudget
from ._connection import PoolState, tracked_class
from ._failover import EndpointPlan
from ._loops import on_loop, spawn
from ._settings import Topology

__all__ = [
    "build",
    "close_async",
    "is_cluster",
    "pool_of",
    "retire_async",
    "retire_sync",
    "tenant_copy",
]


class _AsyncSentinelMaster(redis.asyncio.Redis):
    """``master_for``'s client, closing its private ``Sentinel``'s connections with its pool.

    redis-py's ``aclose`` closes only the master pool; the connections the pool opened
    to the sentinels (to look the master up) would stay open until garbage collection,
    which for asyncio means a ``ResourceWarning`` after the loop has gone.
    """

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            if close_connection_pool or (
                close_connection_pool is None and self.auto_close_connection_pool
            ):
                for sentinel in _sentinel_clients(self):
                    await sentinel.aclose()


@dataclass(frozen=True, slots=True)
class _Side:
    """redis-py's classes for one side (sync or async)."""

    redis: type
    sentinel: type
    master: type
    cluster: type
    node: type


_SYNC = _Side(
    redis.Redis,
    redis.sentinel.Sentinel,
    redis.Redis,
    redis.cluster.RedisCluster,
    redis.cluster.ClusterNode,
)
_ASYNC = _Side(
    redis.asyncio.Redis,
    redis.asyncio.sentinel.Sentinel,
    _AsyncSentinelMaster,
    redis.asyncio.cluster.RedisCluster,
    redis.asyncio.cluster.ClusterNode,
)


def build(
    kwargs: Mapping[str, Any],
    topology: Topology,
    plan: Callable[[], EndpointPlan],
    state: PoolState,
    budget: ConnectionBudget | None = None,
    *,
    asynchronous: bool = False,
) -> Any:
    """A template client for these settings, sync or ``asynchronous``.

    Opens no socket, except a sync ``RedisCluster``, which reads the slot map as it is
    built.
    """
    side = _ASYNC if asynchronous else _SYNC
    kind = topology.kind
    if kind == "sentinel":
        return _master(side, kwargs, topology, state)
    if kind == "cluster":
        nodes = [side.node(h, p) for h, p in topology.nodes]
        return side.cluster(startup_nodes=nodes, **kwargs)
    client = side.redis(**_with_driver_info(kwargs))
    # Its pool is closed by retire_sync/retire_async, idle connections first and busy
    # ones as their commands end; redis-py's own close-on-garbage-collection would
    # disconnect connections other threads are using.
    client.auto_close_connection_pool = False
    _track(client.connection_pool, kind, kwargs, plan, state, budget)
    return client


def _master(side: _Side, kwargs: Mapping[str, Any], topology: Topology, state: PoolState) -> Any:
    """``Sentinel(nodes, **kwargs).master_for(service)``, its connections tracked."""
    sentinel = side.sentinel(
        list(topology.nodes), sentinel_kwargs=_sentinel_kwargs(kwargs, topology), **kwargs
    )
    client = sentinel.master_for(
        topology.service,
        redis_class=side.master,
        connection_class=tracked_class(redis.sentinel.SentinelManagedConnection)
        if side is _SYNC
        else tracked_class(redis.asyncio.sentinel.SentinelManagedConnection),
        pool_state=state,
    )
    state.attach(client.connection_pool)
    return client


def _track(
    pool: Any,
    kind: str,
    kwargs: Mapping[str, Any],
    plan: Callable[[], EndpointPlan],
    state: PoolState,
    budget: ConnectionBudget | None,
) -> None:
    """Make a pool redis-py just built (and nobody used) open the router's connections."""
    if "connection_pool" in kwargs:
        return  # the caller's own pool: used exactly as given
    cls = tracked_class(pool.connection_class)
    if cls is None:
        return  # the caller's own connection class, likewise
    extra: dict[str, Any] = {"pool_state": state}
    if kind == "standalone":
        extra["plan"] = plan()
        if budget is not None:
            extra["budget"] = budget
    pool.connection_class = cls
    pool.connection_kwargs.update(extra)
    state.attach(pool)


def _sentinel_clients(client: Any) -> list[Any]:
    """The clients to the sentinels behind a ``master_for`` client (else none)."""
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    return list(getattr(manager, "sentinels", ()))


#: redis-py reads its package metadata for CLIENT SETINFO on every client it builds
#: (~0.3 ms); the answer never changes, so it is read once here and shared.
_DRIVER_INFO = resolve_driver_info()


def _with_driver_info(kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    if "driver_info" in kwargs or "lib_name" in kwargs or "lib_version" in kwargs:
        return kwargs
    return {**kwargs, "driver_info": _DRIVER_INFO}


def _sentinel_kwargs(kwargs: Mapping[str, Any], topology: Topology) -> dict[str, Any]:
    # redis-py's default: only the socket options reach the sentinels (no password).
    if topology.sentinel_kwargs is not None:
        return dict(topology.sentinel_kwargs)
    return {k: v for k, v in kwargs.items() if k.startswith("socket_")}


def is_cluster(client: object) -> bool:
    """True for sync and async ``RedisCluster`` clients."""
    return isinstance(client, redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster)


def pool_of(client: Any) -> Any:
    """A template's connection pool (``None`` for a cluster client: its nodes own theirs)."""
    return None if is_cluster(client) else client.connection_pool


def tenant_copy(template: Any, pool: Any) -> Any:
    """A tenant's own client: a shallow copy of ``template`` talking through ``pool``.

    ``copy.copy`` is Python's copy protocol, not redis-py's: the copy shares the
    template's response callbacks, encoder settings and event dispatcher (as clients
    sharing one pool always did) and costs a few microseconds instead of the ~200 µs
    and ~15 KB of a new ``redis.Redis(connection_pool=...)``. It never closes the
    shared pool: ``close()`` on a tenant's client leaves the other tenants alone.
    """
    client = copy.copy(template)
    client.connection_pool = pool
    client.auto_close_connection_pool = False
    return client


async def close_async(client: Any) -> None:
    """Close an async template and its pool (its loop is shutting down)."""
    if is_cluster(client):
        await client.aclose()
    else:
        await client.aclose(close_connection_pool=True)


def retire_sync(client: Any, state: PoolState) -> None:
    """Close a template the router no longer routes to: a cluster at once; otherwise idle
    connections now and busy ones as their commands end (they see ``retired`` when
    released), none of them ever reconnecting."""
    state.retired = True
    if is_cluster(client):
        client.close()
        return
    pool = client.connection_pool
    if state.pool() is pool:  # ours (not a caller's own pool)
        pool.disconnect(inuse_connections=False)
    for sentinel in _sentinel_clients(client):
        sentinel.close()  # its own Sentinel's: only used to look the master up


def retire_async(client: Any, state: PoolState, loop: Any) -> None:
    """The async twin of :func:`retire_sync`, run on the client's own loop (from any
    thread): idle connections close as soon as the loop gets to it."""
    state.retired = True
    if is_cluster(client):
        on_loop(loop, lambda: spawn(client.aclose()))
        return
    pool = client.connection_pool
    if state.pool() is pool:
        on_loop(loop, lambda: spawn(pool.disconnect(inuse_connections=False)))
