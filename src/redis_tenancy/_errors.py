"""Everything redis-tenancy raises, rooted in ``PopotoException``.

Code written against ``popoto.redis_db`` catches ``PopotoException``; keeping it as
the single root means a port to redis-tenancy never lets a new error slip past an
existing ``except`` block. Each subclass also derives from the builtin that best
describes it, so ``except TypeError`` / ``except ValueError`` keep working too::

    PopotoException                     (Exception; logs its message at ERROR)
    ├── TenantConfigError               (ValueError) bad settings, URL or keyword
    │   └── InvalidTenantNameError      (TypeError)  a name that is not a str
    ├── UnknownTenantError              a name nobody registered
    ├── NoActiveTenantError             (RuntimeError) strict mode, outside tenant()
    ├── NoEventLoopError                (RuntimeError) async proxy without a running loop
    ├── StaleClientError                (RuntimeError) an object made before its tenant
    │                                   was replaced or removed
    ├── ConnectionBudgetExceededError   no connection slot freed up in time
    ├── NoHealthyEndpointError          (redis ConnectionError) every endpoint is down
    ├── TenantContextError              (RuntimeError) a tenant() block exited unentered
    └── NamespaceError                  (redis ResponseError) a command a namespace
                                        cannot confine

Errors that Redis itself returns (``redis.exceptions.*``) pass through untouched.
Messages are built from redacted values only: no password or token ever reaches
the log line this class writes.

Three of them can be raised by every caller at once: while a server is down
(``NoHealthyEndpointError``, ``ConnectionBudgetExceededError``), or when clients send
tenant names nobody registered (``UnknownTenantError``). Logging each would flood the
log (8 threads: ~25 000 lines in 4 s), so they log through a :class:`Throttle`: once
per change of state (per tenant and endpoints, for an outage), plus at most one
"N similar errors suppressed" line per second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError as RedisResponseError

__all__ = [
    "ConnectionBudgetExceededError",
    "EndpointsDown",
    "InvalidTenantNameError",
    "NamespaceError",
    "NoActiveTenantError",
    "NoEventLoopError",
    "NoHealthyEndpointError",
    "PopotoException",
    "StaleClientError",
    "TenantConfigError",
    "TenantContextError",
    "Throttle",
    "UnknownTenantError",
    "Unresolved",
    "resolved",
]

#: The logger name Popoto uses; keeping it lets existing logging config apply unchanged.
logger = logging.getLogger("POPOTO-REDIS_DB")

T = TypeVar("T")


class Throttle:
    """Decides which of many identical errors reach the log.

    An error is identified by a ``key`` (say, a tenant and its endpoints) and a
    ``state`` (what its endpoints failed with). The first error of a key is logged in
    full, and so is the first after its state changed or after a quiet spell of more
    than ``interval``; later ones only count, and at most once per ``interval`` a
    summary says how many were suppressed. I/O-free: it returns the line to log (or
    ``None``), the caller logs it.

    Args:
        interval: seconds between two summaries of one key.
        clock: a monotonic clock in seconds.
        capacity: keys remembered; beyond that the memory starts afresh (a key whose
            entry was dropped logs its next error in full again).
    """

    def __init__(
        self,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        capacity: int = 10_000,
    ) -> None:
        self.interval = interval
        self.clock = clock
        self.capacity = capacity
        self._lock = threading.Lock()
        self._seen: dict[Hashable, _Seen] = {}

    def line(self, key: Hashable, state: Hashable, message: str) -> str | None:
        """The line to log for this error, or ``None`` to stay quiet."""
        now = self.clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is None or seen.state != state or now - seen.last > self.interval:
                if seen is None and len(self._seen) >= self.capacity:
                    self._seen.clear()
                self._seen[key] = _Seen(state, now)
                return message
            seen.last = now
            if now - seen.reported < self.interval:
                seen.suppressed += 1
                return None
            count, seen.suppressed, seen.reported = seen.suppressed, 0, now
        return f"{count} similar errors suppressed since the last report; the latest: {message}"


class _Seen:
    """What a :class:`Throttle` remembers of one key."""

    __slots__ = ("last", "reported", "state", "suppressed")

    def __init__(self, state: Hashable, now: float) -> None:
        self.state = state
        self.reported = now  # when a line was last logged
        self.last = now  # when an error was last seen
        self.suppressed = 0


#: The throttle of the hot-path errors (tests may swap it for one with a fake clock).
THROTTLE = Throttle()


class PopotoException(Exception):
    """Base of every error the library raises; logs its message when created.

    As in Popoto, the message is logged at ERROR on creation so callers need no
    separate log call when they catch and re-raise.

    Attributes:
        message: human-readable, already redacted description.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self._log(message)

    def _log(self, message: str) -> None:
        logger.error(message)


class _Throttled(PopotoException):
    """An error raised by every caller during an outage: logged through :data:`THROTTLE`.

    ``key`` says which outage this is (tenant and endpoints), ``state`` what it looks
    like now; without a key the error logs like any other.
    """

    def __init__(
        self, message: str, *, key: Hashable | None = None, state: Hashable = None
    ) -> None:
        self._key = key
        self._state = state
        super().__init__(message)

    def _log(self, message: str) -> None:
        if self._key is None:
            logger.error(message)
            return
        line = THROTTLE.line(self._key, self._state, message)
        if line is not None:
            logger.error(line)


class TenantConfigError(PopotoException, ValueError):
    """Settings that cannot make a working client: bad URL, keyword, type or value."""


class InvalidTenantNameError(TenantConfigError, TypeError):
    """A tenant name that is neither a ``str`` nor ``None``."""


class UnknownTenantError(_Throttled):
    """A tenant name that is not registered (or was removed).

    Throttled like the outage errors: a request middleware asked for names clients send
    (``Host``, a header) would otherwise log one ERROR line per probing request.
    """

    def __init__(self, name: str, known: int | None = None, hint: str | None = None) -> None:
        hint = hint or (
            "register it first with set_REDIS_DB_settings(name, url=...) "
            "or Router.register(name, ...)"
        )
        count = "" if known is None else f" ({known} tenants registered)"
        super().__init__(
            f"unknown tenant {name!r}{count}: {hint}", key=("unknown tenant",), state=None
        )
        self.name = name


class NoActiveTenantError(PopotoException, RuntimeError):
    """Strict mode: a connection was used outside any ``with tenant(...)`` block."""


class NoEventLoopError(PopotoException, RuntimeError):
    """The async proxy was used where no event loop is running."""


class StaleClientError(PopotoException, RuntimeError):
    """A client, pipeline or pub/sub object outlived its tenant's settings.

    Objects made from a tenant's client keep the connection settings they were made
    with. Once the tenant is replaced (or removed) they would keep talking to the old
    server, which may by then hold another tenant's data; instead they refuse to open
    or take a connection and raise this. Make a new one from ``POPOTO_REDIS_DB`` /
    ``get_REDIS_DB()`` (or the async twins). Deliberately not a
    ``redis.exceptions.ConnectionError``: retrying cannot help.
    """


class NoHealthyEndpointError(_Throttled, RedisConnectionError):
    """Every endpoint of a tenant is down (or its circuit is open).

    A ``redis.exceptions.ConnectionError`` too, so existing ``except`` blocks for a
    dead server keep working. The message names the calling tenant and lists each
    endpoint (redacted) with its own last error and when it will next be probed.
    """


class ConnectionBudgetExceededError(_Throttled):
    """``Router(max_connections=N)``: all N connections stayed busy for the whole wait.

    Deliberately not a ``redis.exceptions.ConnectionError``: redis-py's retries would
    otherwise wait for the budget again, ten times over.
    """


class TenantContextError(PopotoException, RuntimeError):
    """A ``tenant()`` block exited without being entered in that thread or task.

    Also raised by a second exit of the same entry. The active tenant is left as it
    was: nothing is reset with another thread's or task's token.
    """


class NamespaceError(PopotoException, RedisResponseError):
    """A namespaced client refused a command it cannot confine to the tenant's namespace.

    Raised before anything is sent: the command is refused outright (``FLUSHALL``,
    ``SELECT``...), its keys cannot be located exactly (an unknown module command, a
    ``numkeys`` that is not an integer), or it is not available where it was used
    (``KEYS`` inside a pipeline). Also raised when a reply that carries key names holds
    one outside the namespace, which is then never returned. A
    ``redis.exceptions.ResponseError`` too, like the server's own ``NOPERM``, so
    existing ``except`` blocks keep working. The message names the command and the
    reason, never a key (which could belong to another tenant).

    Attributes:
        command: the command as the caller named it, upper case (``"CLIENT KILL"``).
        reason: why it was refused (or what was wrong with its reply).
    """

    def __init__(self, command: str, reason: str, *, refused: bool = True) -> None:
        verb = "refused on" if refused else "failed on"
        super().__init__(f"{command} {verb} a namespaced client: {reason}")
        self.command = command
        self.reason = reason


class EndpointsDown(RedisConnectionError):
    """Internal: no endpoint took a new connection, and no tenant holds it yet.

    Raised from inside a pool's ``get_connection`` (a ``ConnectionError``, so redis-py's
    retry policy treats it as a plain client's refused connect); the tenant's pool view
    turns it into :class:`NoHealthyEndpointError` naming the tenant. It logs nothing.
    """

    def __init__(self, plan: Any) -> None:
        super().__init__("no healthy endpoint")
        self.plan = plan


class Unresolved(Exception):
    """Internal: the active slot cannot give a client.

    Raised instead of the public error so that a proxy can answer introspection of
    dunder names with a quiet ``AttributeError`` (``PopotoException`` logs on
    creation); :meth:`public` builds the real, logged error when it is needed.
    """

    def __init__(self, make: Callable[[], PopotoException]) -> None:
        super().__init__()
        self.public = make


def resolved(call: Callable[[], T]) -> T:
    """Run ``call``; turn an internal :class:`Unresolved` into its public, logged error."""
    try:
        return call()
    except Unresolved as exc:
        raise exc.public() from None
