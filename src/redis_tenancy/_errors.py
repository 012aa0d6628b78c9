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
    ├── ConnectionBudgetExceededError   no connection slot freed up in time
    ├── NoHealthyEndpointError          (redis ConnectionError) every endpoint is down
    └── NamespaceError                  (redis ResponseError) a command a namespace cannot confine

Errors that Redis itself returns (``redis.exceptions.*``) pass through untouched.
Messages are built from redacted values only: no password or token ever reaches
the log line this class writes.
"""

from __future__ import annotations

import logging

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError as RedisResponseError

__all__ = [
    "ConnectionBudgetExceededError",
    "InvalidTenantNameError",
    "NamespaceError",
    "NoActiveTenantError",
    "NoEventLoopError",
    "NoHealthyEndpointError",
    "PopotoException",
    "TenantConfigError",
    "UnknownTenantError",
]

#: The logger name Popoto uses; keeping it lets existing logging config apply unchanged.
logger = logging.getLogger("POPOTO-REDIS_DB")


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
        logger.error(message)


class TenantConfigError(PopotoException, ValueError):
    """Settings that cannot make a working client: bad URL, keyword, type or value."""


class InvalidTenantNameError(TenantConfigError, TypeError):
    """A tenant name that is neither a ``str`` nor ``None``."""


class UnknownTenantError(PopotoException):
    """A tenant name that is not registered (or was removed)."""

    def __init__(self, name: str, known: int | None = None, hint: str | None = None) -> None:
        hint = hint or (
            "register it first with set_REDIS_DB_settings(name, url=...) "
            "or Router.register(name, ...)"
        )
        count = "" if known is None else f" ({known} tenants registered)"
        super().__init__(f"unknown tenant {name!r}{count}: {hint}")
        self.name = name


class NoActiveTenantError(PopotoException, RuntimeError):
    """Strict mode: a connection was used outside any ``with tenant(...)`` block."""


class NoEventLoopError(PopotoException, RuntimeError):
    """The async proxy was used where no event loop is running."""


class NoHealthyEndpointError(PopotoException, RedisConnectionError):
    """Every endpoint of a tenant is down (or its circuit is open).

    A ``redis.exceptions.ConnectionError`` too, so existing ``except`` blocks for a
    dead server keep working. The message lists each endpoint (redacted) with its own
    last error and when it will next be probed.
    """


class ConnectionBudgetExceededError(PopotoException):
    """``Router(max_connections=N)``: all N connections stayed busy for the whole wait.

    Deliberately not a ``redis.exceptions.ConnectionError``: redis-py's retries would
    otherwise wait for the budget again, ten times over.
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
