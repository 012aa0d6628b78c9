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

from ._namespace import FAST_ONE_KEY, Emulate, KeyOutside, Namespace, Plan, Send
from ._nsdriver import (
    FIX_OPTION,
    NO_SCRIPT,
    RAW,
    NamespacedClientParts,
    NamespacedPubSubParts,
    emulation_error,
    emulation_result,
    planning,
    pubsub_args,
    resolve_pending,
    send_args,
)
from ._nsreplies import unprefix_message
from ._steps import run_steps

__all__ = ["NamespacedPipeline", "NamespacedPubSub", "NamespacedRedis", "command_info", "plan_for"]

#: The base class's command path, called after rewriting (typed loosely: redis-py's is not).
_execute: Callable[..., Any] = redis.Redis.execute_command


def plan_for(namespace: Namespace, pool: Any, args: tuple[Any, ...]) -> Plan:
    """Plan ``args`` (see :func:`planning`), running its lookup if it needs one."""
    return run_steps(planning(namespace, pool, args), lambda name: command_info(pool, name))


def command_info(pool: Any, name: str) -> Any:
    # Straight on a pooled connection (public pool methods only): no rewriting, no
    # response callback, and usable from a pipeline that must not queue it.
    conn = pool.get_connection()
    try:
        conn.send_command("COMMAND", "INFO", name)
        return conn.read_response()
    finally:
        pool.release(conn)


class NamespacedRedis(NamespacedClientParts, redis.Redis):
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

    # -- commands --------------------------------------------------------------------

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Rewrite ``args`` into the namespace and run them; see the class docstring.

        One-key commands (GET, SET, HGET, INCR...: most traffic) are rewritten inline
        and handed straight to redis-py's ``_execute_command``, the method
        ``redis.Redis.execute_command`` only delegates to: that skips one Python call
        level, most of the namespace's cost on such commands. It is the one private
        redis-py name this package uses; a test pins that ``redis.Redis.execute_command``
        still does nothing but delegate to it.

        The calls avoid ``f(a, b, **options)``, which builds a tuple and merges a dict
        and costs as much as the rewriting: no options go as a plain call, and redis-py's
        ``keys=[name]`` (read only by client-side caching, which a namespaced client
        refuses) goes as one keyword, naming the key the server sees.
        """
        n = len(args)
        if n > 1 and args[0] in FAST_ONE_KEY:
            key = args[1]
            cls = key.__class__
            if cls is str:
                key = self._ns_str + key
            elif cls is bytes:
                key = self._ns_bytes + key
            else:
                key = self.namespace.key(key)
            if not options:  # SET, INCR...
                if n == 3:
                    return self._execute_command(args[0], key, args[2])  # type: ignore[no-untyped-call]
                if n == 2:
                    return self._execute_command(args[0], key)  # type: ignore[no-untyped-call]
            elif len(options) == 1 and "keys" in options:  # GET, HGET, TTL...
                if n == 2:
                    return self._execute_command(args[0], key, keys=[key])  # type: ignore[no-untyped-call]
                return self._execute_command(args[0], key, *args[2:], keys=[key])  # type: ignore[no-untyped-call]
            return self._execute_command(args[0], key, *args[2:], **options)  # type: ignore[no-untyped-call]
        fast = self.namespace.fast(args) if args else None
        if fast is not None:
            return self._execute_command(*fast, **options)  # type: ignore[no-untyped-call]
        return self._slow(args, options)

    def _slow(self, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        plan = plan_for(self.namespace, self.connection_pool, args)
        if isinstance(plan, Emulate):
            return self._emulate(plan, options)
        assert isinstance(plan, Send)
        if plan.pending_sha is not None:
            raise NoScriptError(NO_SCRIPT)
        if plan.fix is not None:
            options[FIX_OPTION] = plan.fix
        return _execute(self, *plan.args, **options)

    def _emulate(self, plan: Emulate, options: dict[str, Any]) -> Any:
        try:
            result = run_steps(
                plan.steps, lambda command: _execute(self, *command, **{FIX_OPTION: RAW})
            )
        except KeyOutside:
            raise emulation_error(plan) from None
        return emulation_result(self.response_callbacks, plan, result, options)


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
        return send_args(
            plan_for(self.namespace, self.connection_pool, args), options, queued=queued
        )

    def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        args = self._rewrite(args, options, queued=False)
        return super().immediate_execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline_execute_command(self, *args: Any, **options: Any) -> NamespacedPipeline:
        args = self._rewrite(args, options, queued=True)
        super().pipeline_execute_command(*args, **options)
        return self

    def load_scripts(self) -> None:
        super().load_scripts()  # type: ignore[no-untyped-call]
        resolve_pending(self.command_stack, final=True)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        # Without scripts to load, nothing can resolve a pending SHA later: it stays
        # the no-script SHA and the server answers NOSCRIPT for that command.
        resolve_pending(self.command_stack, final=not self.scripts)
        return super().execute(raise_on_error)


class NamespacedPubSub(NamespacedPubSubParts, redis.client.PubSub):
    """Pub/sub in a namespace: channels prefixed, patterns escaped, messages un-prefixed.

    Channel and pattern names in messages (and in the handler dicts) are the caller's
    logical names. Keyspace-notification channels (``__keyspace@...``) are refused:
    their payloads carry other tenants' key names.
    """

    def execute_command(self, *args: Any) -> Any:
        return super().execute_command(*pubsub_args(self.namespace, args))  # type: ignore[no-untyped-call]

    def handle_message(self, response: Any, ignore_subscribe_messages: bool = False) -> Any:
        message = unprefix_message(self.namespace, response)
        return super().handle_message(message, ignore_subscribe_messages)  # type: ignore[no-untyped-call]


NamespacedRedis._pipeline_class = NamespacedPipeline
NamespacedRedis._pubsub_class = NamespacedPubSub
