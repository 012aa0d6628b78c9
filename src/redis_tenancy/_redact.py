"""Turning connection details into text that is safe to log, show or raise.

Every string the library builds from user settings goes through here first, so the
promise "no password or token in any log line, repr, error, warning or CLI output" is
kept in one place. Code that shows something to a person (a log line, the command
line) calls :func:`redact` on it; the narrower helpers below are what it dispatches to.

The rules, for URLs in particular, assume the worst about malformed input: a password
holding ``/``, ``?``, ``#`` or ``@`` confuses URL parsers into treating part of it as a
path, a query or a port, so masking never depends on the URL parsing correctly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence, Sized
from typing import Any

from ._errors import PopotoException

__all__ = [
    "MASK",
    "SECRET_KEYS",
    "describe_endpoint",
    "describe_value",
    "redact",
    "redact_text",
    "redact_url",
]

MASK = "***"

#: Keyword names whose values are never shown, only their type.
SECRET_KEYS = frozenset(
    {
        "password",
        "ssl_password",
        "credential_provider",
        "token",
        "auth",
        "secret",
        "sentinel_kwargs",
    }
)

_SECRET_QUERY = re.compile(r"(pass|token|secret|auth|key|cred)", re.IGNORECASE)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
#: In free text: a scheme (with or without its //), then everything up to the last '@'
#: before whitespace.
_URL_USERINFO = re.compile(r"([a-z][a-z0-9+.-]*:/{0,2})\S*@", re.IGNORECASE)
#: A string that starts like a URL, even a malformed one ("redis:/h", "redis::pw@h").
_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,30}:")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,30}")
_PLAIN_USER = re.compile(r"[A-Za-z0-9._~-]{0,64}")
#: host[:port] without userinfo: a name or a bracketed IPv6 literal, digits for a port.
_PLAIN_NODE = re.compile(r"(?:[A-Za-z0-9_.-]*|\[[0-9A-Fa-f:.]*(?:%[A-Za-z0-9_.-]+)?\])(?::[0-9]*)?")
_AUTHORITY_END = re.compile(r"[/?#]")


def redact_url(url: str) -> str:
    """Return ``url`` with its credentials and secret-looking query values masked.

    Works on malformed URLs too: everything between ``://`` and the *last* ``@`` is
    masked before any parsing. A URL without ``@`` whose host part is not a plain
    ``host[:port]`` list may be a password with a forgotten ``@host``: all of it after
    the scheme is masked.

    >>> redact_url("redis://alice:s3cret@db.example:6379/2")
    'redis://alice:***@db.example:6379/2'
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        # Not URL-shaped at all: show only that something was there.
        return f"<unparseable url of {len(url)} characters>"
    at = rest.rfind("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, _ = userinfo.partition(":")
        # redis://secret@host carries a password-like username: hide it too.
        shown = f"{user}:{MASK}" if colon and _PLAIN_USER.fullmatch(user) else MASK
        prefix = f"{shown}@"
    else:
        prefix = ""
        authority = _AUTHORITY_END.split(rest, maxsplit=1)[0]
        if not all(_PLAIN_NODE.fullmatch(node) for node in authority.split(",")):
            return f"{scheme}://{MASK}"
    base, qmark, query = rest.partition("?")
    if qmark:
        parts = []
        for item in query.split("&"):
            key, eq, _ = item.partition("=")
            parts.append(f"{key}={MASK}" if eq and _SECRET_QUERY.search(key) else item)
        rest = f"{base}?{'&'.join(parts)}"
    return f"{scheme}{sep}{prefix}{rest}"


def redact_text(text: str, secrets: Mapping[str, Any] | None = None) -> str:
    """Mask quoted literals in a third-party error message and any known secret value.

    Error texts from ``urllib`` or redis-py sometimes quote a fragment of the input
    (``Port could not be cast to integer value as 'ab'``), and with a malformed URL
    that fragment may be part of a password. Quoted fragments are therefore masked,
    except the names of query arguments redis-py reports; so is the user info of any
    URL in the text.
    """
    if not text.startswith("Invalid value for"):
        text = _QUOTED.sub(f"'{MASK}'", text)
    text = _URL_USERINFO.sub(rf"\g<1>{MASK}@", text)
    for key, value in (secrets or {}).items():
        if key in SECRET_KEYS and isinstance(value, str) and value:
            text = text.replace(value, MASK)
    return text


def describe_value(key: str, value: Any) -> str:
    """Show a value for an error message without ever showing a possible secret.

    Numbers, booleans and ``None`` are shown; strings, bytes and containers only by
    type (and size): a password pasted into the wrong keyword must not come back in
    the error that refuses it. Values of secret keywords show their type only.
    """
    kind = type(value).__name__
    if key in SECRET_KEYS:
        return f"a value of type {kind}"
    if value is None or isinstance(value, bool | int | float):
        return f"{value!r} (type {kind})"
    if isinstance(value, str | bytes | bytearray):
        return f"a {kind}"
    if isinstance(value, Sized):
        return f"a {kind} of {len(value)} items"
    return f"a value of type {kind}"


def describe_endpoint(
    kwargs: Mapping[str, Any],
    kind: str = "standalone",
    nodes: Sequence[tuple[str, int]] = (),
    service: str = "",
) -> str:
    """A redacted URL-like description of where ``kwargs`` connect.

    ``kind``, ``nodes`` and ``service`` are a topology's (Sentinel and Cluster list
    their nodes instead of one host).
    """
    if kind in ("sentinel", "cluster"):
        auth = f"{kwargs.get('username') or ''}:{MASK}@" if kwargs.get("password") else ""
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in nodes)
        if kind == "cluster":
            return f"redis+cluster://{auth}{hosts}"
        return f"redis+sentinel://{auth}{hosts}/{service}/{kwargs.get('db', 0)}"
    pool = kwargs.get("connection_pool")
    if pool is not None:
        kwargs = pool.connection_kwargs
    db = kwargs.get("db", 0)
    auth = ""
    if kwargs.get("password") or kwargs.get("credential_provider"):
        user = kwargs.get("username") or ""
        auth = f"{user}:{MASK}@"
    if kwargs.get("unix_socket_path") or kwargs.get("path"):
        path = kwargs.get("unix_socket_path") or kwargs.get("path")
        return f"unix://{auth}{path}?db={db}"
    scheme = "rediss" if kwargs.get("ssl") else "redis"
    host = kwargs.get("host", "localhost")
    if ":" in str(host):
        host = f"[{host}]"
    return f"{scheme}://{auth}{host}:{kwargs.get('port', 6379)}/{db}"


def redact(value: object) -> str:
    """Text safe to show a person for any value: the one call for logs and the CLI.

    - an exception: its type and message (ours are built redacted; anyone else's
      has quoted fragments and URL credentials masked);
    - a string that starts like a URL (``scheme:``): :func:`redact_url`; any other
      string: :func:`redact_text`;
    - a mapping of settings: each keyword with :func:`describe_value`, URLs redacted;
    - anything else: its ``str`` through :func:`redact_text`.

    >>> redact({"url": "redis://:pw@h:1/0", "password": "pw", "db": 2})
    "{'url': 'redis://:***@h:1/0', 'password': a value of type str, 'db': 2}"
    """
    if isinstance(value, PopotoException):
        return f"{type(value).__name__}: {value.message}"
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {redact_text(str(value))}"
    if isinstance(value, str):
        return redact_url(value) if _URL_START.match(value) else redact_text(value)
    if isinstance(value, Mapping):
        shown = []
        for key, item in value.items():
            name = str(key) if isinstance(key, str) else f"<{type(key).__name__}>"
            if isinstance(item, str) and "://" in item and name not in SECRET_KEYS:
                text = repr(redact_url(item))
            elif isinstance(item, bool | int | float) or item is None:
                text = repr(item)
            else:
                text = describe_value(name, item)
            shown.append(f"{name!r}: {text}")
        return "{" + ", ".join(shown) + "}"
    return redact_text(str(value))
