"""Namespaced asyncio clients: the twins of :mod:`redis_tenancy._nsclient`.

Same decisions (:mod:`redis_tenancy._namespace`), same shared pieces
(:mod:`redis_tenancy._nsdriver`); only the I/O is awaited. One difference is forced by
redis-py's asyncio pipeline, whose queueing method is not a coroutine: a command that
needs a COMMAND INFO lookup is queued as is and rewritten (or refused) when
``execute()`` runs, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio
import redis.asyncio.client
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

__all__ = ["AsyncNamespacedPipeline", "AsyncNamespacedPubSub", "AsyncNamespacedRedis"]

_execute: Callable[..., Any] = redis.asyncio.Redis.execute_command
_NO_SCRIPT = "No matching script. Please use EVAL."
_PENDING_OPTION = "_redis_tenancy_namespace_pending_sha"
_LOOKUP_OPTION = "_redis_tenancy_namespace_lookup"


def _as_namespace(namespace: Namespace | str | bytes) -> Namespace:
    return namespace if isinstance(namespace, Namespace) else Namespace(namespace)


async def _plan(namespace: Namespace, pool: Any, args: tuple[Any, ...]) -> Plan:
    plan = namespace.plan(args)
    if isinstance(plan, Lookup):
        learned = learned_for(pool)
        if plan.name not in learned:
            learn(learned, plan.name, await _command_info(pool, plan.name))
        plan = namespace.plan(args, learned)
    return plan


async def _command_info(pool: Any, name: str) -> Any:
    conn = await pool.get_connection()
    try:
        await conn.send_command("COMMAND", "INFO", name)
        return await conn.read_response()
    finally:
        await pool.release(conn)


class AsyncNamespacedRedis(redis.asyncio.Redis):
    """A ``redis.asyncio.Redis`` confined to one namespace (see
    :class:`~redis_tenancy._nsclient.NamespacedRedis`).

    Example::

        shared = redis.asyncio.Redis.from_url("redis://localhost:6379/0")
        acme = AsyncNamespacedRedis.wrap(shared, Namespace("acme:"))
        await acme.set("user:1", "x")   # the server stores acme:user:1
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
        client: redis.asyncio.Redis,
        namespace: Namespace | str | bytes,
        *,
        connection_pool: Any = None,
    ) -> AsyncNamespacedRedis:
        """A namespaced client over ``client``'s pool (see ``NamespacedRedis.wrap``)."""
        obj = cls.__new__(cls)
        state = clone_state(client, _as_namespace(namespace), connection_pool)
        # The pool serves the wrapper; a single-connection base keeps its connection.
        state["single_connection_client"] = False
        obj.__dict__.update(state)
        return obj

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.namespace.prefix!r} ({self.connection_pool!r})>"

    # Not a coroutine function: returning the base class's coroutine saves one
    # coroutine per command on the hot path; callers await the result either way.
    def execute_command(  # type: ignore[override]
        self, *args: Any, _one_key: frozenset[Any] = FAST_ONE_KEY, **options: Any
    ) -> Awaitable[Any]:
        """Rewrite ``args`` into the namespace and run them (returns the awaitable).

        Not a coroutine function: returning the base class's coroutine saves one
        coroutine per command on the hot path; callers await the result either way.
        One-key commands are rewritten inline (``_one_key`` is bound as a default so the
        lookup is a local one; do not pass it).
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
            raise NoScriptError(_NO_SCRIPT)
        if plan.fix is not None:
            options[FIX_OPTION] = plan.fix
        return await _execute(self, *plan.args, **options)

    async def _emulate(self, plan: Emulate, options: dict[str, Any]) -> Any:
        steps = plan.steps
        try:
            command = next(steps)
            while True:
                command = steps.send(await _execute(self, *command, **{FIX_OPTION: RAW}))
        except StopIteration as done:
            result = done.value
        except KeyOutside:
            raise emulation_error(plan) from None
        return emulation_result(self.response_callbacks, plan, result, options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> AsyncNamespacedPipeline:
        return AsyncNamespacedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint, self.namespace
        )

    def pubsub(self, **kwargs: Any) -> AsyncNamespacedPubSub:
        return AsyncNamespacedPubSub(self.connection_pool, namespace=self.namespace, **kwargs)

    def client(self) -> AsyncNamespacedRedis:
        return type(self)(
            connection_pool=self.connection_pool,
            single_connection_client=True,
            namespace=self.namespace,
        )

    def monitor(self) -> redis.asyncio.client.Monitor:
        raise NamespaceError(
            "MONITOR", "streams the commands of every client (other tenants' included)"
        )


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

    def _apply(self, plan: Plan, options: dict[str, Any], *, queued: bool) -> tuple[Any, ...]:
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

    async def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        fast = self.namespace.fast(args)
        if fast is not None:
            args = fast
        else:
            plan = await _plan(self.namespace, self.connection_pool, args)
            args = self._apply(plan, options, queued=False)
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
                args = self._apply(plan, options, queued=True)
        super().pipeline_execute_command(*args, **options)  # type: ignore[no-untyped-call]
        return self

    async def _resolve_lookups(self) -> None:
        stack: list[Any] = self.command_stack
        for i, (args, options) in enumerate(stack):
            if options.pop(_LOOKUP_OPTION, None):
                plan = await _plan(self.namespace, self.connection_pool, args)
                stack[i] = (self._apply(plan, options, queued=True), options)

    def _resolve_pending(self, *, final: bool) -> None:
        stack: list[Any] = self.command_stack
        for i, (args, options) in enumerate(stack):
            caller = options.get(_PENDING_OPTION)
            if caller is None:
                continue
            mapped = wrapped_sha(caller)
            if mapped is not None or final:
                options.pop(_PENDING_OPTION)
            if mapped is not None:
                stack[i] = ((args[0], mapped, *args[2:]), options)

    async def load_scripts(self) -> None:
        await super().load_scripts()  # type: ignore[no-untyped-call]
        self._resolve_pending(final=True)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            await self._resolve_lookups()
        except BaseException:
            await self.reset()  # type: ignore[no-untyped-call]
            raise
        self._resolve_pending(final=not self.scripts)
        return await super().execute(raise_on_error)


class AsyncNamespacedPubSub(redis.asyncio.client.PubSub):
    """The asyncio twin of :class:`~redis_tenancy._nsclient.NamespacedPubSub`."""

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

    async def execute_command(self, *args: Any) -> Any:
        plan = self.namespace.plan(args, None, pubsub=True)
        if not isinstance(plan, Send):
            raise NamespaceError(str(args[0]).upper(), "not a pub/sub command")
        return await super().execute_command(*plan.args)

    async def handle_message(self, response: Any, ignore_subscribe_messages: bool = False) -> Any:
        message = unprefix_message(self.namespace, response)
        return await super().handle_message(message, ignore_subscribe_messages)  # type: ignore[no-untyped-call]
