"""Namespaced sync clients: ``redis.Redis`` that sees one tenant's logical keyspace.

:class:`NamespacedRedis` rewrites every command through a
:class:`~redis_tenancy._namespace.Namespace` (keys prefixed, patterns escaped, scripts
wrapped) and takes the prefix off key names in replies; its pipelines, transactions,
pub/sub, ``register_script`` scripts, locks and ``scan_iter`` inherit that because they
all go through ``execute_command`` (or the pub/sub and pipeline hooks overridden
here). The decisions live in :mod:`redis_tenancy._namespace`; this module only drives
them with blocking I/O (:mod:`redis_tenancy._nsclient_async` is the asyncio twin).

Built per tenant over a pool shared by many tenants with :meth:`NamespacedRedis.wrap`,
which costs a few microseconds and shares the base client's pool and (derived, shared)
response callbacks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
import redis.client
from redis.exceptions import NoScriptError

from ._errors import NamespaceError
from ._namespace import FAST_ONE_KEY, Emulate, KeyOutside, Lookup, Namespace, Plan, Send
from ._nsdriver import (
    FIX_OPTION,
    RAW,
    check_no_client_cache,
    clone_state,
    derived_callbacks,
    emulation_error,
    emulation_result,
    learn,
    learned_for,
    namespace_state,
    refuse_in_pipeline,
)
from ._nslua import wrapped_sha
from ._nsreplies import unprefix_message

__all__ = ["NamespacedPipeline", "NamespacedPubSub", "NamespacedRedis"]

#: The base class's command path, called after rewriting (typed loosely: redis-py's is not).
_execute: Callable[..., Any] = redis.Redis.execute_command
_NO_SCRIPT = "No matching script. Please use EVAL."
_PENDING_OPTION = "_redis_tenancy_namespace_pending_sha"


def _as_namespace(namespace: Namespace | str | bytes) -> Namespace:
    return namespace if isinstance(namespace, Namespace) else Namespace(namespace)


def _plan(namespace: Namespace, pool: Any, args: tuple[Any, ...]) -> Plan:
    """Plan ``args``; a command missing from the table is looked up once per server."""
    plan = namespace.plan(args)
    if isinstance(plan, Lookup):
        learned = learned_for(pool)
        if plan.name not in learned:
            learn(learned, plan.name, _command_info(pool, plan.name))
        plan = namespace.plan(args, learned)
    return plan


def _command_info(pool: Any, name: str) -> Any:
    # Straight on a pooled connection (public pool methods only): no rewriting, no
    # response callback, and usable from a pipeline that must not queue it.
    conn = pool.get_connection()
    try:
        conn.send_command("COMMAND", "INFO", name)
        return conn.read_response()
    finally:
        pool.release(conn)


class NamespacedRedis(redis.Redis):
    """A ``redis.Redis`` confined to one namespace: the caller writes ``user:1``, the
    server stores ``acme:user:1``, and replies say ``user:1`` again.

    Commands that cannot be confined raise :class:`~redis_tenancy.NamespaceError`;
    ``KEYS``, ``DBSIZE`` and ``FLUSHDB`` are emulated with SCAN over the namespace.

    Args:
        namespace: a :class:`Namespace` or its prefix.
        *args, **kwargs: as for ``redis.Redis``.

    Example::

        shared = redis.Redis.from_url("redis://localhost:6379/0")
        acme = NamespacedRedis.wrap(shared, Namespace("acme:"))
        acme.set("user:1", "x")      # the server stores acme:user:1
        acme.keys("*")               # [b'user:1']
    """

    namespace: Namespace
    _ns_str: str
    _ns_bytes: bytes

    def __init__(self, *args: Any, namespace: Namespace | str | bytes, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_no_client_cache(self.connection_pool)
        self.__dict__.update(namespace_state(_as_namespace(namespace)))
        self.response_callbacks = derived_callbacks(self.response_callbacks)

    @classmethod
    def wrap(
        cls,
        client: redis.Redis,
        namespace: Namespace | str | bytes,
        *,
        connection_pool: Any = None,
    ) -> NamespacedRedis:
        """A namespaced client over ``client``'s connection pool, for one tenant.

        Cheap (a few microseconds, a few hundred bytes): it shares ``client``'s pool
        (or ``connection_pool``, any object with the public ConnectionPool methods) and
        a callbacks dict derived once per base client. Closing it never closes the
        shared pool.
        """
        obj = cls.__new__(cls)
        obj.__dict__.update(clone_state(client, _as_namespace(namespace), connection_pool))
        return obj

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.namespace.prefix!r} ({self.connection_pool!r})>"

    # -- commands --------------------------------------------------------------------

    def execute_command(
        self, *args: Any, _one_key: frozenset[Any] = FAST_ONE_KEY, **options: Any
    ) -> Any:
        """Rewrite ``args`` into the namespace and run them; see the class docstring.

        One-key commands (GET, SET, HGET, INCR...: most traffic) are rewritten inline
        and handed straight to redis-py's ``_execute_command``, the method
        ``redis.Redis.execute_command`` only delegates to: that skips one Python call
        level, most of the namespace's cost on such commands. It is the one private
        redis-py name this package uses; a test pins that ``redis.Redis.execute_command``
        still does nothing but delegate to it. ``_one_key`` is bound as a default so
        the lookup is a local one (do not pass it).
        """
        if args and args[0] in _one_key and len(args) > 1:
            key = args[1]
            cls = key.__class__
            if cls is str:
                key = self._ns_str + key
            elif cls is bytes:
                key = self._ns_bytes + key
            else:
                key = self.namespace.key(key)
            n = len(args)
            if n == 2:  # GET, INCR, TTL...: no slice to build
                return self._execute_command(args[0], key, **options)  # type: ignore[no-untyped-call]
            if n == 3:  # SET, HGET, SADD of one member...
                return self._execute_command(args[0], key, args[2], **options)  # type: ignore[no-untyped-call]
            return self._execute_command(args[0], key, *args[2:], **options)  # type: ignore[no-untyped-call]
        fast = self.namespace.fast(args) if args else None
        if fast is not None:
            return self._execute_command(*fast, **options)  # type: ignore[no-untyped-call]
        return self._slow(args, options)

    def _slow(self, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        plan = _plan(self.namespace, self.connection_pool, args)
        if isinstance(plan, Emulate):
            return self._emulate(plan, options)
        assert isinstance(plan, Send)
        if plan.pending_sha is not None:
            raise NoScriptError(_NO_SCRIPT)
        if plan.fix is not None:
            options[FIX_OPTION] = plan.fix
        return _execute(self, *plan.args, **options)

    def _emulate(self, plan: Emulate, options: dict[str, Any]) -> Any:
        steps = plan.steps
        try:
            command = next(steps)
            while True:
                command = steps.send(_execute(self, *command, **{FIX_OPTION: RAW}))
        except StopIteration as done:
            result = done.value
        except KeyOutside:
            raise emulation_error(plan) from None
        return emulation_result(self.response_callbacks, plan, result, options)

    # -- the objects built on the client -----------------------------------------------

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> NamespacedPipeline:
        return NamespacedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint, self.namespace
        )

    def pubsub(self, **kwargs: Any) -> NamespacedPubSub:
        return NamespacedPubSub(self.connection_pool, namespace=self.namespace, **kwargs)

    def client(self) -> NamespacedRedis:
        return type(self)(
            connection_pool=self.connection_pool,
            single_connection_client=True,
            namespace=self.namespace,
        )

    def monitor(self) -> redis.client.Monitor:
        raise NamespaceError(
            "MONITOR", "streams the commands of every client (other tenants' included)"
        )


class NamespacedPipeline(redis.client.Pipeline):
    """A pipeline (or MULTI/EXEC transaction) of a :class:`NamespacedRedis`.

    Commands are rewritten when queued (and when run immediately, after WATCH). The
    emulated ``KEYS``/``DBSIZE``/``FLUSHDB`` are refused here. An EVALSHA of a SHA
    this process has not loaded yet is resolved after the pipeline loads its scripts,
    as redis-py's ``Script`` objects expect.
    """

    def __init__(
        self,
        connection_pool: Any,
        response_callbacks: Any,
        transaction: bool,
        shard_hint: Any,
        namespace: Namespace,
    ) -> None:
        super().__init__(connection_pool, response_callbacks, transaction, shard_hint)
        self.namespace = namespace

    def _rewrite(
        self, args: tuple[Any, ...], options: dict[str, Any], *, queued: bool
    ) -> tuple[Any, ...]:
        fast = self.namespace.fast(args)
        if fast is not None:
            return fast
        plan = _plan(self.namespace, self.connection_pool, args)
        if isinstance(plan, Emulate):
            raise refuse_in_pipeline(plan)
        assert isinstance(plan, Send)
        if plan.pending_sha is not None:
            if not queued:
                raise NoScriptError(_NO_SCRIPT)
            options[_PENDING_OPTION] = plan.pending_sha
        if plan.fix is not None:
            options[FIX_OPTION] = plan.fix
        return plan.args

    def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        args = self._rewrite(args, options, queued=False)
        return super().immediate_execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline_execute_command(self, *args: Any, **options: Any) -> NamespacedPipeline:
        args = self._rewrite(args, options, queued=True)
        super().pipeline_execute_command(*args, **options)
        return self

    def _resolve_pending(self, *, final: bool) -> None:
        for i, (args, options) in enumerate(self.command_stack):
            caller = options.get(_PENDING_OPTION)
            if caller is None:
                continue
            mapped = wrapped_sha(caller)
            if mapped is not None or final:
                options.pop(_PENDING_OPTION)
            if mapped is not None:
                self.command_stack[i] = ((args[0], mapped, *args[2:]), options)

    def load_scripts(self) -> None:
        super().load_scripts()  # type: ignore[no-untyped-call]
        self._resolve_pending(final=True)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        # Without scripts to load, nothing can resolve a pending SHA later: it stays
        # the no-script SHA and the server answers NOSCRIPT for that command.
        self._resolve_pending(final=not self.scripts)
        return super().execute(raise_on_error)


class NamespacedPubSub(redis.client.PubSub):
    """Pub/sub in a namespace: channels prefixed, patterns escaped, messages un-prefixed.

    Channel and pattern names in messages (and in the handler dicts) are the caller's
    logical names. Keyspace-notification channels (``__keyspace@...``) are refused:
    their payloads carry other tenants' key names.
    """

    def __init__(
        self,
        connection_pool: Any,
        *,
        namespace: Namespace,
        push_handler_func: Any = None,
        **kwargs: Any,
    ) -> None:
        self.namespace = namespace
        handler = push_handler_func
        if push_handler_func is not None:
            user_handler = push_handler_func

            def handler(message: Any) -> Any:
                return user_handler(unprefix_message(namespace, message))

        super().__init__(connection_pool, push_handler_func=handler, **kwargs)

    def execute_command(self, *args: Any) -> Any:
        plan = self.namespace.plan(args, None, pubsub=True)
        if not isinstance(plan, Send):
            raise NamespaceError(str(args[0]).upper(), "not a pub/sub command")
        return super().execute_command(*plan.args)  # type: ignore[no-untyped-call]

    def handle_message(self, response: Any, ignore_subscribe_messages: bool = False) -> Any:
        message = unprefix_message(self.namespace, response)
        return super().handle_message(message, ignore_subscribe_messages)  # type: ignore[no-untyped-call]
