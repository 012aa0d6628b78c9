"""A namespaced ``redis.asyncio.cluster.RedisCluster``: the asyncio twin of
:mod:`redis_tenancy._nscluster`.

Same decisions and same shared pieces (:func:`~redis_tenancy._nscluster.command_steps`,
the pipeline and pub/sub halves); only the I/O is awaited. Two differences are forced by
redis-py's asyncio cluster client:

- it connects lazily (``initialize()``), and a view must not initialize a copy of the
  shared client's state: the view's ``initialize()`` is the shared client's, and
  commands, pub/sub and emulations call it first;
- its pipeline queues without a coroutine, so a command missing from the key table
  cannot be looked up while it is queued: it is refused there with a typed error unless
  this server's ``COMMAND INFO`` was looked up already (any call on the client does it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

import redis.asyncio.cluster
from redis.exceptions import RedisClusterException

from ._errors import NamespaceError
from ._namespace import Lookup, Plan
from ._nsclient_async import AsyncNamespacedPubSub, command_info
from ._nscluster import (
    Fix,
    NamespacedClusterParts,
    NamespacedClusterPipelineParts,
    command_steps,
    fixed,
    shard_channels,
    shard_subscriptions,
)
from ._nsdriver import learned_for
from ._nsreplies import unprefix_parsed_message
from ._steps import arun_steps

__all__ = [
    "AsyncNamespacedClusterPipeline",
    "AsyncNamespacedClusterPubSub",
    "AsyncNamespacedRedisCluster",
    "ClusterNodePool",
]


class ClusterNodePool:
    """The two pool methods a ``COMMAND INFO`` lookup needs, over the connections of an
    asyncio ``ClusterNode`` (its public ``acquire_connection``/``release``), and the
    node's connection keywords, by which what was learned is kept per server."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.connection_kwargs = node.connection_kwargs

    async def get_connection(self) -> Any:
        return self.node.acquire_connection()

    async def release(self, connection: Any) -> None:
        self.node.release(connection)


# (mypy: two of redis-py's own asyncio base classes disagree on command_info's signature)
class AsyncNamespacedRedisCluster(  # type: ignore[misc]
    NamespacedClusterParts, redis.asyncio.cluster.RedisCluster
):
    """An asyncio ``RedisCluster`` confined to one namespace (see
    :class:`~redis_tenancy._nscluster.NamespacedRedisCluster`).

    Example::

        shared = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=7000)
        acme = AsyncNamespacedRedisCluster.wrap(shared, "{acme}:")
        await acme.mset({"a": 1, "b": 2})   # one slot: {acme}:a, {acme}:b
    """

    _base_class = redis.asyncio.cluster.RedisCluster

    async def aclose(self) -> None:
        if self._ns_owns_nodes:
            await self._ns_base.aclose()

    def __del__(self) -> None:  # type: ignore[override]
        """Silent: the shared client warns about itself if it is left unclosed."""

    async def initialize(self, *args: Any, **kwargs: Any) -> AsyncNamespacedRedisCluster:
        await self._ns_base.initialize(*args, **kwargs)
        return self

    def lookup_pool(self) -> ClusterNodePool:
        """The default node, where unknown commands are looked up."""
        return ClusterNodePool(self.get_default_node())

    def execute_command(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:  # type: ignore[override]
        """Rewrite ``args`` into the namespace and run them through the shared client
        (returns the awaitable: no coroutine of its own on the fast path)."""
        fast = self.namespace.fast(args)
        if fast is not None:
            return self._ns_base.execute_command(*fast, **kwargs)  # type: ignore[no-any-return]
        return self._slow(args, kwargs)

    async def _slow(self, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        await self.initialize()
        return await arun_steps(command_steps(self, args, options), self._step)

    async def _step(self, step: Any) -> Any:
        if isinstance(step, str):
            return await command_info(self.lookup_pool(), step)
        args, options = step
        return await self._ns_base.execute_command(*args, **options)

    def pipeline(
        self, transaction: Any = None, shard_hint: Any = None
    ) -> AsyncNamespacedClusterPipeline:
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        return AsyncNamespacedClusterPipeline(self, transaction)  # type: ignore[abstract]


async def _fixed_later(command: str, fix: Fix, pending: Awaitable[Any]) -> Any:
    return fixed(command, fix, await pending)


class AsyncNamespacedClusterPipeline(  # type: ignore[misc]
    NamespacedClusterPipelineParts, redis.asyncio.cluster.ClusterPipeline
):
    """A pipeline (or transaction) of an :class:`AsyncNamespacedRedisCluster`: queued on
    the shared client (whose redirections then retry the real, prefixed commands)."""

    def __init__(self, namespaced: AsyncNamespacedRedisCluster, transaction: Any = None) -> None:
        super().__init__(namespaced._ns_base, transaction)
        self._ns_setup(namespaced)

    def _ns_plan(self, args: tuple[Any, ...]) -> Plan:
        plan = self.namespace.plan(args)
        node = self._ns_client.get_default_node()
        if isinstance(plan, Lookup) and node is not None:
            plan = self.namespace.plan(args, learned_for(ClusterNodePool(node)))
        if isinstance(plan, Lookup):
            raise NamespaceError(
                plan.name.upper(),
                "is not in the key table and an asyncio Cluster pipeline cannot look it "
                "up while queueing: call it once on the client first",
            )
        return plan

    def _ns_ran(self, command: str, fix: Fix, result: Any) -> Any:
        return _fixed_later(command, fix, result)

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        fixes = self._ns_take_fixes()
        return self._ns_fixed(fixes, await super().execute(raise_on_error, allow_redirections))

    async def reset(self) -> None:  # type: ignore[override]
        await super().reset()  # type: ignore[no-untyped-call]
        self._ns_fixes = {}

    # redis-py's cluster pipeline queues these without its execute_command.
    async def watch(self, *names: Any) -> Any:  # type: ignore[override]
        return await super().watch(*self._ns_keys(names))  # type: ignore[no-untyped-call]

    async def unlink(self, *names: Any) -> Any:
        return await super().unlink(*self._ns_keys(names))  # type: ignore[no-untyped-call]

    def mset_nonatomic(  # type: ignore[override]
        self, mapping: Mapping[Any, Any]
    ) -> AsyncNamespacedClusterPipeline:
        super().mset_nonatomic({self.namespace.key(k): v for k, v in mapping.items()})
        return self


class AsyncNamespacedClusterPubSub(AsyncNamespacedPubSub, redis.asyncio.cluster.ClusterPubSub):
    """The asyncio twin of :class:`~redis_tenancy._nscluster.NamespacedClusterPubSub`.
    The shared client is initialized before the first command (the pub/sub picks its
    node from the client's slot table)."""

    async def execute_command(self, *args: Any) -> Any:
        await self.cluster.initialize()
        return await super().execute_command(*args)

    async def ssubscribe(self, *args: Any, **kwargs: Any) -> None:
        await self.cluster.initialize()
        await super().ssubscribe(*shard_subscriptions(self.namespace, args, kwargs))

    async def sunsubscribe(self, *args: Any, **kwargs: Any) -> None:
        await super().sunsubscribe(*shard_channels(self.namespace, args), **kwargs)

    async def get_sharded_message(
        self, ignore_subscribe_messages: bool = False, timeout: float = 0.0, target_node: Any = None
    ) -> Any:
        message = await super().get_sharded_message(ignore_subscribe_messages, timeout, target_node)
        return unprefix_parsed_message(self.namespace, message)


AsyncNamespacedRedisCluster._pubsub_class = AsyncNamespacedClusterPubSub
