"""redis-py ``Retry`` objects that never retry "every endpoint is down".

redis-py retries a command that failed with a ``ConnectionError`` (ten times, with
backoff, by default). When the router has already found every endpoint of a tenant
down, another nine rounds of the same verdict only make the caller wait, so each
managed connection puts a small class in front of its ``Retry``: it narrows
``is_retryable`` and then runs the class it is mixed into, so a user's own ``Retry``
subclass keeps whatever else it does.

redis-py deep-copies the ``retry`` keyword into every connection it makes; the
wrapper is one more object per connection, of a subclass made once per ``Retry`` class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis.asyncio.retry
import redis.retry
from redis.exceptions import ConnectionError as RedisConnectionError

from ._errors import NoHealthyEndpointError

if TYPE_CHECKING:
    from ._failover import EndpointPlan

__all__ = ["EndpointsDown", "wrap_retry"]


class EndpointsDown(RedisConnectionError):
    """Internal: no endpoint took a new connection, and no tenant holds it yet.

    Raised from inside a pool's ``get_connection``; the tenant's pool view catches it
    and raises :class:`NoHealthyEndpointError` naming the tenant (this one logs nothing).
    """

    def __init__(self, plan: EndpointPlan) -> None:
        super().__init__("no healthy endpoint")
        self.plan = plan


def _retryable(error: Exception) -> bool:
    return not isinstance(error, NoHealthyEndpointError | EndpointsDown)


def _both(is_retryable: Any) -> Any:
    return lambda error: _retryable(error) and is_retryable(error)


class _PlanRetry:
    """Put in front of a connection's sync ``Retry`` class."""

    __slots__ = ()

    def call_with_retry(
        self, do: Any, fail: Any, is_retryable: Any = None, with_failure_count: bool = False
    ) -> Any:
        check = _retryable if is_retryable is None else _both(is_retryable)
        return super().call_with_retry(do, fail, check, with_failure_count)  # type: ignore[misc]


class _AsyncPlanRetry:
    """The async twin of :class:`_PlanRetry`."""

    __slots__ = ()

    async def call_with_retry(
        self, do: Any, fail: Any, is_retryable: Any = None, with_failure_count: bool = False
    ) -> Any:
        check = _retryable if is_retryable is None else _both(is_retryable)
        return await super().call_with_retry(do, fail, check, with_failure_count)  # type: ignore[misc]


_PLAN_RETRY_CLASSES: dict[type, type] = {}


def wrap_retry(retry: Any) -> Any:
    """``retry`` with :class:`_PlanRetry` (or its async twin) in front of its class.

    redis-py's own ``Retry`` and any subclass of it are wrapped; other objects are
    returned as they are. ``retry`` itself is left untouched.
    """
    if isinstance(retry, redis.asyncio.retry.Retry):
        mixin: type = _AsyncPlanRetry
    elif isinstance(retry, redis.retry.Retry):
        mixin = _PlanRetry
    else:
        return retry
    cls = type(retry)
    if issubclass(cls, mixin):
        return retry
    planned = _PLAN_RETRY_CLASSES.get(cls)
    if planned is None:
        name = f"Plan{cls.__name__}"
        namespace = {"__module__": __name__, "__qualname__": name}
        planned = _PLAN_RETRY_CLASSES[cls] = type(name, (mixin, cls), namespace)
    wrapped: Any = object.__new__(planned)
    wrapped.__dict__.update(vars(retry))
    return wrapped
