"""Taking the namespace's prefix off key names in replies, before redis-py parses them.

Each rule works on the *raw* reply (what the connection's parser returns, before any
response callback): RESP2 arrays or RESP3 maps, bytes or str. Working before the
callbacks keeps the rules independent of how a redis-py version shapes its parsed
results. The rules also accept redis-py's parsed shapes (tuples, lists of pairs), which
the Cluster client, whose node callbacks it does not own, applies them to. A key name
outside the namespace raises :class:`KeyOutside`, which the client turns into a
:class:`NamespaceError` (the reply is never returned, and the message never quotes the
key, which may be another tenant's).

Pub/sub messages have their own functions: :func:`unprefix_message` (raw, used by the
namespaced ``PubSub`` classes) and :func:`unprefix_parsed_message` (redis-py's message
dicts, for the Cluster's sharded pub/sub, whose per-node ``PubSub`` objects are
redis-py's).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._errors import NamespaceError
from ._nslua import unwrap_text

if TYPE_CHECKING:
    from ._namespace import Namespace

__all__ = ["REPLY_RULES", "KeyOutside", "unprefix_message", "unprefix_parsed_message"]


class KeyOutside(Exception):
    """A reply held a key (or channel, or pattern) outside the namespace.

    Internal and cheap: the client turns it into one :class:`NamespaceError` naming
    the command (and never the key).
    """


def _keys(ns: Namespace, raw: Any) -> list[Any]:
    unkey = ns.unkey
    return [unkey(k) for k in raw]


def _like(raw: Any, items: list[Any]) -> Any:
    """``items`` in the sequence type of ``raw`` (redis-py parses some replies to tuples)."""
    return tuple(items) if isinstance(raw, tuple) else items


def _scan(ns: Namespace, raw: Any) -> Any:
    return _like(raw, [raw[0], _keys(ns, raw[1])])


def _first(ns: Namespace, raw: Any) -> Any:
    if raw is None or isinstance(raw, (bytes, str, int)):
        return raw
    return _like(raw, [ns.unkey(raw[0]), *raw[1:]])


def _keylist(ns: Namespace, raw: Any) -> Any:
    return None if raw is None else _like(raw, _keys(ns, raw))


def _firsts(ns: Namespace, raw: Any) -> Any:
    return _like(raw, [_like(item, [ns.unkey(item[0]), *item[1:]]) for item in raw])


def _pairs(ns: Namespace, raw: Any) -> Any:
    if isinstance(raw, Mapping):
        return {ns.unkey(k): v for k, v in raw.items()}
    items = list(raw)
    if items and isinstance(items[0], (list, tuple)):  # parsed: [(channel, count), ...]
        return _like(raw, [_like(item, [ns.unkey(item[0]), *item[1:]]) for item in items])
    for i in range(0, len(items), 2):
        items[i] = ns.unkey(items[i])
    return _like(raw, items)


def _streams(ns: Namespace, raw: Any) -> Any:
    if raw is None:
        return None
    if isinstance(raw, Mapping):
        return {ns.unkey(k): v for k, v in raw.items()}
    return _like(raw, [_like(item, [ns.unkey(item[0]), *item[1:]]) for item in raw])


def _script_show(ns: Namespace, raw: Any) -> Any:
    return unwrap_text(raw) if isinstance(raw, (bytes, str)) else raw


#: Rule name (as in the command table) -> ``rule(namespace, raw_reply) -> raw_reply``.
#: ``"sha"`` (SCRIPT LOAD) is not here: it needs the caller's SHA, bound per call.
REPLY_RULES: dict[str, Callable[[Namespace, Any], Any]] = {
    "first": _first,
    "firsts": _firsts,
    "keylist": _keylist,
    "pairs": _pairs,
    "scan": _scan,
    "script_show": _script_show,
    "streams": _streams,
}

_CHANNEL_MESSAGES = frozenset(
    {"message", "subscribe", "unsubscribe", "smessage", "ssubscribe", "sunsubscribe"}
)
_PATTERN_MESSAGES = frozenset({"psubscribe", "punsubscribe"})


def unprefix_message(ns: Namespace, response: Any) -> Any:
    """A raw pub/sub message (``[type, channel-or-pattern, ...]``) in logical names.

    ``pmessage`` carries the pattern (prefix glob-escaped) and the channel; the
    subscribe/unsubscribe confirmations carry the channel or pattern (``None`` when an
    unsubscribe-all had nothing to undo). Other replies (``pong``) pass unchanged.
    """
    if not isinstance(response, (list, tuple)) or len(response) < 2:
        return response
    kind = response[0]
    kind = kind.decode() if isinstance(kind, bytes) else kind
    if not isinstance(kind, str):
        return response
    kind = kind.lower()
    out = list(response)
    try:
        if kind in _CHANNEL_MESSAGES:
            if out[1] is not None:
                out[1] = ns.unkey(out[1])
        elif kind in _PATTERN_MESSAGES:
            if out[1] is not None:
                out[1] = ns.unpattern(out[1])
        elif kind == "pmessage":
            out[1] = ns.unpattern(out[1])
            out[2] = ns.unkey(out[2])
        else:
            return response
    except KeyOutside:
        raise NamespaceError(
            kind.upper(),
            "a pub/sub message named a channel outside the namespace (not returned)",
            refused=False,
        ) from None
    return out


def unprefix_parsed_message(ns: Namespace, message: Any) -> Any:
    """A message dict as redis-py's ``PubSub`` hands it out (``type``, ``pattern``,
    ``channel``, ``data``) in logical names, by the same rules as
    :func:`unprefix_message`; ``None`` and other values pass unchanged."""
    if not isinstance(message, dict) or "channel" not in message:
        return message
    names = ("pattern", "channel") if message.get("pattern") is not None else ("channel",)
    raw = unprefix_message(ns, [message["type"], *(message[name] for name in names)])
    return {**message, **dict(zip(names, raw[1:], strict=True))}
