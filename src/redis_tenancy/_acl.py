"""``ACL SETUSER`` rules that make the server enforce a tenant's namespace.

A namespaced client promises that a tenant only ever touches names under its prefix;
a bug, a raw ``redis-cli`` or a hand-written Lua script would break that promise
silently. Running each tenant as its own ACL user with the rules from
:func:`acl_rules` makes the server refuse (``NOPERM``) anything outside the namespace:

- keys ``~<prefix>*`` and channels ``&<prefix>*``, the prefix glob-escaped
  (:mod:`redis_tenancy._glob`), so ``acm?:`` does not open ``acmX:``;
- every command (``+@all``, so new data commands keep working) except the ``@admin``
  category (server-wide effects: CONFIG, SHUTDOWN, REPLICAOF, SYNC, SLOWLOG, MONITOR,
  CLIENT KILL/LIST/PAUSE, CLUSTER writes, Valkey's COMMANDLOG...) and the commands a
  key pattern cannot confine on a shared server (:data:`REFUSED_COMMANDS`);
- the database: Valkey 9.1 checks it itself (``resetdbs db=N``); elsewhere SELECT, MOVE,
  SWAPDB and (for db 0) COPY, whose ``DB`` option no ACL rule can refuse, are denied;
- ``sanitize-payload``, so RESTORE cannot feed the shared server a crafted payload
  (when the server runs with ``sanitize-dump-payload clients``).

What the rules cannot do, on any server (see docs/PURGE.md): SCAN, PUBSUB CHANNELS and
CLUSTER GETKEYSINSLOT still show other tenants' *names* (not values); INFO shows
server-wide counts; CPU and memory are shared; a module command whose keys the server
cannot find is not checked against the key pattern.

Servers differ (:class:`AclFeatures`, picked with :func:`acl_features` from
``INFO server``): Redis 6.2 cannot deny a single subcommand (``-script|flush`` is a
syntax error there), has no selectors and no FUNCTION, and does not check SORT's
BY/GET patterns against the key rules, so its dialect denies a whole command and
re-allows its harmless subcommands, and denies SORT.

Example::

    rules = acl_rules("acme:")
    admin.execute_command("ACL", "SETUSER", "acme", "on", ">s3cret", *rules)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import TenantConfigError
from ._glob import glob_escape, prefix_pattern

__all__ = [
    "EMULATED_COMMANDS",
    "REDIS_6_2",
    "REDIS_7",
    "REFUSED_COMMANDS",
    "VALKEY_9_1",
    "AclFeatures",
    "acl_features",
    "acl_rules",
]

#: Commands (ACL spelling, ``command|subcommand``) that no key pattern confines on a
#: shared server, so the namespaced client refuses them and the server must too.
REFUSED_COMMANDS: tuple[str, ...] = (
    "select",  # another database (allowed again where the handshake needs it)
    "swapdb",  # swaps whole databases
    "move",  # moves a key into another database
    "migrate",  # moves keys to another server
    "flushall",  # every key of every tenant
    "randomkey",  # answers another tenant's name
    "script|flush",  # every tenant's cached scripts (their EVALSHA fails)
    "script|kill",  # another tenant's running script
    "script|debug",  # SYNC mode blocks the whole server while one tenant debugs
    "function|load",  # libraries are server-wide: one tenant could replace another's
    "function|delete",
    "function|flush",
    "function|restore",
    "function|kill",
    "monitor",  # every command of every tenant, with arguments
    "config",
    "debug",
    "acl",
    "shutdown",
    # BCAST without PREFIX (or with another tenant's) streams other tenants' key names,
    # and REDIRECT sends invalidations to any connection: the server checks neither.
    "client|tracking",
)

#: Commands the namespaced client runs as SCAN, never raw (KEYS, DBSIZE) or as a
#: namespace purge (FLUSHDB). Raw, they would list, count or delete every tenant's keys.
EMULATED_COMMANDS: tuple[str, ...] = ("keys", "dbsize", "flushdb")


@dataclass(frozen=True, slots=True)
class AclFeatures:
    """What a server's ACL can express, for :func:`acl_rules`.

    Attributes:
        name: for messages.
        subcommand_rules: ``-command|subcommand`` is accepted (Redis 7.0+).
        selectors: ``clearselectors`` exists (Redis 7.0+); emitted so rules applied to
            an existing user drop a selector that granted more.
        sort_patterns_checked: SORT's BY/GET patterns are refused for a user without
            access to every key (Redis 7.0+); before that they read any key.
        db_rules: ``resetdbs db=N`` confines the database (Valkey 9.1+).
    """

    name: str
    subcommand_rules: bool
    selectors: bool
    sort_patterns_checked: bool
    db_rules: bool


REDIS_6_2 = AclFeatures("Redis 6.2", False, False, False, False)
REDIS_7 = AclFeatures("Redis 7", True, True, True, False)
VALKEY_9_1 = AclFeatures("Valkey 9.1", True, True, True, True)


def _version(text: object) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", str(text))[:3])


def acl_features(info: Mapping[str, Any]) -> AclFeatures:
    """The :class:`AclFeatures` of a server, from its ``INFO server`` reply.

    Valkey reports ``redis_version:7.2.4`` for compatibility and its own version in
    ``valkey_version``; a version this module does not know is treated as the closest
    older one (never as one with more features).

    Raises:
        TenantConfigError: a server older than 6.2 (no channel rules: pub/sub cannot
            be confined) or an INFO reply without a version.
    """
    valkey = info.get("valkey_version")
    if valkey is not None and _version(valkey) >= (9, 1):
        return VALKEY_9_1
    if "redis_version" not in info:
        raise TenantConfigError("INFO server has no redis_version: cannot tell the ACL dialect")
    version = _version(info["redis_version"])
    if version >= (7, 0):
        return REDIS_7
    if version >= (6, 2):
        return REDIS_6_2
    raise TenantConfigError(
        f"server version {info['redis_version']} has no ACL channel rules (Redis 6.2+): "
        "a tenant's pub/sub cannot be confined to its namespace there"
    )


# Redis 6.2 cannot deny one subcommand; it can deny the command and re-allow some of
# its subcommands (``-client +client|id``). These are 6.2's subcommands (its COMMAND
# does not list them) of the commands the rules touch, plus the newer ones clients
# send on connect: re-allowed, 6.2 answers them with an error the client expects
# instead of NOPERM, which would fill the ACL LOG on every connect.
_SUBCOMMANDS_6_2: dict[str, tuple[str, ...]] = {
    "client": (
        "caching",
        "getname",
        "getredir",
        "help",
        "id",
        "info",
        "kill",
        "list",
        "maint_notifications",  # Redis 8; redis-py 8 sends it on RESP3 connects
        "no-touch",  # 7.2+
        "pause",
        "reply",
        "setinfo",  # 7.2+; redis-py sends it on every connect
        "setname",
        "tracking",
        "trackinginfo",
        "unblock",
        "unpause",
    ),
    "cluster": (
        "addslots",
        "bumpepoch",
        "count-failure-reports",
        "countkeysinslot",
        "delslots",
        "failover",
        "flushslots",
        "forget",
        "getkeysinslot",
        "help",
        "info",
        "keyslot",
        "meet",
        "myid",
        "nodes",
        "replicas",
        "replicate",
        "reset",
        "saveconfig",
        "set-config-epoch",
        "setslot",
        "slaves",
        "slots",
    ),
    "script": ("debug", "exists", "flush", "help", "kill", "load"),
}

# Whole commands in 6.2's @admin that 7.0 splits, and which of their subcommands 7.0
# calls @admin: on 6.2 ``-@admin`` denies all of CLIENT and CLUSTER (the handshake's
# CLIENT SETNAME and a cluster client's CLUSTER SLOTS with them), so the others are
# re-allowed.
_ADMIN_SUBCOMMANDS_6_2: dict[str, frozenset[str]] = {
    "client": frozenset({"kill", "list", "pause", "unblock", "unpause"}),
    "cluster": frozenset(
        {
            "addslots",
            "bumpepoch",
            "count-failure-reports",
            "delslots",
            "failover",
            "flushslots",
            "forget",
            "meet",
            "replicas",
            "replicate",
            "reset",
            "saveconfig",
            "set-config-epoch",
            "setslot",
            "slaves",
        }
    ),
}

# Commands that 6.2 does not have (FUNCTION is 7.0+): nothing to deny there.
_ABSENT_6_2 = frozenset({"function"})

_ASCII_SPACE = frozenset(" \t\n\v\f\r")


def _check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str):
        raise TenantConfigError(f"an ACL key prefix must be a str, got {type(prefix).__name__}")
    if prefix == "":
        raise TenantConfigError(
            "an empty prefix is not a namespace: its ACL rules would allow every key"
        )
    if _ASCII_SPACE & set(prefix):
        raise TenantConfigError(
            f"prefix {prefix!r} contains whitespace, which ACL patterns cannot hold "
            "(the server answers 'Syntax error'); choose a prefix without spaces"
        )
    return prefix


def _command_names(commands: Iterable[str]) -> list[str]:
    names: list[str] = []
    for command in commands:
        if not isinstance(command, str) or not command or _ASCII_SPACE & set(command):
            raise TenantConfigError(
                f"refused command {command!r} is not a command name "
                "(use 'name' or 'name|subcommand', e.g. 'script|flush')"
            )
        name = command.lower()
        if name.count("|") > 1:
            raise TenantConfigError(f"refused command {command!r} has more than one '|'")
        if name not in names:
            names.append(name)
    return names


def _denials_6_2(denied: list[str], server: AclFeatures) -> list[str]:
    """``-x`` and ``+x|y`` rules for a server without subcommand denials."""
    whole: list[str] = []
    refused_subs: dict[str, set[str]] = {}
    for name in denied:
        command, _, sub = name.partition("|")
        if command in _ABSENT_6_2:
            continue  # does not exist there, so nobody can run it
        if not sub:
            whole.append(command)
            continue
        if command not in _SUBCOMMANDS_6_2:
            raise TenantConfigError(
                f"{server.name} ACLs cannot deny {name!r} alone (no '-command|subcommand' "
                f"rules before Redis 7.0) and its other subcommands are not known here: "
                f"refuse {command!r} as a whole instead"
            )
        refused_subs.setdefault(command, set()).add(sub)
    rules = [f"-{command}" for command in whole]
    # Parents that lose some subcommands, or that -@admin removed as a whole on 6.2.
    for command in sorted(set(refused_subs) | set(_ADMIN_SUBCOMMANDS_6_2)):
        if command in whole:
            continue
        closed = refused_subs.get(command, set()) | _ADMIN_SUBCOMMANDS_6_2.get(command, set())
        if command not in _ADMIN_SUBCOMMANDS_6_2:
            rules.append(f"-{command}")
        rules += [f"+{command}|{sub}" for sub in _SUBCOMMANDS_6_2[command] if sub not in closed]
    return rules


def acl_rules(
    prefix: str,
    *,
    db: int = 0,
    refused_commands: Iterable[str] = (*REFUSED_COMMANDS, *EMULATED_COMMANDS),
    server: AclFeatures = REDIS_7,
    channel_patterns: Iterable[str] = (),
) -> list[str]:
    """The ``ACL SETUSER`` rules confining a user to the namespace ``prefix`` in ``db``.

    The rules set keys, channels, commands (and the database where the server can)
    from scratch, so applying them to an existing user replaces what it had; they
    never touch its passwords or its on/off flag. Add those yourself::

        ACL SETUSER acme on >password <rules...>

    Parameters:
        prefix: the namespace as stored on the server (``"acme:"``, ``"{acme}:"``).
        db: the tenant's database. Outside Valkey 9.1 the server cannot confine it:
            for db 0, SELECT and COPY are denied; for another db SELECT must stay
            allowed (redis-py sends it on every connect), so the db is not enforced.
        refused_commands: commands to deny (``name`` or ``name|subcommand``), by
            default :data:`REFUSED_COMMANDS` and :data:`EMULATED_COMMANDS`.
        server: the dialect (:func:`acl_features`); the default suits Redis 7.x and
            every Valkey.
        channel_patterns: extra PSUBSCRIBE patterns inside the namespace (``"news.*"``
            allows ``PSUBSCRIBE <prefix>news.*``). Redis compares a PSUBSCRIBE pattern
            with the channel rules literally, so only ``<prefix>*`` and these pass.

    Raises:
        TenantConfigError: a prefix or command name the server cannot express, or a
            subcommand denial the server's dialect cannot write.
    """
    prefix = _check_prefix(prefix)
    if isinstance(db, bool) or not isinstance(db, int) or db < 0:
        raise TenantConfigError(f"db must be an int >= 0, got {db!r}")
    escaped = glob_escape(prefix)
    own_channels = f"&{escaped}*"
    extra = dict.fromkeys(f"&{escaped}{_check_pattern(p)}" for p in channel_patterns)
    rules = ["resetkeys", f"~{prefix_pattern(prefix)}", "resetchannels", own_channels]
    rules += [rule for rule in extra if rule != own_channels]
    if server.selectors:
        rules.insert(0, "clearselectors")
    # RESTORE payloads of this user are fully checked when the server runs with
    # sanitize-dump-payload clients (or yes): a crafted payload cannot crash it.
    rules.append("sanitize-payload")
    denied = _command_names(refused_commands)
    if server.db_rules:
        rules += ["resetdbs", f"db={db}"]
    if server.db_rules or db != 0:
        # The database rule checks SELECT (Valkey), or the connection needs it.
        denied = [name for name in denied if name != "select"]
    elif "copy" not in denied:
        denied.append("copy")  # COPY ... DB n: an ACL rule cannot refuse the option
    if not server.sort_patterns_checked and "sort" not in denied:
        denied.append("sort")  # BY/GET patterns read any key on this server
    rules += ["+@all", "-@admin"]
    if server.subcommand_rules:
        rules += [f"-{name}" for name in denied]
    else:
        rules += _denials_6_2(denied, server)
    return rules


def _check_pattern(pattern: object) -> str:
    if not isinstance(pattern, str) or not pattern or _ASCII_SPACE & set(pattern):
        raise TenantConfigError(
            f"channel pattern {pattern!r} must be a non-empty str without whitespace"
        )
    return pattern
