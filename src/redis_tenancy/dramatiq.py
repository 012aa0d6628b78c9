"""Dramatiq: a message is processed with the tenant that was active where it was sent.

A broker middleware does both halves. ``before_enqueue`` stores the open tenant
block's name in the message options (``redis_tenancy_tenant``); a retry keeps the
name its message already carries. ``before_process_message`` makes that tenant
active in the worker thread and ``after_process_message`` / ``after_skip_message``
reset it, so a worker thread never carries one message's tenant into the next.

:func:`install` puts the middleware *first*: Dramatiq runs the ``after_*`` hooks in
reverse order, so the tenant is still active while the other middleware react to
the result, and the next message of a pipeline (``pipe_target``) or a retry is
enqueued under it.

A message sent outside any tenant block is processed under the router's default
tenant or, in strict mode, failed without running (it goes to the dead-letter queue,
never retried); so is one naming a tenant the worker does not know. Actors that may
run without a tenant are declared ``@dramatiq.actor(tenant_required=False)``.

Example::

    broker = RedisBroker(url="redis://127.0.0.1:6379/15")
    install(broker)                 # before declaring actors
    dramatiq.set_broker(broker)
"""

from __future__ import annotations

import threading
from contextvars import Token
from typing import TYPE_CHECKING, Any

from dramatiq import Broker, Middleware
from dramatiq.middleware import SkipMessage

from . import NoActiveTenantError, PopotoException, default_router
from ._tasks import KEY, decide, publishing_tenant

if TYPE_CHECKING:
    from dramatiq.broker import MessageProxy
    from dramatiq.message import Message

    from . import Router

__all__ = ["OPTION", "TenantMiddleware", "install"]

#: The message option holding the sender's tenant.
OPTION = KEY


class TenantMiddleware(Middleware):
    """Carry the active tenant from the sender to the worker thread.

    Args:
        router: whose tenants are meant; default the module-level router.
        strict: refuse messages sent outside any tenant block. Default: the router's
            own strict mode.
    """

    def __init__(self, router: Router | None = None, *, strict: bool | None = None) -> None:
        self.router = router if router is not None else default_router
        self.strict = self.router.require_tenant if strict is None else strict
        # Tokens by message proxy; before/after hooks of one message run on one
        # worker thread, but several threads share this middleware.
        self._tokens: dict[int, Token[Any]] = {}
        self._lock = threading.Lock()

    @property
    def actor_options(self) -> set[str]:
        return {"tenant_required"}

    def before_enqueue(self, broker: Broker, message: Message[Any], delay: int) -> None:
        if OPTION in message.options:
            return
        name = publishing_tenant(self.router)
        if name is not None:
            message.options[OPTION] = name

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        actor = broker.get_actor(message.actor_name)
        verdict = decide(
            message.options.get(OPTION),
            inline=False,
            required=actor.options.get("tenant_required", True) is not False,
            strict=self.strict,
            default=self.router.default_name,
        )
        if verdict.activate is None and verdict.refusal is None:
            return
        try:
            if verdict.refusal is not None:
                raise NoActiveTenantError(f"message {message.message_id}: {verdict.refusal}")
            token = self.router.activate(verdict.activate)
        except PopotoException as exc:
            # Dramatiq would log any other error here and run the actor anyway: fail
            # the message (no retry, dead-letter queue) and skip it instead.
            message.fail()
            raise SkipMessage(exc.message) from None
        with self._lock:
            self._tokens[id(message)] = token

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any | None = None,
        exception: BaseException | None = None,
    ) -> None:
        self._reset(message)

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        self._reset(message)

    def _reset(self, message: MessageProxy) -> None:
        with self._lock:
            token = self._tokens.pop(id(message), None)
        if token is not None:
            token.var.reset(token)


def install(
    broker: Broker, router: Router | None = None, *, strict: bool | None = None
) -> TenantMiddleware:
    """Add a :class:`TenantMiddleware` to ``broker``, ahead of all its other middleware.

    Call it before declaring actors that use ``tenant_required``.
    """
    middleware = TenantMiddleware(router, strict=strict)
    first = broker.middleware[0] if broker.middleware else None
    if first is None:
        broker.add_middleware(middleware)
    else:
        broker.add_middleware(middleware, before=type(first))
    return middleware
