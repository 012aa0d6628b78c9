"""A namespaced ``redis.cluster.RedisCluster`` (sync): one tenant per hash tag.

On a Redis Cluster a tenant's prefix should carry a hash tag (``{acme}:``): every key
of the tenant then hashes to one slot, so multi-key commands, transactions and Lua
scripts (whose computed keys get the same prefix) work, and routing follows the real,
prefixed keys. The rewriting is the same as on a single server
(:mod:`redis_tenancy._namespace`); what differs is where replies are fixed: the node
clients belong to the cluster client, so the prefix is taken off key names in the
*parsed* reply (the rules accept redis-py's parsed shapes too).

Covered: commands, replies, Lua (``EVAL``/``EVALSHA``/``register_script``), the
emulated ``KEYS``/``DBSIZE``/``FLUSHDB`` (on the node that owns the tenant's slot; they
need a hash-tagged prefix), pipelines (:class:`NamespacedClusterPipeline`), locks.
Not covered: cluster pub/sub (``pubsub()`` raises), and the asyncio cluster client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.cluster
from redis.exceptions import NoScriptError

from ._errors import NamespaceError
from ._namespace import Emulate, KeyOutside, Lookup, Namespace, Plan, Send
from ._nsclient import plan_for
from ._nsdriver import NO_SCRIPT, as_namespace, refuse_in_pipeline

__all__ = ["NamespacedClusterPipeline", "NamespacedRedisCluster", "hash_tag"]

_execute: Callable[..., Any] = redis.cluster.RedisCluster.execute_command


def hash_tag(prefix: str) -> str | None:
    """The hash tag of ``prefix`` as Redis Cluster reads it (``{acme}:`` -> ``acme``)."""
    start = prefix.find("{")
    if start < 0:
        return None
    end = prefix.find("}", start + 1)
    if end <= start + 1:
        return None
    return prefix[start + 1 : end]


def _fixed(command: str, fix: Callable[[Any], Any] | None, result: Any) -> Any:
    if fix is None or isinstance(result, Exception):
        return result
    try:
        return fix(result)
    except KeyOutside:
        raise NamespaceError(
            command, "its reply carried a key outside the namespace (not returned)", refused=False
        ) from None


class NamespacedRedisCluster(redis.cluster.RedisCluster):
    """A ``RedisCluster`` confined to one namespace (use a hash-tagged prefix).

    Example::

        shared = redis.cluster.RedisCluster(host="127.0.0.1", port=7000)
        acme = NamespacedRedisCluster.wrap(shared, Namespace("{acme}:"))
        acme.mset({"a": 1, "b": 2})   # one slot: {acme}:a, {acme}:b
    """

    namespace: Namespace

    def __init__(self, *args: Any, namespace: Namespace | str | bytes, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.namespace = as_namespace(namespace)
        self._ns_owns_nodes = True

    @classmethod
    def wrap(
        cls, client: redis.cluster.RedisCluster, namespace: Namespace | str | bytes
    ) -> NamespacedRedisCluster:
        """A namespaced view of ``client``: shares its nodes and connections; closing it
        (or dropping it) never closes them."""
        obj = cls.__new__(cls)
        obj.__dict__.update(vars(client))
        obj.namespace = as_namespace(namespace)
        obj._ns_owns_nodes = False
        return obj

    def close(self) -> None:
        if self._ns_owns_nodes:
            super().close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.namespace.prefix!r}>"

    def _plan(self, args: tuple[Any, ...]) -> Plan:
        plan = self.namespace.plan(args)
        if not isinstance(plan, Lookup):
            return plan
        node = self.get_default_node()  # type: ignore[no-untyped-call]
        return plan_for(self.namespace, self.get_redis_connection(node).connection_pool, args)

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        fast = self.namespace.fast(args)
        if fast is not None:
            return _execute(self, *fast, **kwargs)
        plan = self._plan(args)
        if isinstance(plan, Emulate):
            return self._emulate(plan)
        assert isinstance(plan, Send)
        if plan.pending_sha is not None:
            raise NoScriptError(NO_SCRIPT)
        return _fixed(str(args[0]), plan.fix, _execute(self, *plan.args, **kwargs))

    def _emulate(self, plan: Emulate) -> Any:
        if hash_tag(self.namespace.prefix) is None:
            raise NamespaceError(
                plan.command,
                "emulated with SCAN on the node that owns the tenant's slot: on a Cluster "
                "the prefix needs a hash tag, like {acme}:",
            )
        node = self.get_node_from_key(self.namespace.key("_"))  # type: ignore[no-untyped-call]
        steps = plan.steps
        try:
            command = next(steps)
            while True:
                reply = _execute(self, *command, target_nodes=node)
                if isinstance(reply, (tuple, list)) and isinstance(reply[0], dict):
                    # redis-py's cluster SCAN answers ({node: cursor}, keys)
                    reply = (reply[0][node.name], reply[1])
                command = steps.send(reply)
        except StopIteration as done:
            result = done.value
        except KeyOutside:
            raise NamespaceError(
                plan.command, "SCAN returned a key outside the namespace", refused=False
            ) from None
        return True if plan.command == "FLUSHDB" else result

    def pipeline(
        self, transaction: Any = None, shard_hint: Any = None
    ) -> NamespacedClusterPipeline:
        if shard_hint:
            raise redis.exceptions.RedisClusterException("shard_hint is deprecated in cluster mode")
        return NamespacedClusterPipeline(
            namespace=self.namespace,
            learned_from=self,
            nodes_manager=self.nodes_manager,
            commands_parser=self.commands_parser,
            startup_nodes=self.nodes_manager.startup_nodes,
            result_callbacks=self.result_callbacks,
            cluster_response_callbacks=self.cluster_response_callbacks,
            read_from_replicas=self.read_from_replicas,
            load_balancing_strategy=self.load_balancing_strategy,
            reinitialize_steps=self.reinitialize_steps,
            retry=self.retry,
            lock=self._lock,
            transaction=transaction,
            event_dispatcher=self._event_dispatcher,
        )

    def pubsub(self, *args: Any, **kwargs: Any) -> Any:
        raise NamespaceError(
            "SUBSCRIBE", "pub/sub on a namespaced Cluster client is not supported yet"
        )

    def monitor(self, *args: Any, **kwargs: Any) -> Any:
        raise NamespaceError(
            "MONITOR", "streams the commands of every client (other tenants' included)"
        )


class NamespacedClusterPipeline(redis.cluster.ClusterPipeline):
    """A pipeline of a :class:`NamespacedRedisCluster`: commands rewritten when queued,
    replies fixed in ``execute()``. EVALSHA needs its script loaded first
    (``script_load`` on the client), as redis-py's cluster pipeline does not load them."""

    def __init__(self, *args: Any, namespace: Namespace, learned_from: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.namespace = namespace
        self._ns_client = learned_from
        self._ns_fixes: list[tuple[str, Callable[[Any], Any] | None]] = []

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        fast = self.namespace.fast(args)
        plan: Plan = Send(fast) if fast is not None else self._ns_client._plan(args)
        if isinstance(plan, Emulate):
            raise refuse_in_pipeline(plan)
        assert isinstance(plan, Send)
        if plan.pending_sha is not None:
            raise NoScriptError(NO_SCRIPT)
        queued = len(self)
        result = super().execute_command(*plan.args, **kwargs)  # type: ignore[no-untyped-call]
        if len(self) > queued:
            self._ns_fixes.append((str(args[0]), plan.fix))
            return result
        return _fixed(str(args[0]), plan.fix, result)  # ran at once (after WATCH)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        fixes, self._ns_fixes = self._ns_fixes, []
        results = super().execute(raise_on_error)
        return [
            _fixed(command, fix, result)
            for (command, fix), result in zip(fixes, results, strict=False)
        ]

    def reset(self) -> None:  # type: ignore[override]
        super().reset()  # type: ignore[no-untyped-call]
        self._ns_fixes = []
