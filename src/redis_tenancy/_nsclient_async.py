"""Namespaced asyncio clients: the twins of :mod:`redis_tenancy._nsclient`.

Same decisions (:mod:`redis_tenancy._namespace`), same shared pieces
(:mod:`redis_tenancy._nsdriver`); only the I/O is awaited. One difference is forced by
redis-py's asyncio pipeline, whose queueing method is not a coroutine: a command that
needs a COMMAND INFO lookup is queued as is and rewritten (or refused) when
``execute()`` runs, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import redis.asyncio
import redis.asyncio.client
from redis.exceptions import NoScriptError

from ._namespace import FAST_ONE_KEY, Emulate, KeyOutside, Lookup, Namespace, Plan, Send
from ._nsdriver import (
    FIX_OPTION,
    NO_SCRIPT,
    RAW,
    NamespacedClientParts,
    NamespacedPubSubParts,
    emulation_error,
    emulation_result,
    learned_for,
    planning,
    pubsub_args,
    resolve_pending,
    send_args,
)
from ._nsreplies import unprefix_message
from ._steps import arun_steps

__all__ = [
    "AsyncNamespacedPipeline",
    "AsyncNamespacedPubSub",
    "AsyncNamespacedRedis",
    "command_info",
]

_execute: Callable[..., Any] = redis.asyncio.Redis.execute_command
_LOOKUP_OPTION = "_redis_tenancy_namespace_lookup"


async def _plan(namespace: Namespace, pool: Any, args: tuple[Any, ...]) -> Plan:
    """Plan ``args`` (see :func:`planning`), running its lookup if it needs one."""
    return await arun_steps(planning(namespace, pool, args), lambda name: command_info(pool, name))


async def command_info(pool: Any, name: str) -> Any:
    conn = await pool.get_connection()
    try:
        await conn.send_command("COMMAND", "INFO", name)
        return await conn.read_response()
    finally:
        await pool.release(conn)


# (mypy: two of redis-py's own asyncio base classes disagree on command_info's signature)
class AsyncNamespacedRedis(NamespacedClientParts, redis.asyncio.Redis):  # type: ignore[misc]
    """A ``redis.asyncio.Redis`` confined to one namespace (see
    :class:`~redis_tenancy._nsclient.NamespacedRedis`).

    Example::

        shared = redis.asyncio.Redis.from_url("redis://localhost:6379/0")
        acme = AsyncNamespacedRedis.wrap(shared, Namespace("acme:"))
        await acme.set("user:1", "x")   # the server stores acme:user:1
    """

    # The pool serves the wrapper; a single-connection base keeps its connection.
    _wrapped_state: ClassVar[dict[str, Any]] = {"single_connection_client": False}

    def execute_command(  # type: ignore[override]
        self, *args: Any, **options: Any
    ) -> Awaitable[Any]:
        """Rewrite ``args`` into the namespace and run them (returns the awaitable).

        Not a coroutine function: returning the base class's coroutine saves one
        coroutine per command on the hot path; callers await the result either way.
        One-key commands are rewritten inline and forwarded without ``**`` where
        possible (see the sync twin).
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
                    return _execute(self, args[0], key, args[2])  # type: ignore[no-any-return]
                return _execute(self, args[0], key, *args[2:])  # type: ignore[no-any-return]
            if len(options) == 1 and "keys" in options:  # GET, HGET, TTL...
                if n == 2:
                    return _execute(self, args[0], key, keys=[key])  # type: ignore[no-any-return]
                return _execute(self, args[0], key, *args[2:], keys=[key])  # type: ignore[no-any-return]
            return _execute(self, args[0], key, *args[2:], **options)  # type: ignore[no-any-return]
        fast = self.namespace.fast(args) if args else None
        if fast is not None:
            return _execute(self, *fast, **options)  # type: ignore[no-any-return]
        return self._slow(args, options)

    async def _slow(self, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        plan = await _plan(self.namespace, self.connection_pool, args)
        if isinstance(plan, Emulate):
            return await self._emulate(plan, options)
        assert isinstance(plan, Send)
        if plan.pending_sha is not None:
            raise NoScriptError(NO_SCRIPT)
        if plan.fix is not None:
            options[FIX_OPTION] = plan.fix
        return await _execute(self, *plan.args, **options)

    async def _emulate(self, plan: Emulate, options: dict[str, Any]) -> Any:
        try:
            result = await arun_steps(
                plan.steps, lambda command: _execute(self, *command, **{FIX_OPTION: RAW})
            )
        except KeyOutside:
            raise emulation_error(plan) from None
        return emulation_result(self.response_callbacks, plan, result, options)


class AsyncNamespacedPipeline(redis.asyncio.client.Pipeline):
    """The asyncio twin of :class:`~redis_tenancy._nsclient.NamespacedPipeline`."""

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

    async def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        fast = self.namespace.fast(args)
        if fast is not None:
            args = fast
        else:
            plan = await _plan(self.namespace, self.connection_pool, args)
            args = send_args(plan, options, queued=False)
        return await super().immediate_execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline_execute_command(self, *args: Any, **options: Any) -> AsyncNamespacedPipeline:
        fast = self.namespace.fast(args)
        if fast is not None:
            args = fast
        else:
            plan = self.namespace.plan(args)
            if isinstance(plan, Lookup) and plan.name in learned_for(self.connection_pool):
                plan = self.namespace.plan(args, learned_for(self.connection_pool))
            if isinstance(plan, Lookup):
                options[_LOOKUP_OPTION] = True  # rewritten by execute(), before sending
            else:
                args = send_args(plan, options, queued=True)
        super().pipeline_execute_command(*args, **options)  # type: ignore[no-untyped-call]
        return self

    async def _resolve_lookups(self) -> None:
        stack: list[Any] = self.command_stack
        for i, (args, options) in enumerate(stack):
            if options.pop(_LOOKUP_OPTION, None):
                plan = await _plan(self.namespace, self.connection_pool, args)
                stack[i] = (send_args(plan, options, queued=True), options)

    async def load_scripts(self) -> None:
        await super().load_scripts()  # type: ignore[no-untyped-call]
        resolve_pending(self.command_stack, final=True)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            await self._resolve_lookups()
        except BaseException:
            await self.reset()  # type: ignore[no-untyped-call]
            raise
        resolve_pending(self.command_stack, final=not self.scripts)
        return await super().execute(raise_on_error)


class AsyncNamespacedPubSub(NamespacedPubSubParts, redis.asyncio.client.PubSub):
    """The asyncio twin of :class:`~redis_tenancy._nsclient.NamespacedPubSub`."""

    async def execute_command(self, *args: Any) -> Any:
        return await super().execute_command(*pubsub_args(self.namespace, args))

    async def handle_message(self, response: Any, ignore_subscribe_messages: bool = False) -> Any:
        message = unprefix_message(self.namespace, response)
        return await super().handle_message(message, ignore_subscribe_messages)  # type: ignore[no-untyped-call]


AsyncNamespacedRedis._pipeline_class = AsyncNamespacedPipeline
AsyncNamespacedRedis._pubsub_class = AsyncNamespacedPubSub
