"""Where a command's keys are: Redis key specifications and the search that reads them.

Redis 7 describes every command's key arguments in ``COMMAND INFO`` as *key specs*: a
``begin_search`` step (a fixed index, or a keyword searched forwards or backwards) and a
``find_keys`` step (a range, or a count read from a ``numkeys`` argument). This module
holds that model (:class:`KeySpec`, :class:`CommandSpec`), the parser that turns a raw
``COMMAND INFO`` entry (RESP2 or RESP3, bytes or str) into it, and :func:`key_positions`,
a transcription of the server's own ``getKeysUsingKeySpecs`` so that the positions the
namespace prefixes are the positions the server (and its ACL checks) read as keys.

It is shared by ``scripts/gen_keyspecs.py`` (which writes the checked-in table,
:mod:`redis_tenancy._keyspecs`) and by the namespaced clients (which look up a command
missing from the table in the server's ``COMMAND INFO``). No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CommandSpec",
    "KeySpec",
    "KeysNotExact",
    "Transform",
    "arg_bytes",
    "fast_kind",
    "key_positions",
    "parse_command_info",
]

#: ``string2ll``'s grammar: what the server accepts as an integer ``numkeys``.
_STRICT_INT = re.compile(rb"-?(0|[1-9][0-9]*)\Z")


class KeysNotExact(Exception):
    """The key positions of a command cannot be determined exactly.

    Internal: the namespace turns it into a typed ``NamespaceError`` naming the command.
    """


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One key specification of a command, as ``COMMAND INFO`` reports it.

    ``keyword`` is ``None`` for an index begin-search (``index`` is then the argv index,
    the command name being argv 0); otherwise the keyword is searched from
    ``startfrom`` (negative: backwards from the end). ``find`` is ``"range"`` (``a`` =
    lastkey, ``b`` = keystep, ``c`` = limit) or ``"keynum"`` (``a`` = keynumidx,
    ``b`` = firstkey, ``c`` = keystep), both relative to where the search began.
    """

    index: int
    keyword: str | None
    startfrom: int
    find: str
    a: int
    b: int
    c: int
    flags: tuple[str, ...] = ()

    @property
    def exact(self) -> bool:
        """True when the spec finds every key it covers (no ``unknown``/``incomplete``)."""
        return self.find in ("range", "keynum") and "incomplete" not in self.flags


@dataclass(frozen=True, slots=True)
class Transform:
    """A non-key argument that still names something in the namespace.

    ``kind`` is ``"channel"`` (prefixed like a key), ``"pattern"`` (a glob: the prefix is
    glob-escaped) or ``"key"`` (a key argument that has no key spec, such as
    ``CLUSTER KEYSLOT``'s). Arguments ``start`` .. ``start + count - 1`` are rewritten;
    ``count == -1`` means to the end.
    """

    kind: str
    start: int
    count: int


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """What the namespace needs to know about one command or subcommand.

    ``name`` is lower case, a subcommand written ``container|sub``. Exactly one of these
    decides how the command is rewritten: ``refused`` (a reason: it cannot be confined
    to a namespace), ``handler`` (a named special rewrite, e.g. ``"scan"``, ``"sort"``,
    ``"eval"``), ``container`` (look the subcommand up instead), else the key specs and
    ``transforms``. ``reply`` names the rule that takes the prefix off key names in the
    reply (``None``: the reply carries no key names).
    """

    name: str
    arity: int
    flags: tuple[str, ...]
    keys: tuple[KeySpec, ...] = ()
    container: bool = False
    refused: str | None = None
    handler: str | None = None
    reply: str | None = None
    transforms: tuple[Transform, ...] = ()

    @property
    def exact(self) -> bool:
        """Every key spec is exact (a command with no key specs is trivially exact)."""
        return all(spec.exact for spec in self.keys)


def fast_kind(spec: CommandSpec) -> int | None:
    """1: one key at argv 1; 2: every argument a key; 3: key/value pairs; else None."""
    if spec.container or spec.refused or spec.handler or spec.reply or spec.transforms:
        return None
    if len(spec.keys) != 1:
        return None
    k = spec.keys[0]
    if k.keyword is not None or k.index != 1 or k.find != "range" or k.c != 0:
        return None
    if (k.a, k.b) == (0, 1):
        return 1
    if (k.a, k.b) == (-1, 1):
        return 2
    if (k.a, k.b) == (-1, 2):
        return 3
    return None


def arg_bytes(arg: Any) -> bytes:
    """An argument as the bytes redis-py would send (UTF-8 for ``str``)."""
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, bool):
        raise KeysNotExact(f"a bool argument ({arg!r}) is not a Redis value")
    if isinstance(arg, int):
        return str(arg).encode()
    if isinstance(arg, float):
        return repr(arg).encode()
    if isinstance(arg, memoryview):
        return arg.tobytes()
    raise KeysNotExact(f"an argument of type {type(arg).__name__} is not a Redis value")


def _keyword_at(args: Sequence[Any], i: int, keyword: bytes) -> bool:
    arg = args[i]
    if isinstance(arg, (str, bytes)) and len(arg) != len(keyword):
        return False  # cheap reject before encoding (str and bytes lengths agree for ASCII)
    try:
        return arg_bytes(arg).lower() == keyword
    except KeysNotExact:
        return False


def _strict_int(arg: Any, what: str) -> int:
    try:
        raw = arg_bytes(arg)
    except KeysNotExact as exc:
        raise KeysNotExact(f"{what} is not an integer: {exc}") from None
    if not _STRICT_INT.match(raw):
        raise KeysNotExact(f"{what} {raw[:20]!r} is not an integer")
    return int(raw)


def key_positions(specs: Sequence[KeySpec], args: Sequence[Any]) -> list[int]:
    """Argv indexes of the keys in ``args`` (``args[0]`` is the command name).

    Mirrors the server's key-spec search (``getKeysUsingKeySpecs`` in Redis 7 and
    Valkey): keyword searches stop before the last argument, a negative ``startfrom``
    searches backwards, a ``limit`` divides the remaining arguments. Where the server
    would call the spec invalid because arguments are missing, the positions are clipped
    to what is there: the server then rejects the command on its own (arity or syntax),
    and nothing unprefixed can be read as a key. An unparseable ``numkeys`` raises
    :class:`KeysNotExact`.
    """
    argc = len(args)
    out: list[int] = []
    for spec in specs:
        if spec.keyword is None:
            first = spec.index
        else:
            keyword = spec.keyword.lower().encode()
            if spec.startfrom > 0:
                start, end, incr = spec.startfrom, argc - 1, 1
            else:
                start, end, incr = argc + spec.startfrom, 0, -1
            first = 0
            i = start
            while i != end:
                if i >= argc or i < 1:
                    break
                if _keyword_at(args, i, keyword):
                    first = i + 1
                    break
                i += incr
            if not first:
                continue
        if spec.find == "range":
            lastkey, step, limit = spec.a, spec.b, spec.c
            if lastkey >= 0:
                last = first + lastkey
            elif not limit:
                last = argc + lastkey
            else:
                last = first + ((argc - first) // limit + lastkey)
        elif spec.find == "keynum":
            idx = first + spec.a
            if idx >= argc:
                continue  # the numkeys argument itself is missing: an arity error
            numkeys = _strict_int(args[idx], "numkeys")
            if numkeys < 0:
                raise KeysNotExact(f"numkeys {numkeys} is negative")
            first += spec.b
            step = spec.c
            # numkeys keys, step apart (Valkey's reading; Redis 7.0 computes
            # first + numkeys - 1, which differs only for a step > 1, and no Redis
            # command has one; Valkey's MSETEX does).
            last = first + (numkeys - 1) * step
        else:
            raise KeysNotExact(f"key spec of type {spec.find!r} cannot be searched")
        if step < 1:
            raise KeysNotExact(f"key step {step} is not positive")
        last = min(last, argc - 1)
        out.extend(range(first, last + 1, step))
    return out


# -- parsing COMMAND INFO ------------------------------------------------------------------


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _as_map(value: Any) -> dict[str, Any]:
    """A RESP3 map (dict) or a RESP2 flat key/value list, with str keys."""
    if isinstance(value, Mapping):
        return {_text(k): v for k, v in value.items()}
    items = list(value)
    return {_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def _parse_key_spec(raw: Any) -> KeySpec:
    spec = _as_map(raw)
    flags = tuple(sorted(_text(f) for f in spec.get("flags", ())))
    begin = _as_map(spec["begin_search"])
    begin_type = _text(begin["type"])
    begin_args = _as_map(begin["spec"]) if begin.get("spec") else {}
    find = _as_map(spec["find_keys"])
    find_type = _text(find["type"])
    find_args = _as_map(find["spec"]) if find.get("spec") else {}
    index, keyword, startfrom = 0, None, 0
    if begin_type == "index":
        index = int(begin_args["index"])
    elif begin_type == "keyword":
        keyword = _text(begin_args["keyword"])
        startfrom = int(begin_args["startfrom"])
    else:
        find_type = "unknown"
    if find_type == "range":
        a, b, c = (int(find_args[k]) for k in ("lastkey", "keystep", "limit"))
    elif find_type == "keynum":
        a, b, c = (int(find_args[k]) for k in ("keynumidx", "firstkey", "keystep"))
    else:
        find_type, a, b, c = "unknown", 0, 0, 0
    return KeySpec(index, keyword, startfrom, find_type, a, b, c, flags)


def _legacy_specs(first: int, last: int, step: int) -> tuple[KeySpec, ...]:
    """Key specs equivalent to the first/last/step triple of Redis 6 and older."""
    if first <= 0 or step <= 0:
        return ()
    lastkey = last - first if last >= 0 else last
    return (KeySpec(first, None, 0, "range", lastkey, step, 0, ("legacy",)),)


def parse_command_info(entry: Any) -> list[CommandSpec]:
    """One ``COMMAND INFO`` entry (and its subcommands) as :class:`CommandSpec` objects.

    Accepts the RESP2 array form and the RESP3 map form, bytes or str. A server without
    key specs (Redis 6) gets specs derived from first/last/step, but only for commands
    without the ``movablekeys`` flag (those triples are then exact); otherwise the
    command has no exact specs and is marked ``unknown``.
    """
    if isinstance(entry, Mapping):
        # RESP3 with redis-py's parser keeps arrays; a map form keyed by field is
        # normalised here for completeness.
        fields = _as_map(entry)
        items = [
            fields.get("name"),
            fields.get("arity"),
            fields.get("flags", ()),
            fields.get("first_key_pos", 0),
            fields.get("last_key_pos", 0),
            fields.get("step_count", 0),
            fields.get("acl_categories", ()),
            fields.get("tips", ()),
            fields.get("key_specifications", ()),
            fields.get("subcommands", ()),
        ]
    else:
        items = list(entry)
    name = _text(items[0]).lower()
    arity = int(items[1])
    flags = tuple(sorted(_text(f).lower() for f in items[2]))
    first, last, step = int(items[3]), int(items[4]), int(items[5])
    if len(items) > 8:
        keys = tuple(_parse_key_spec(s) for s in items[8] or ())
    elif "movablekeys" in flags:
        keys = (KeySpec(0, None, 0, "unknown", 0, 0, 0, ("legacy",)),)
    else:
        keys = _legacy_specs(first, last, step)
    subs = list(items[9]) if len(items) > 9 and items[9] else []
    out = [CommandSpec(name, arity, flags, keys, container=bool(subs))]
    for sub in subs:
        out.extend(parse_command_info(sub))
    return out
