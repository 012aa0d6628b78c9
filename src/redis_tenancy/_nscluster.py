"""A namespaced ``redis.cluster.RedisCluster`` (sync): one tenant per hash tag.

On a Redis Cluster a tenant's prefix should carry a hash tag (``{acme}:``): every key
of the tenant then hashes to one slot, so multi-key commands, transactions and Lua
scripts (whose computed keys get the same prefix) work, and routing follows the real,
prefixed keys. The rewriting is the same as on a single server
(:mod:`redis_tenancy._namespace`); what differs is where replies are fixed: the node
clients belong to the cluster client, so the prefix is taken off key names in the
*parsed* reply (the rules accept redis-py's parsed shapes too).

A namespaced Cluster client is a view of a shared ``RedisCluster``: it runs its
rewritten commands through the shared client, so routing, retries and topology
refreshes stay the shared client's own. This module also holds what the sync client
and its asyncio twin (:mod:`redis_tenancy._nscluster_async`) share: the construction,
the command procedure (:func:`command_steps`, a generator of I/O steps each twin
drives), the pipelines' queueing and reply fixing, and the sharded pub/sub arguments.

Covered: commands, replies, Lua (``EVAL``/``EVALSHA``/``register_script``), the
emulated ``KEYS``/``DBSIZE``/``FLUSHDB`` (on the node that owns the tenant's slot; they
need a hash-tagged prefix), pipelines and transactions
(:class:`NamespacedClusterPipeline`), locks, pub/sub (:class:`NamespacedClusterPubSub`:
channels, patterns and shard channels prefixed, messages un-prefixed), and the asyncio
twin of all of it. Not covered: ``MONITOR`` (refused).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from typing import Any, ClassVar, TypeVar

import redis.cluster
from redis.commands.helpers import (
    list_or_args,
    parse_pubsub_subscriptions,
    pubsub_subscription_args,
)
from redis.exceptions import NoScriptError

from ._errors import NamespaceError
from ._namespace import Emulate, KeyOutside, Lookup, Namespace, Plan, Send
from ._nsclient import NamespacedPubSub, command_info, plan_for
from ._nsdriver import (
    NO_SCRIPT,
    as_namespace,
    emulation_error,
    planning,
    pubsub_args,
    pubsub_handler,
    refuse_in_pipeline,
)
from ._nsreplies import unprefix_parsed_message
from ._steps import run_steps

__all__ = [
    "NamespacedClusterParts",
    "NamespacedClusterPipeline",
    "NamespacedClusterPipelineParts",
    "NamespacedClusterPubSub",
    "NamespacedRedisCluster",
    "Run",
    "command_steps",
    "fixed",
    "hash_tag",
    "shard_channels",
    "shard_subscriptions",
    "tenant_node",
]

#: A reply fix (see :mod:`redis_tenancy._nsreplies`), or ``None``.
Fix = Callable[[Any], Any] | None
#: A command for the shared client: its arguments and execute-command options.
Run = tuple[tuple[Any, ...], dict[str, Any]]


def hash_tag(prefix: str) -> str | None:
    """The hash tag of ``prefix`` as Redis Cluster reads it (``{acme}:`` -> ``acme``)."""
    start = prefix.find("{")
    if start < 0:
        return None
    end = prefix.find("}", start + 1)
    if end <= start + 1:
        return None
    return prefix[start + 1 : end]


def fixed(command: str, fix: Fix, result: Any) -> Any:
    """``result`` (a parsed reply) with the namespace's fix applied; a key outside the
    namespace raises :class:`NamespaceError` and the reply is not returned."""
    if fix is None or isinstance(result, Exception):
        return result
    try:
        return fix(result)
    except KeyOutside:
        raise NamespaceError(
            command, "its reply carried a key outside the namespace (not returned)", refused=False
        ) from None


# -- the command procedure, written once ---------------------------------------------------


def command_steps(
    client: Any, args: tuple[Any, ...], options: dict[str, Any]
) -> Generator[Any, Any, Any]:
    """How a namespaced Cluster client runs ``args``: a generator of I/O steps.

    It yields either a command name (the driver answers with that command's raw
    ``COMMAND INFO`` reply from the default node: a command missing from the table is
    looked up once per server) or a :data:`Run` (the driver runs it through the shared
    client and answers with the reply), and returns the command's result.
    """
    namespace: Namespace = client.namespace
    plan = namespace.plan(args)
    if isinstance(plan, Lookup):
        plan = yield from planning(namespace, client.lookup_pool(), args)
    if isinstance(plan, Emulate):
        return (yield from _emulation(client, plan))
    assert isinstance(plan, Send)
    if plan.pending_sha is not None:
        raise NoScriptError(NO_SCRIPT)
    if "target_nodes" not in options and _introspects_pubsub(args[0]):
        # Channels are node-local: a tenant's live where its pub/sub connects, on the
        # node of its slot (see NamespacedClusterParts.pubsub).
        node = tenant_node(client)
        if node is not None:
            options = {**options, "target_nodes": node}
    return fixed(str(args[0]), plan.fix, (yield (plan.args, options)))


def _introspects_pubsub(command: Any) -> bool:
    name = command.decode(errors="replace") if isinstance(command, bytes) else str(command)
    return name[:6].upper() == "PUBSUB"


def tenant_node(client: Any) -> Any:
    """The node that owns a hash-tagged tenant's slot (``None`` without a hash tag)."""
    if hash_tag(client.namespace.prefix) is None:
        return None
    return client.get_node_from_key(client.namespace.key("_"))


def _emulation(client: Any, plan: Emulate) -> Generator[Run, Any, Any]:
    """An emulated KEYS/DBSIZE/FLUSHDB: SCAN on the node that owns the tenant's slot."""
    node = tenant_node(client)
    if node is None:
        raise NamespaceError(
            plan.command,
            "emulated with SCAN on the node that owns the tenant's slot: on a Cluster "
            "the prefix needs a hash tag, like {acme}:",
        )
    on_node = {"target_nodes": node}
    steps = plan.steps
    try:
        reply = yield (next(steps), dict(on_node))
        while True:
            if isinstance(reply, (tuple, list)) and isinstance(reply[0], dict):
                # redis-py's cluster SCAN answers ({node: cursor}, keys)
                reply = (reply[0][node.name], reply[1])
            reply = yield (steps.send(reply), dict(on_node))
    except StopIteration as done:
        result = done.value
    except KeyOutside:
        raise emulation_error(plan) from None
    return True if plan.command == "FLUSHDB" else result


def _instance_state(obj: Any) -> dict[str, Any]:
    """``obj``'s attributes, whether in its ``__dict__`` or in ``__slots__`` (redis-py's
    asyncio cluster client keeps most of its state in slots)."""
    state = dict(vars(obj))
    for klass in type(obj).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                state[name] = getattr(obj, name)
    return state


# -- the clients' shared half ----------------------------------------------------------------

_Client = TypeVar("_Client", bound="NamespacedClusterParts")


class NamespacedClusterParts:
    """What the sync and async namespaced Cluster clients share: construction,
    :meth:`wrap`, the objects built on the client. Mixed in before the redis-py class.

    Every namespaced Cluster client is a view of a shared client (``_ns_base``) whose
    attributes it copies (nodes manager, encoder, callbacks: shared objects) and
    through whose ``execute_command`` it runs its rewritten commands.
    """

    namespace: Namespace
    nodes_manager: Any
    _ns_base: Any
    _ns_owns_nodes: bool
    #: The redis-py class a namespaced client built with ``namespace=`` wraps.
    _base_class: ClassVar[type[Any]]
    _pubsub_class: ClassVar[Callable[..., Any]]

    def __init__(self, *args: Any, namespace: Namespace | str | bytes, **kwargs: Any) -> None:
        """A client of its own (``RedisCluster(*args, **kwargs)``) confined to
        ``namespace``; closing it closes that client."""
        self._ns_adopt(self._base_class(*args, **kwargs), namespace, owns=True)

    @classmethod
    def wrap(cls: type[_Client], client: Any, namespace: Namespace | str | bytes) -> _Client:
        """A namespaced view of ``client``: shares its nodes and connections; closing it
        (or dropping it) never closes them."""
        obj = cls.__new__(cls)
        obj._ns_adopt(getattr(client, "_ns_base", client), namespace, owns=False)
        return obj

    def _ns_adopt(self, base: Any, namespace: Namespace | str | bytes, *, owns: bool) -> None:
        for name, value in _instance_state(base).items():
            setattr(self, name, value)
        self.namespace = as_namespace(namespace)
        self._ns_base = base
        self._ns_owns_nodes = owns

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.namespace.prefix!r}>"

    def pubsub(
        self, node: Any = None, host: str | None = None, port: int | None = None, **kwargs: Any
    ) -> Any:
        """A namespaced ``ClusterPubSub`` (see :class:`NamespacedClusterPubSub`).

        Unless told otherwise it connects to the node of the tenant's slot (once the
        client knows its slots), where ``PUBSUB CHANNELS``/``NUMSUB`` are asked too.
        """
        if node is None and host is None and port is None and self.nodes_manager.slots_cache:
            node = tenant_node(self)
        return self._pubsub_class(
            self, node=node, host=host, port=port, namespace=self.namespace, **kwargs
        )

    def monitor(self, *args: Any, **kwargs: Any) -> Any:
        raise NamespaceError(
            "MONITOR", "streams the commands of every client (other tenants' included)"
        )


class NamespacedClusterPipelineParts:
    """What the sync and async namespaced Cluster pipelines share (mixed in before the
    redis-py class): commands rewritten when queued, the fixes of queued commands kept
    by position and applied to ``execute()``'s results.

    EVALSHA needs its script loaded first (``script_load`` on the client): redis-py's
    cluster pipelines do not load scripts.
    """

    namespace: Namespace
    _ns_client: Any
    _ns_fixes: dict[int, tuple[str, Fix]]

    def _ns_setup(self, client: Any) -> None:
        self.namespace = client.namespace
        self._ns_client = client
        self._ns_fixes = {}

    def _ns_plan(self, args: tuple[Any, ...]) -> Plan:
        raise NotImplementedError

    def _ns_ran(self, command: str, fix: Fix, result: Any) -> Any:
        """The result of a command run at once (after WATCH), fixed."""
        return fixed(command, fix, result)

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        fast = self.namespace.fast(args)
        plan: Plan = Send(fast) if fast is not None else self._ns_plan(args)
        if isinstance(plan, Emulate):
            raise refuse_in_pipeline(plan)
        assert isinstance(plan, Send)
        if plan.pending_sha is not None:
            raise NoScriptError(NO_SCRIPT)
        position = len(self)  # type: ignore[arg-type]
        result = super().execute_command(*plan.args, **kwargs)  # type: ignore[misc]
        if len(self) > position:  # type: ignore[arg-type]
            if plan.fix is not None:
                self._ns_fixes[position] = (str(args[0]), plan.fix)
            return result
        return self._ns_ran(str(args[0]), plan.fix, result)

    def _ns_keys(self, names: Iterable[Any]) -> list[Any]:
        return [self.namespace.key(name) for name in names]

    def _ns_take_fixes(self) -> dict[int, tuple[str, Fix]]:
        fixes, self._ns_fixes = self._ns_fixes, {}
        return fixes

    @staticmethod
    def _ns_fixed(fixes: dict[int, tuple[str, Fix]], results: list[Any]) -> list[Any]:
        return [
            fixed(*fixes[i], result) if i in fixes else result for i, result in enumerate(results)
        ]


# -- sharded pub/sub ---------------------------------------------------------------------


def shard_subscriptions(
    namespace: Namespace, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[Any]:
    """``ssubscribe()``'s arguments in the namespace: channels prefixed (so the Cluster
    routes them by the real name), handlers called with logical names.

    redis-py's ``ClusterPubSub`` serves shard channels from ``PubSub`` objects of its
    own, one per node; they see real names, so the handlers are wrapped here and the
    messages they return are un-prefixed by ``get_sharded_message``.
    """
    subscriptions = parse_pubsub_subscriptions(args, kwargs)
    channels = pubsub_args(namespace, ("SSUBSCRIBE", *subscriptions))[1:]
    handlers = [
        pubsub_handler(namespace, h, unprefix_parsed_message) for h in subscriptions.values()
    ]
    return pubsub_subscription_args(dict(zip(channels, handlers, strict=True)))


def shard_channels(namespace: Namespace, args: tuple[Any, ...]) -> list[Any]:
    """``sunsubscribe()``'s channels in the namespace (none: all of them)."""
    if not args:
        return []
    return list(pubsub_args(namespace, ("SUNSUBSCRIBE", *list_or_args(args[0], args[1:])))[1:])


# -- the sync classes --------------------------------------------------------------------


class NamespacedRedisCluster(NamespacedClusterParts, redis.cluster.RedisCluster):
    """A ``RedisCluster`` confined to one namespace (use a hash-tagged prefix).

    Example::

        shared = redis.cluster.RedisCluster(host="127.0.0.1", port=7000)
        acme = NamespacedRedisCluster.wrap(shared, Namespace("{acme}:"))
        acme.mset({"a": 1, "b": 2})   # one slot: {acme}:a, {acme}:b
    """

    _base_class = redis.cluster.RedisCluster

    def close(self) -> None:
        if self._ns_owns_nodes:
            self._ns_base.close()

    def lookup_pool(self) -> Any:
        """The pool of the default node, where unknown commands are looked up."""
        node = self.get_default_node()  # type: ignore[no-untyped-call]
        return self.get_redis_connection(node).connection_pool

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        fast = self.namespace.fast(args)
        if fast is not None:
            return self._ns_base.execute_command(*fast, **kwargs)
        return run_steps(command_steps(self, args, kwargs), self._step)

    def _step(self, step: Any) -> Any:
        if isinstance(step, str):
            return command_info(self.lookup_pool(), step)
        args, options = step
        return self._ns_base.execute_command(*args, **options)

    def pipeline(
        self, transaction: Any = None, shard_hint: Any = None
    ) -> NamespacedClusterPipeline:
        if shard_hint:
            raise redis.exceptions.RedisClusterException("shard_hint is deprecated in cluster mode")
        return NamespacedClusterPipeline(
            namespaced=self,
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


class NamespacedClusterPipeline(NamespacedClusterPipelineParts, redis.cluster.ClusterPipeline):
    """A pipeline (or transaction) of a :class:`NamespacedRedisCluster`: commands
    rewritten when queued, replies fixed in ``execute()``."""

    def __init__(self, *args: Any, namespaced: NamespacedRedisCluster, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ns_setup(namespaced)

    def _ns_plan(self, args: tuple[Any, ...]) -> Plan:
        return plan_for(self.namespace, self._ns_client.lookup_pool(), args)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        fixes = self._ns_take_fixes()
        return self._ns_fixed(fixes, super().execute(raise_on_error))

    def reset(self) -> None:  # type: ignore[override]
        super().reset()  # type: ignore[no-untyped-call]
        self._ns_fixes = {}

    # redis-py's cluster pipeline queues these without its execute_command.
    def watch(self, *names: Any) -> None:
        super().watch(*self._ns_keys(names))  # type: ignore[no-untyped-call]

    def delete(self, *names: Any) -> None:  # type: ignore[override]
        super().delete(*self._ns_keys(names))  # type: ignore[no-untyped-call]

    def unlink(self, *names: Any) -> None:  # type: ignore[override]
        super().unlink(*self._ns_keys(names))  # type: ignore[no-untyped-call]

    def exists(self, *keys: Any) -> Any:
        return super().exists(*self._ns_keys(keys))  # type: ignore[no-untyped-call]


class NamespacedClusterPubSub(NamespacedPubSub, redis.cluster.ClusterPubSub):
    """Pub/sub of a :class:`NamespacedRedisCluster`: channels and patterns as in
    :class:`~redis_tenancy._nsclient.NamespacedPubSub`, shard channels
    (``ssubscribe``) prefixed and their messages (``get_sharded_message``, handlers)
    un-prefixed."""

    def ssubscribe(self, *args: Any, **kwargs: Any) -> None:
        super().ssubscribe(*shard_subscriptions(self.namespace, args, kwargs))

    def sunsubscribe(self, *args: Any, **kwargs: Any) -> None:
        super().sunsubscribe(*shard_channels(self.namespace, args), **kwargs)  # type: ignore[no-untyped-call]

    def get_sharded_message(
        self, ignore_subscribe_messages: bool = False, timeout: float = 0.0, target_node: Any = None
    ) -> Any:
        message = super().get_sharded_message(ignore_subscribe_messages, timeout, target_node)  # type: ignore[no-untyped-call]
        return unprefix_parsed_message(self.namespace, message)


NamespacedRedisCluster._pubsub_class = NamespacedClusterPubSub
