"""Building a tenant's redis-py client from its settings, for each topology.

One function per side: it reads the :class:`~redis_tenancy._settings.Topology` and
makes the client redis-py itself offers for it, so Sentinel and Cluster tenants get
redis-py's own ``Sentinel.master_for`` and ``RedisCluster`` rather than an imitation:

- ``standalone``: ``redis.Redis`` whose pool opens
  :class:`~redis_tenancy._pool.ManagedConnection` s following the tenant's
  :class:`~redis_tenancy._failover.EndpointPlan` (even with no failover URL yet, so
  one can be added at runtime without rebuilding anything);
- ``custom`` (unix socket, caller's own pool or connection class): exactly as given;
- ``sentinel``: ``Sentinel(nodes, **kwargs).master_for(service)``;
- ``cluster``: ``RedisCluster(startup_nodes=..., **kwargs)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.driver_info import resolve_driver_info

from ._budget import ConnectionBudget
from ._failover import EndpointPlan
from ._pool import manage_pool
from ._settings import Topology

__all__ = [
    "build_async",
    "build_sync",
    "close_sync",
    "disconnect_idle_async",
    "disconnect_sync",
    "is_cluster",
    "retire_async",
    "retire_pool",
]


def build_sync(
    kwargs: Mapping[str, Any],
    topology: Topology,
    plan: Callable[[], EndpointPlan],
    budget: ConnectionBudget | None = None,
) -> Any:
    """A ``redis.Redis`` (or ``RedisCluster``) for these settings. Opens no socket,
    except ``RedisCluster``, which reads the slot map as it is built."""
    kind = topology.kind
    if kind == "sentinel":
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(topology.nodes), sentinel_kwargs=_sentinel_kwargs(kwargs, topology), **kwargs
        )
        return sentinel.master_for(  # type: ignore[no-untyped-call]
            topology.service, redis_class=redis.Redis
        )
    if kind == "cluster":
        nodes = [
            redis.cluster.ClusterNode(h, p)  # type: ignore[no-untyped-call]
            for h, p in topology.nodes
        ]
        return redis.cluster.RedisCluster(startup_nodes=nodes, **kwargs)
    client = redis.Redis(**_with_driver_info(kwargs))
    if kind == "standalone":
        manage_pool(client.connection_pool, plan(), budget)
    return client


def build_async(
    kwargs: Mapping[str, Any],
    topology: Topology,
    plan: Callable[[], EndpointPlan],
    budget: ConnectionBudget | None = None,
) -> Any:
    """The ``redis.asyncio`` twin of :func:`build_sync` (nothing connects here)."""
    kind = topology.kind
    if kind == "sentinel":
        sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(topology.nodes), sentinel_kwargs=_sentinel_kwargs(kwargs, topology), **kwargs
        )
        return sentinel.master_for(topology.service, redis_class=_AsyncSentinelMaster)
    if kind == "cluster":
        nodes = [redis.asyncio.cluster.ClusterNode(h, p) for h, p in topology.nodes]
        return redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, **kwargs)
    client = redis.asyncio.Redis(**_with_driver_info(kwargs))
    if kind == "standalone":
        manage_pool(client.connection_pool, plan(), budget)
    return client


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


def disconnect_sync(client: Any) -> None:
    """Close every connection of a sync client (``Router.close``)."""
    if isinstance(client, redis.cluster.RedisCluster):
        client.close()
    else:
        client.connection_pool.disconnect()


async def disconnect_idle_async(client: Any) -> None:
    """Close an async client's idle connections now; a cluster client, whose nodes own
    their pools, is closed with its event loop like every retired async client."""
    if not is_cluster(client):
        await client.connection_pool.disconnect(inuse_connections=False)


def close_sync(client: Any) -> None:
    """Close a client the router no longer routes to: at once for a cluster, else
    connection by connection as their commands end (:func:`retire_pool`)."""
    if isinstance(client, redis.cluster.RedisCluster):
        client.close()
        return
    retire_pool(client.connection_pool)
    for sentinel in _sentinel_clients(client):
        # Its own Sentinel's: only used to look the master up, reopened if needed.
        sentinel.close()


#: Close tasks started by retire_async, referenced until done (loops keep weak refs).
_CLOSING: set[asyncio.Future[Any]] = set()


def retire_async(client: Any) -> None:
    """Close an async client the router evicted, from its own (running) event loop.

    Idle connections close now, busy ones as their commands finish, as for sync pools.
    """
    if is_cluster(client):
        task = asyncio.ensure_future(client.aclose())
    else:
        pool = client.connection_pool
        release = pool.release

        async def release_closed(connection: Any) -> None:
            await connection.disconnect()  # still ours: nobody else can be using it
            await release(connection)

        pool.release = release_closed
        task = asyncio.ensure_future(pool.disconnect(inuse_connections=False))
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)


def retire_pool(pool: redis.ConnectionPool) -> None:
    """Close ``pool``'s idle connections now and each busy one as its command ends.

    The pool belongs to a client the router made and is about to forget, so its
    ``release`` is wrapped (on this instance only) to disconnect a connection before
    handing it back: the old server sees every connection of a replaced tenant go once
    the last command on it has finished, without waiting for garbage collection.
    redis-py's ``mark_for_reconnect`` is no help here: it reconnects at once.
    """
    release = pool.release

    def release_closed(connection: Any) -> None:
        connection.disconnect()  # still ours: nobody else can be using it
        release(connection)

    pool.release = release_closed  # type: ignore[method-assign]
    pool.disconnect(inuse_connections=False)
