"""The validators every input check of the library is made of.

One style for all of them: a :class:`Check` is a predicate plus the phrase that says
what it expects, and :func:`require` turns a failed check into one
:class:`~redis_tenancy._errors.TenantConfigError` of the shape
``"<where>: <key> must be <expected>, got <value>"``. The keyword table of
:mod:`redis_tenancy._settings`, the :class:`~redis_tenancy.Router` arguments, the
circuit-breaker policy (:func:`check_policy`) and the registry's bulk checks all use
the checks defined here, so a number is "finite" and a count "an int, not a bool"
in the same way everywhere.

The offending value is shown through :func:`~redis_tenancy._redact.describe_value`,
which never prints the content of a string or a container: a password pasted into
the wrong keyword stays out of the message. Nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._errors import InvalidTenantNameError, TenantConfigError
from ._redact import describe_value

__all__ = [
    "BOOL",
    "CALLABLE",
    "COOLDOWN",
    "COUNT",
    "DB",
    "HOST",
    "NAMESPACE",
    "OPTIONAL_BOOL",
    "OPTIONAL_COUNT",
    "OPTIONAL_SECONDS",
    "OPTIONAL_STR",
    "PORT",
    "SECONDS",
    "SECONDS_OR_ZERO",
    "STR",
    "THRESHOLD",
    "Check",
    "check_name",
    "check_policy",
    "is_host",
    "is_int",
    "is_ipv6",
    "is_number",
    "optional",
    "require",
]


def is_int(value: object) -> bool:
    """An ``int`` that is not a ``bool`` (``True`` is an int to Python, not to us)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A finite ``int`` or ``float``, not a ``bool``: NaN and infinity are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return is_int(value) or math.isfinite(value)


@dataclass(frozen=True, slots=True)
class Check:
    """A predicate and the phrase naming what it accepts (``"an int >= 1"``)."""

    test: Callable[[Any], bool]
    expected: str

    def __call__(self, value: object) -> bool:
        return bool(self.test(value))


def optional(check: Check) -> Check:
    """``check`` that also accepts ``None``."""
    return Check(lambda v: v is None or check.test(v), f"{check.expected} or None")


_HOSTNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}")


def is_host(value: object) -> bool:
    """A host name (ASCII letters, digits, ``_.-``) or an IPv6/IPv4 literal.

    Whitespace, ``@``, ``:`` (outside IPv6), ``/`` and anything non-ASCII are refused:
    such a "host" is a URL or a password pasted into the wrong place.
    """
    if not isinstance(value, str):
        return False
    if _HOSTNAME.fullmatch(value):
        return True
    return is_ipv6(value)


def is_ipv6(text: str) -> bool:
    """An IPv6 address, optionally with a ``%zone``, without brackets."""
    if ":" not in text:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


STR = Check(lambda v: isinstance(v, str), "a str")
OPTIONAL_STR = optional(STR)
BOOL = Check(lambda v: isinstance(v, bool), "a bool")
OPTIONAL_BOOL = optional(BOOL)
CALLABLE = optional(Check(callable, "a callable"))
COUNT = Check(lambda v: is_int(v) and v >= 1, "an int >= 1")
OPTIONAL_COUNT = optional(COUNT)
PORT = Check(lambda v: is_int(v) and 0 < v < 65536, "an int in 1..65535")
DB = Check(lambda v: is_int(v) and v >= 0, "an int >= 0")
HOST = Check(is_host, "a host name or IP address (a url goes in url=)")
SECONDS = Check(lambda v: is_number(v) and v > 0, "a number of seconds > 0 (finite)")
OPTIONAL_SECONDS = optional(SECONDS)
SECONDS_OR_ZERO = Check(lambda v: is_number(v) and v >= 0, "a number of seconds >= 0 (finite)")
COOLDOWN = Check(SECONDS_OR_ZERO.test, "a finite number of seconds >= 0")
THRESHOLD = COUNT
NAMESPACE = Check(
    lambda v: v is None or isinstance(v, bool) or (isinstance(v, str) and v != ""),
    "True, False, None or a non-empty str prefix",
)


def require(key: str, value: object, check: Check, where: str = "") -> None:
    """Raise ``TenantConfigError`` naming ``where``, ``key`` and the expectation unless
    ``check`` accepts ``value``."""
    if not check.test(value):
        prefix = f"{where}: " if where else ""
        raise TenantConfigError(
            f"{prefix}{key} must be {check.expected}, got {describe_value(key, value)}"
        )


def check_policy(cooldown: object, threshold: object, where: str = "") -> None:
    """Validate a circuit-breaker policy (``failover_cooldown``/``failover_threshold``).

    ``CircuitPolicy.__post_init__`` calls it, and so does settings parsing before it
    builds one, so the tenant's name is in the message.
    """
    require("failover_cooldown", cooldown, COOLDOWN, where)
    require("failover_threshold", threshold, THRESHOLD, where)


def check_name(name: object) -> str | None:
    """Return ``name`` if it may name a tenant, else raise ``InvalidTenantNameError``.

    ``None`` and ``""`` are allowed and mean "the default tenant"; the caller maps
    them to the default name.
    """
    if name is None or isinstance(name, str):
        return name
    raise InvalidTenantNameError(
        f"tenant name must be a str (or None/'' for the default tenant), got {type(name).__name__}"
    )
