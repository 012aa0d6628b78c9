"""Turning connection details into text that is safe to log, show or raise.

Every string the library builds from user settings goes through here first, so the
promise "no password or token in any log line, repr or error" is kept in one place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "SECRET_KEYS", "describe_value", "redact_text", "redact_url"]

MASK = "***"

#: Keyword names whose values are never shown, only their type.
SECRET_KEYS = frozenset(
    {"password", "ssl_password", "credential_provider", "token", "auth", "secret"}
)

_SECRET_QUERY = re.compile(r"(pass|token|secret|auth|key)", re.IGNORECASE)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_URL_USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://)[^\s@/]*@", re.IGNORECASE)


def redact_url(url: str) -> str:
    """Return ``url`` with its credentials and secret-looking query values masked.

    Works on malformed URLs too: everything between ``://`` and the *last* ``@`` is
    masked before any parsing, because a password holding ``/``, ``#`` or ``?``
    confuses URL parsers into treating part of it as a path or a port.

    >>> redact_url("redis://alice:s3cret@db.example:6379/2")
    'redis://alice:***@db.example:6379/2'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        # Not URL-shaped at all: show only that something was there.
        return f"<unparseable url of {len(url)} characters>"
    at = rest.rfind("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, _ = userinfo.partition(":")
        # A URL like redis://secret@host carries a password-like username: hide it.
        shown = f"{user}:{MASK}" if colon and "/" not in user and "?" not in user else MASK
        rest = f"{shown}@{rest}"
    base, qmark, query = rest.partition("?")
    if qmark:
        parts = []
        for item in query.split("&"):
            key, eq, _ = item.partition("=")
            parts.append(f"{key}={MASK}" if eq and _SECRET_QUERY.search(key) else item)
        rest = f"{base}?{'&'.join(parts)}"
    return f"{scheme}{sep}{rest}"


def redact_text(text: str, secrets: Mapping[str, Any] | None = None) -> str:
    """Mask quoted literals in a third-party error message and any known secret value.

    Error texts from ``urllib`` or redis-py sometimes quote a fragment of the input
    (``Port could not be cast to integer value as 'ab'``), and with a malformed URL
    that fragment may be part of a password. Quoted fragments are therefore masked,
    except the names of query arguments redis-py reports.
    """
    if not text.startswith("Invalid value for"):
        text = _QUOTED.sub(f"'{MASK}'", text)
    text = _URL_USERINFO.sub(rf"\g<1>{MASK}@", text)
    for key, value in (secrets or {}).items():
        if key in SECRET_KEYS and isinstance(value, str) and value:
            text = text.replace(value, MASK)
    return text


def describe_value(key: str, value: Any) -> str:
    """Show a value for an error message: its repr, or only its type for secrets."""
    if key in SECRET_KEYS:
        return f"a value of type {type(value).__name__}"
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{shown} (type {type(value).__name__})"
