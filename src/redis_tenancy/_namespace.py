"""The namespace engine: a tenant's key prefix and the command rewriting it implies.

:class:`Namespace` turns a command the caller wrote in its *logical* keyspace
(``GET user:1``) into the command the server must run (``GET acme:user:1``), using the
generated command table (:mod:`redis_tenancy._keyspecs`, key positions from the
servers' own key specs) and a few named handlers for commands whose arguments are
not plain keys: SCAN's ``MATCH``, SORT's ``BY``/``GET``/``STORE`` patterns, Lua
scripts (wrapped, see :mod:`redis_tenancy._nslua`), pub/sub channels and patterns.
The plan it returns also says how to take the prefix off key names in the reply.

Commands that cannot be confined to a namespace on a shared server raise
:class:`~redis_tenancy.NamespaceError` naming the command and why. ``KEYS``,
``DBSIZE`` and ``FLUSHDB`` are *emulated* with SCAN (the plan is then a generator of
commands, driven by the sync or async client). A command missing from the table asks
the driver to look it up in the server's ``COMMAND INFO``; if its keys still cannot be
found exactly it is refused, never passed through.

No I/O here: the sync and async clients (:mod:`redis_tenancy._nsclient`,
:mod:`redis_tenancy._nsclient_async`) drive the same plans.

Example::

    ns = Namespace("acme:")
    ns.plan(("MGET", "a", "b")).args   # ('MGET', 'acme:a', 'acme:b')
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ._errors import NamespaceError, TenantConfigError
from ._keyfinder import CommandSpec, KeysNotExact, arg_bytes, fast_kind, key_positions
from ._keyspecs import COMMANDS
from ._nslua import SCAN_COUNT, wrap, wrapped_sha
from ._nsreplies import REPLY_RULES, KeyOutside

__all__ = [
    "FAST_KINDS",
    "FAST_ONE_KEY",
    "Emulate",
    "KeyOutside",
    "Lookup",
    "Namespace",
    "Send",
    "fast_kind",
    "spec_from_command_info",
]

#: A SHA no script has: sent in place of a caller SHA that was never wrapped here, so
#: the server answers NOSCRIPT (or 0 to SCRIPT EXISTS) instead of running anything.
NO_SHA: Final = "0" * 40


@dataclass(slots=True)
class Send:
    """Send ``args``; apply ``fix`` to the raw reply (``None``: the reply carries no keys).

    ``pending_sha`` is set for an EVALSHA of a SHA this process never wrapped: a client
    answers ``NoScriptError`` right away, a pipeline resolves it after loading its
    scripts (redis-py's ``Script`` flow).
    """

    args: tuple[Any, ...]
    fix: Callable[[Any], Any] | None = None
    pending_sha: str | None = None


@dataclass(slots=True)
class Emulate:
    """Run ``steps``: it yields raw commands, receives their raw replies, returns the
    raw result (``KEYS``/``DBSIZE``/``FLUSHDB`` done with SCAN)."""

    command: str
    steps: Generator[tuple[Any, ...], Any, Any]


@dataclass(slots=True)
class Lookup:
    """The command is not in the table: look ``name`` up in the server's COMMAND INFO."""

    name: str


Plan = Send | Emulate | Lookup


_GLOB_ESCAPES = str.maketrans({c: "\\" + c for c in "\\*?[]"})


def _escape(text: str) -> str:
    return text.translate(_GLOB_ESCAPES)


def _display(spec_name: str) -> str:
    return spec_name.replace("|", " ").upper()


def _is_word(arg: Any, word: bytes) -> bool:
    if isinstance(arg, (str, bytes)) and len(arg) != len(word):
        return False
    try:
        return arg_bytes(arg).lower() == word
    except KeysNotExact:
        return False


class Namespace:
    """A tenant's key prefix, and how every command and reply is rewritten for it.

    ``prefix`` is prepended to every key (and channel); in glob patterns (SCAN MATCH,
    KEYS, PSUBSCRIBE) it is glob-escaped, so ``acm?:`` never matches ``acmx:``. On a
    Redis Cluster use a hash tag (``{acme}:``) so a tenant's keys share a slot.
    Immutable and shared freely (thousands of tenants may each hold one).

    Args:
        prefix: non-empty ``str`` (or UTF-8 ``bytes``).

    Example::

        ns = Namespace("acme:")
        ns.key("user:1")        # 'acme:user:1'
        ns.unkey(b"acme:x")     # b'x'
    """

    __slots__ = ("_bytes", "_len", "_pat_bytes", "_pat_str", "_str")

    def __init__(self, prefix: str | bytes) -> None:
        if isinstance(prefix, bytes):
            try:
                prefix = prefix.decode()
            except UnicodeDecodeError:
                raise TenantConfigError("namespace prefix: bytes must be UTF-8") from None
        if not isinstance(prefix, str):
            raise TenantConfigError(f"namespace prefix must be a str, not {type(prefix).__name__}")
        if not prefix:
            raise TenantConfigError("namespace prefix must not be empty")
        self._str = prefix
        self._bytes = prefix.encode()
        self._len = len(self._bytes)
        self._pat_str = _escape(prefix)
        self._pat_bytes = self._pat_str.encode()

    @property
    def prefix(self) -> str:
        """The prefix, as given."""
        return self._str

    @property
    def prefix_bytes(self) -> bytes:
        """The prefix, UTF-8 encoded (what the server sees)."""
        return self._bytes

    @property
    def match_all(self) -> str:
        """The glob matching every key of the namespace (prefix escaped, then ``*``)."""
        return self._pat_str + "*"

    def __repr__(self) -> str:
        return f"Namespace({self._str!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Namespace) and other._str == self._str

    def __hash__(self) -> int:
        return hash((Namespace, self._str))

    # -- keys, patterns ----------------------------------------------------------------

    def key(self, key: Any) -> Any:
        """``key`` with the prefix (``str`` stays ``str``, ``bytes`` stays ``bytes``)."""
        cls = key.__class__
        if cls is str:
            return self._str + key
        if cls is bytes:
            return self._bytes + key
        if isinstance(key, str):  # a str subclass: its value, as redis-py encodes it
            return self._str + key
        return self._bytes + arg_bytes(key)

    def unkey(self, key: Any) -> Any:
        """``key`` without the prefix; :class:`KeyOutside` if it is not in the namespace."""
        if isinstance(key, bytes):
            if key.startswith(self._bytes):
                return key[self._len :]
        elif isinstance(key, str) and key.startswith(self._str):
            return key[len(self._str) :]
        raise KeyOutside

    def pattern(self, pattern: Any) -> Any:
        """A glob of the caller's keyspace as a glob of the server's: escaped prefix + it."""
        if isinstance(pattern, str):
            return self._pat_str + pattern
        return self._pat_bytes + arg_bytes(pattern)

    def unpattern(self, pattern: Any) -> Any:
        """The caller's glob back from the server's (pub/sub pattern messages)."""
        if isinstance(pattern, bytes):
            if pattern.startswith(self._pat_bytes):
                return pattern[len(self._pat_bytes) :]
        elif isinstance(pattern, str) and pattern.startswith(self._pat_str):
            return pattern[len(self._pat_str) :]
        raise KeyOutside

    def channel(self, channel: Any) -> Any:
        """A pub/sub channel with the prefix (keyspace notification channels refused)."""
        raw = channel if isinstance(channel, (str, bytes)) else arg_bytes(channel)
        if raw[:5] in ("__key", b"__key"):
            raise NamespaceError(
                "SUBSCRIBE",
                "keyspace notifications (__keyspace@/__keyevent@) carry other tenants' "
                "key names and are not namespaced",
            )
        return self.key(channel)

    def _channel_pattern(self, pattern: Any) -> Any:
        raw = pattern if isinstance(pattern, (str, bytes)) else arg_bytes(pattern)
        if raw[:5] in ("__key", b"__key"):
            self.channel(raw)  # raises the same error
        return self.pattern(pattern)

    # -- the hot path --------------------------------------------------------------------

    def fast(self, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """Rewritten ``args`` for the common shapes (one key at 1, all keys, key/value
        pairs), or ``None``: use :meth:`plan`. Kept small: it runs on every GET/SET."""
        kind = _FAST.get(args[0])
        if kind is None or len(args) < 2:
            return None
        s, b = self._str, self._bytes
        if kind == 1:
            key = args[1]
            cls = key.__class__
            if cls is str:
                return (args[0], s + key, *args[2:])
            if cls is bytes:
                return (args[0], b + key, *args[2:])
            return (args[0], self.key(key), *args[2:])
        if kind == 2:
            # All keys: the all-str (then all-bytes) case first, as one comprehension; a
            # key of another type makes the concatenation raise and the slow form run.
            rest = args[1:]
            try:
                return (args[0], *[s + k for k in rest])
            except TypeError:
                pass
            try:
                return (args[0], *[b + k for k in rest])
            except TypeError:
                key_of = self.key
                return (args[0], *[key_of(k) for k in rest])
        out = list(args)
        for i in range(1, len(out), 2):
            out[i] = self.key(out[i])
        return tuple(out)

    # -- planning ------------------------------------------------------------------------

    def plan(
        self,
        args: tuple[Any, ...],
        learned: Mapping[str, CommandSpec] | None = None,
        *,
        pubsub: bool = False,
    ) -> Plan:
        """How to run ``args`` in this namespace.

        ``learned`` holds commands looked up in this server's COMMAND INFO (see
        :class:`Lookup`). ``pubsub`` is set by the PubSub classes: the subscribe family
        is then rewritten rather than refused.

        Raises:
            NamespaceError: the command cannot be confined to the namespace.
        """
        if not args:
            return Send(args)
        head = args[0]
        try:
            text = head if head.__class__ is str else arg_bytes(head).decode()
        except (KeysNotExact, UnicodeDecodeError):
            raise NamespaceError(repr(head)[:40], "not a command name") from None
        words = text.split()
        if not words:
            return Send(args)
        lead = len(words)
        view: list[Any] = [*words, *args[1:]]
        name = words[0].lower()
        spec = _lookup(name, learned)
        if spec is None:
            return Lookup(name)
        if spec.container:
            if len(view) < 2:
                return Send(args)  # the server answers with its own arity error
            try:
                sub = arg_bytes(view[1]).decode().lower()
            except (KeysNotExact, UnicodeDecodeError):
                raise NamespaceError(name.upper(), "subcommand is not a name") from None
            name = f"{name}|{sub}"
            spec = _lookup(name, learned)
            if spec is None:
                return Lookup(name)
        if spec.refused is not None:
            raise NamespaceError(_display(spec.name), spec.refused)
        try:
            if spec.handler is not None:
                handler = _HANDLERS[spec.handler]
                result = handler(self, view, spec, learned, pubsub)
                if not isinstance(result, Send):
                    return result
                view, fix = list(result.args), result.fix
                pending = result.pending_sha
            else:
                for i in key_positions(spec.keys, view):
                    view[i] = self.key(view[i])
                self._transform(spec, view)
                rule = spec.reply
                fix = None if rule is None else functools.partial(REPLY_RULES[rule], self)
                pending = None
        except KeysNotExact as exc:
            raise NamespaceError(_display(spec.name), str(exc)) from None
        return Send(_rejoin(args, view, lead, spec, fix is not None), fix, pending)

    def _transform(self, spec: CommandSpec, view: list[Any]) -> None:
        for tr in spec.transforms:
            stop = len(view) if tr.count < 0 else min(len(view), tr.start + tr.count)
            for i in range(tr.start, stop):
                if tr.kind == "pattern":
                    view[i] = self._channel_pattern(view[i])
                elif tr.kind == "channel":
                    view[i] = self.channel(view[i])
                else:
                    view[i] = self.key(view[i])


def _lookup(name: str, learned: Mapping[str, CommandSpec] | None) -> CommandSpec | None:
    spec = COMMANDS.get(name)
    if spec is None and learned is not None:
        spec = learned.get(name)
    return spec


def _rejoin(
    args: tuple[Any, ...], view: list[Any], lead: int, spec: CommandSpec, has_fix: bool
) -> tuple[Any, ...]:
    """The rewritten arguments, keeping the caller's command-name argument where possible.

    redis-py looks response callbacks up by the first argument as given (``"SCAN"``,
    ``"PUBSUB NUMSUB"``), so it is kept; a first argument that also held data words, or
    one the reply fix could not be found under, is replaced by the canonical split form.
    """
    head = args[0]
    is_sub = "|" in spec.name
    canonical = head.__class__ is str and " ".join(head.split()) == head
    if lead == 1 and (canonical or not has_fix):
        return (head, *view[1:])
    if lead == 2 and is_sub and (canonical or not has_fix):
        return (head, *view[2:])
    if is_sub:
        return (_display(spec.name), *view[2:])
    return (spec.name.upper(), *view[1:])


# -- handlers (the same names are implemented in the Lua prelude) ----------------------------

Handler = Callable[
    [Namespace, list[Any], CommandSpec, "Mapping[str, CommandSpec] | None", bool], Plan
]


def _h_scan(ns: Namespace, view: list[Any], spec: CommandSpec, *_: Any) -> Plan:
    found = False
    for i in range(2, len(view) - 1, 2):
        if _is_word(view[i], b"match"):
            view[i + 1] = ns.pattern(view[i + 1])
            found = True
    if not found:
        view += ["MATCH", ns.match_all]
    return Send(tuple(view), functools.partial(REPLY_RULES["scan"], ns))


def _h_keys(ns: Namespace, view: list[Any], spec: CommandSpec, *_: Any) -> Plan:
    if len(view) != 2:
        raise KeysNotExact("KEYS takes exactly one pattern")
    return Emulate("KEYS", _keys_steps(ns, ns.pattern(view[1])))


def _keys_steps(ns: Namespace, match: Any) -> Generator[tuple[Any, ...], Any, Any]:
    cursor: Any = 0
    seen: dict[Any, None] = {}
    while True:
        reply = yield ("SCAN", cursor, "MATCH", match, "COUNT", SCAN_COUNT)
        cursor = reply[0]
        for key in reply[1]:
            seen[ns.unkey(key)] = None
        if int(cursor) == 0:
            return list(seen)


def _h_dbsize(ns: Namespace, view: list[Any], spec: CommandSpec, *_: Any) -> Plan:
    if len(view) != 1:
        raise KeysNotExact("DBSIZE takes no arguments")
    return Emulate("DBSIZE", _dbsize_steps(ns))


def _dbsize_steps(ns: Namespace) -> Generator[tuple[Any, ...], Any, Any]:
    cursor: Any = 0
    seen: set[Any] = set()
    while True:
        reply = yield ("SCAN", cursor, "MATCH", ns.match_all, "COUNT", SCAN_COUNT)
        cursor = reply[0]
        for key in reply[1]:
            ns.unkey(key)
            seen.add(key)
        if int(cursor) == 0:
            return len(seen)


def _h_flushdb(ns: Namespace, view: list[Any], spec: CommandSpec, *_: Any) -> Plan:
    if len(view) > 2:
        raise KeysNotExact("FLUSHDB takes at most one option (ASYNC or SYNC)")
    delete = "UNLINK"
    if len(view) == 2:
        if _is_word(view[1], b"sync"):
            delete = "DEL"
        elif not _is_word(view[1], b"async"):
            raise KeysNotExact("FLUSHDB takes ASYNC or SYNC")
    return Emulate("FLUSHDB", _flushdb_steps(ns, delete))


def _flushdb_steps(ns: Namespace, delete: str) -> Generator[tuple[Any, ...], Any, Any]:
    cursor: Any = 0
    while True:
        reply = yield ("SCAN", cursor, "MATCH", ns.match_all, "COUNT", SCAN_COUNT)
        cursor = reply[0]
        batch = list(reply[1])
        for key in batch:
            ns.unkey(key)  # a client-side check before deleting anything
        if batch:
            yield (delete, *batch)
        if int(cursor) == 0:
            return "OK"


def _h_copy(ns: Namespace, view: list[Any], spec: CommandSpec, *_: Any) -> Plan:
    for arg in view[3:]:
        if _is_word(arg, b"db"):
            raise KeysNotExact("COPY with DB would copy outside the namespace's database")
    for i in key_positions(spec.keys, view):
        view[i] = ns.key(view[i])
    return Send(tuple(view))


def _h_sort(ns: Namespace, view: list[Any], spec: CommandSpec, *_: Any) -> Plan:
    # The argument walk of the server's sortCommandGeneric/sortGetKeys: the sorted
    # key, STORE's destination, and the BY/GET patterns (key names with * in them)
    # are prefixed; GET # (the element itself) is not. An unknown word makes the
    # server reply with a syntax error, so the walk stops there.
    n = len(view)
    if n >= 2:
        view[1] = ns.key(view[1])
    j = 2
    while j < n:
        word = view[j]
        if _is_word(word, b"asc") or _is_word(word, b"desc") or _is_word(word, b"alpha"):
            j += 1
        elif _is_word(word, b"limit") and j + 2 < n:
            j += 3
        elif (_is_word(word, b"store") or _is_word(word, b"by")) and j + 1 < n:
            view[j + 1] = ns.key(view[j + 1])
            j += 2
        elif _is_word(word, b"get") and j + 1 < n:
            if view[j + 1] not in ("#", b"#"):
                view[j + 1] = ns.key(view[j + 1])
            j += 2
        else:
            break
    return Send(tuple(view))


def _h_pubsub_channels(ns: Namespace, view: list[Any], spec: CommandSpec, *_: Any) -> Plan:
    if len(view) >= 3:
        view[2] = ns.pattern(view[2])
    else:
        view.append(ns.match_all)
    return Send(tuple(view), functools.partial(REPLY_RULES["keylist"], ns))


def _h_subscribe(
    ns: Namespace,
    view: list[Any],
    spec: CommandSpec,
    learned: Mapping[str, CommandSpec] | None,
    pubsub: bool,
) -> Plan:
    if not pubsub:
        raise KeysNotExact("subscribe through pubsub(), not on a pooled client")
    for i in key_positions(spec.keys, view):
        view[i] = ns.key(view[i])
    ns._transform(spec, view)
    return Send(tuple(view))


def _h_eval(ns: Namespace, view: list[Any], spec: CommandSpec, *_: Any) -> Plan:
    if len(view) < 3:
        return Send(tuple(view))
    script = view[1]
    if not isinstance(script, (str, bytes)):
        raise KeysNotExact("the script is not text")
    positions = key_positions(spec.keys, view)
    view[1] = wrap(script).text
    return _eval_args(ns, view, positions, None)


def _eval_args(ns: Namespace, view: list[Any], positions: list[int], pending: str | None) -> Send:
    for i in positions:
        view[i] = ns.key(view[i])
    numkeys = int(arg_bytes(view[2]))
    if 3 + numkeys <= len(view):
        # The prefix travels as the first ARGV; the prelude takes it off. With too few
        # arguments the server rejects the command on its own.
        view.insert(3 + numkeys, ns.prefix_bytes)
    return Send(tuple(view), None, pending)


def _h_evalsha(ns: Namespace, view: list[Any], spec: CommandSpec, *_: Any) -> Plan:
    if len(view) < 3:
        return Send(tuple(view))
    positions = key_positions(spec.keys, view)
    sha = view[1]
    caller = (sha if sha.__class__ is str else arg_bytes(sha).decode(errors="replace")).lower()
    mapped = wrapped_sha(caller)
    view[1] = mapped or NO_SHA
    return _eval_args(ns, view, positions, None if mapped else caller)


def _sha_reply(caller_sha: str, raw: Any) -> Any:
    return caller_sha.encode() if isinstance(raw, bytes) else caller_sha


def _h_script_load(ns: Namespace, view: list[Any], spec: CommandSpec, *_: Any) -> Plan:
    if len(view) != 3 or not isinstance(view[2], (str, bytes)):
        return Send(tuple(view))
    wrapped = wrap(view[2])
    view[2] = wrapped.text
    return Send(tuple(view), functools.partial(_sha_reply, wrapped.caller_sha))


def _h_script_exists(ns: Namespace, view: list[Any], spec: CommandSpec, *_: Any) -> Plan:
    for i in range(2, len(view)):
        view[i] = wrapped_sha(arg_bytes(view[i]).decode(errors="replace")) or NO_SHA
    return Send(tuple(view))


def _h_script_show(ns: Namespace, view: list[Any], spec: CommandSpec, *_: Any) -> Plan:
    if len(view) == 3:
        view[2] = wrapped_sha(arg_bytes(view[2]).decode(errors="replace")) or NO_SHA
    return Send(tuple(view), functools.partial(REPLY_RULES["script_show"], ns))


def _h_getkeys(
    ns: Namespace,
    view: list[Any],
    spec: CommandSpec,
    learned: Mapping[str, CommandSpec] | None,
    pubsub: bool,
) -> Plan:
    if len(view) < 3:
        return Send(tuple(view))
    inner = ns.plan(tuple(view[2:]), learned)
    if isinstance(inner, Lookup):
        return inner
    if isinstance(inner, Send):
        view[2:] = inner.args
    assert spec.reply is not None
    return Send(tuple(view), functools.partial(REPLY_RULES[spec.reply], ns))


_HANDLERS: dict[str, Handler] = {
    "copy": _h_copy,
    "dbsize": _h_dbsize,
    "eval": _h_eval,
    "evalsha": _h_evalsha,
    "flushdb": _h_flushdb,
    "getkeys": _h_getkeys,
    "keys": _h_keys,
    "pubsub_channels": _h_pubsub_channels,
    "scan": _h_scan,
    "script_exists": _h_script_exists,
    "script_load": _h_script_load,
    "script_show": _h_script_show,
    "sort": _h_sort,
    "subscribe": _h_subscribe,
}


# -- the fast table ----------------------------------------------------------------------


def _fast_table() -> dict[Any, int]:
    table: dict[Any, int] = {}
    for name, spec in COMMANDS.items():
        kind = fast_kind(spec)
        if kind is not None:
            table[name] = table[name.upper()] = kind
    return table


#: Exact first arguments (``"GET"``, ``"get"``) of the commands :meth:`Namespace.fast`
#: rewrites, with their kind (1: one key at argv 1; see :func:`fast_kind`).
FAST_KINDS: Final = _fast_table()
_FAST = FAST_KINDS
#: The first arguments of kind 1 (one key at argv 1): the clients' inlined path.
FAST_ONE_KEY: Final = frozenset(name for name, kind in FAST_KINDS.items() if kind == 1)


def spec_from_command_info(name: str, entries: list[CommandSpec]) -> dict[str, CommandSpec]:
    """What a runtime ``COMMAND INFO`` lookup teaches: each spec, refused unless exact.

    A command the table does not know is only rewritten when the server describes its
    keys exactly; with no key specs at all it is refused too (a module command without
    specs may still touch keys), and so is a name the server does not know.
    """
    learned: dict[str, CommandSpec] = {}
    for spec in entries:
        if spec.container:
            learned[spec.name] = spec
        elif not spec.keys:
            learned[spec.name] = dataclasses.replace(
                spec,
                refused="not in the command table and the server gives it no key "
                "specification: it cannot be confined to the namespace",
            )
        elif not spec.exact:
            learned[spec.name] = dataclasses.replace(
                spec,
                refused="not in the command table and the server's key specification "
                "does not locate its keys exactly",
            )
        else:
            learned[spec.name] = spec
    if name not in learned:
        learned[name] = CommandSpec(
            name, 0, (), refused="unknown to the server and to the command table"
        )
    return learned
