"""Parsing connection URLs into client keywords: strictly, and without echoing them.

Accepted forms (``valkey://`` and ``valkeys://`` are valkey-py's names for
``redis://`` and ``rediss://``)::

    redis://[[user]:password@]host[:port][/db][?option=value&...]
    rediss://...                     the same over TLS
    unix://[[user]:password@]/path/to/socket[?db=N&...]
    redis+sentinel://[[user]:password@]host[:port],host[:port]/service[/db]
    redis+cluster://[[user]:password@]host[:port],host[:port][/0]

Why not redis-py's ``parse_url``: it quietly reads ``/1x`` and ``/one`` as db 0 and
``/1/2`` as db 12 (on a shared server, another tenant's data), accepts port 0 and a
blank host, and its errors quote fragments of the URL, which for a malformed URL may
be part of the password. Here every part is checked against a grammar and every
error names the part that is wrong without quoting it; the URL is shown only through
:func:`~redis_tenancy._redact.redact_url`.

One deliberate limit: the user info ends at the *last* ``@``, and a ``/``, ``?`` or
``#`` before that ``@`` is refused (a raw password holding one of them would
otherwise be read as part of the path or query, as RFC 3986 and urllib read it).
Percent-encode such a password (``urllib.parse.quote(password, safe="")``), and write
an ``@`` that comes after the host (in a query value, a socket path) as ``%40``.

Errors are raised outside any ``except`` block, so no original exception with the raw
text is reachable through ``__context__``. Nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote

from redis.connection import URL_QUERY_ARGUMENT_PARSERS

from ._checks import is_host, is_ipv6
from ._errors import TenantConfigError
from ._redact import redact_url

__all__ = ["SCHEMES", "ParsedUrl", "parse_url"]

#: Scheme -> the kind of URL it is.
SCHEMES: Mapping[str, str] = {
    "redis": "tcp",
    "valkey": "tcp",
    "rediss": "tls",
    "valkeys": "tls",
    "unix": "unix",
    "redis+sentinel": "sentinel",
    "redis+cluster": "cluster",
}
_SCHEME_LIST = ", ".join(f"{s}://" for s in SCHEMES)
_DEFAULT_PORT = {"tcp": 6379, "tls": 6379, "sentinel": 26379, "cluster": 6379}
_PORT = re.compile(r"[0-9]{1,5}")
_DB = re.compile(r"/(?:([0-9]{1,9})/?)?")
_DIGITS = re.compile(r"[0-9]{1,9}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")
_PERCENT_ENCODE = (
    "percent-encode them in the password (urllib.parse.quote(password, safe='')), "
    "and write an '@' that comes after the host as %40"
)


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    """What a URL says, as client keywords.

    Attributes:
        kind: ``"tcp"``, ``"tls"``, ``"unix"``, ``"sentinel"`` or ``"cluster"``.
        kwargs: the client keywords the URL gives (host, port, db, credentials,
            ``ssl``, ``unix_socket_path`` and query options, already converted).
        nodes: the host list of a Sentinel or Cluster URL.
        service: the Sentinel service name.
        shown: the URL redacted, for messages.
    """

    kind: str
    kwargs: Mapping[str, Any] = field(repr=False)
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    shown: str = ""


def parse_url(url: object, where: str, what: str = "url") -> ParsedUrl:
    """Parse ``url`` or raise ``TenantConfigError`` naming ``where`` and the bad part.

    ``what`` names the URL in messages (``"url"``, ``"failover url"``).
    """
    if not isinstance(url, str):
        raise TenantConfigError(f"{where}: {what} must be a str, got {type(url).__name__}")
    shown = redact_url(url)
    parsed = _parse(url)
    if isinstance(parsed, str):
        raise TenantConfigError(f"{where}: invalid {what} {shown}: {parsed}")
    return ParsedUrl(parsed.kind, parsed.kwargs, parsed.nodes, parsed.service, shown)


def _parse(url: str) -> ParsedUrl | str:
    """The parsed URL, or the reason it is refused (which never quotes the URL)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return f"no scheme: a url starts with one of {_SCHEME_LIST}"
    kind = SCHEMES.get(scheme.lower())
    if kind is None:
        return f"unknown scheme: use one of {_SCHEME_LIST}"
    kwargs: dict[str, Any] = {}
    at = rest.rfind("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        if any(c in userinfo for c in "/?#"):
            return f"the part before '@' holds '/', '?' or '#': {_PERCENT_ENCODE}"
        user, _, password = userinfo.partition(":")
        decoded = _decode(user), _decode(password)
        if decoded[0] is None or decoded[1] is None:
            return "the user name or password has a percent-escape that is not UTF-8"
        if decoded[0]:
            kwargs["username"] = decoded[0]
        if decoded[1]:
            kwargs["password"] = decoded[1]
    if "#" in rest:
        return "a '#' after the host (in a password, write it as %23)"
    if any(c.isspace() or not c.isprintable() for c in rest):
        return "whitespace or a control character after the scheme (blank host?)"
    rest, qmark, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    path = slash + path
    if kind in ("sentinel", "cluster"):
        return _multi_host(kind, authority, path, query if qmark else None, kwargs)
    options = _query(query) if qmark else {}
    if isinstance(options, str):
        return options
    if kind == "unix":
        if authority:
            return "unix:// takes no host: write unix:///path/to/socket"
        socket_path = _decode(path)
        if not socket_path or socket_path == "/":
            return "unix:// needs a socket path"
        kwargs["unix_socket_path"] = socket_path
    else:
        node = _host_port(authority, _DEFAULT_PORT[kind])
        if isinstance(node, str):
            return node
        host, port = node
        kwargs["host"] = host
        if port is not None:
            kwargs["port"] = port
        db = _db(path)
        if isinstance(db, str):
            return db
        if db is not None:
            if "db" in options and options["db"] != db:
                return "db is given twice, in the path and as ?db=, with different values"
            kwargs["db"] = db
        if kind == "tls":
            kwargs["ssl"] = True
    kwargs.update(options)
    return ParsedUrl(kind, kwargs)


def _multi_host(
    kind: str, authority: str, path: str, query: str | None, kwargs: dict[str, Any]
) -> ParsedUrl | str:
    """``redis+sentinel://`` and ``redis+cluster://``: a host list, then a path."""
    if query is not None:
        return f"query options are not read from redis+{kind}:// urls; pass them as keywords"
    nodes = []
    for item in authority.split(","):
        if not item:
            return "empty host in the host list"
        node = _host_port(item, _DEFAULT_PORT[kind])
        if isinstance(node, str):
            return node
        nodes.append((node[0], node[1] if node[1] is not None else _DEFAULT_PORT[kind]))
    parts = path.removesuffix("/").split("/")[1:] if path not in ("", "/") else []
    service = ""
    if kind == "sentinel":
        if not parts or not parts[0]:
            return "needs the service name, as redis+sentinel://host:26379/<service_name>[/db]"
        decoded = _decode(parts.pop(0))
        if not decoded:
            return "the service name has a percent-escape that is not UTF-8"
        service = decoded
    if parts and not all(parts):
        return "bad db: the path after the host list must be /<db number>"
    if parts:
        db = _db("/" + "/".join(parts))
        if isinstance(db, str):
            return db
        if db is not None:
            kwargs["db"] = db
    return ParsedUrl(kind, kwargs, tuple(nodes), service)


def _host_port(item: str, default: int) -> tuple[str, int | None] | str:
    """``host[:port]`` or ``[ipv6][:port]``; the port is ``None`` when not given."""
    if item.startswith("["):
        close = item.find("]")
        host, tail = (item[1:close], item[close + 1 :]) if close > 0 else ("", "?")
        if not is_ipv6(host):
            return "bad host: an IPv6 address in [brackets] expected"
    else:
        if item.count(":") > 1:
            return "bad host: an IPv6 address must be written in [brackets]"
        host, colon, port_text = item.partition(":")
        tail = colon + port_text
        if not host:
            return "no host"
        if not is_host(host):
            return "bad host: a host name has only ASCII letters, digits, '.', '-' and '_'"
    if not tail:
        return host, None
    if not tail.startswith(":") or not _PORT.fullmatch(tail[1:]):
        return "bad port: a port is a number in 1..65535"
    port = int(tail[1:])
    if not 0 < port < 65536:
        return "bad port: a port is a number in 1..65535"
    return host, port


def _db(path: str) -> int | str | None:
    """The db of a ``/<db>`` path (``None`` for no path), or the reason it is bad."""
    if not path:
        return None
    match = _DB.fullmatch(path)
    if match is None:
        return "bad db: the path after the host must be /<db number> (e.g. /0)"
    return None if match.group(1) is None else int(match.group(1))


def _query(query: str) -> dict[str, Any] | str:
    """``option=value&...`` converted as redis-py converts them, or the reason it is bad."""
    options: dict[str, Any] = {}
    for item in query.split("&"):
        if not item:
            continue
        raw_key, eq, raw_value = item.partition("=")
        key = _decode(raw_key.replace("+", " "))
        value = _decode(raw_value.replace("+", " "))
        if key is None or value is None:
            return "a query argument has a percent-escape that is not UTF-8"
        name = query_name(key)
        if not eq or not value:
            return f"query argument {name} has no value"
        if key in options:
            return f"query argument {name} is given twice"
        parser = _PARSERS.get(key)
        if parser is None:
            options[key] = value
            continue
        converted = _convert(parser, value)
        if converted is _BAD:
            return f"bad value for query argument {name}"
        options[key] = converted
    return options


def query_name(key: str) -> str:
    """A query argument's name for a message: quoted if it looks like one, else hidden."""
    if _IDENTIFIER.fullmatch(key):
        return repr(key)
    return "(a name that is not an identifier, not shown)"


_BAD = object()


def _query_db(value: str) -> int:
    # int() would take "1_0" and non-ASCII digits; a db is plain ASCII digits.
    if not _DIGITS.fullmatch(value):
        raise ValueError("not a db number")
    return int(value)


#: How redis-py converts each query option (its public table), with a stricter db.
_PARSERS: Mapping[str, Callable[[str], Any]] = {
    **cast("Mapping[str, Callable[[str], Any]]", URL_QUERY_ARGUMENT_PARSERS),
    "db": _query_db,
}


def _convert(parser: Callable[[str], Any], value: str) -> Any:
    try:
        return parser(value)
    except (TypeError, ValueError, OverflowError):
        return _BAD


def _decode(text: str) -> str | None:
    """Percent-decode ``text``; ``None`` if an escape is not UTF-8."""
    if "%" not in text:
        return text
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        return None
