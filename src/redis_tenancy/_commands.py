"""The subcommands of ``redis-tenancy``: one small class each.

A command has a ``name``, a one-line ``help``, ``add_arguments(parser)`` and
``run(args, console) -> exit code``; :data:`COMMANDS` lists them in the order
``--help`` shows them, and :class:`Group` nests some under a common word
(``config validate``). Adding one (``purge``, say) means writing such a class and
listing it: parsing, ``--config``/``--timeout``, error reporting, logging and exit
codes are handled by :mod:`redis_tenancy._cli` for all of them.

Exit codes: 0 success; 1 a tenant failed (unreachable, timed out) or an operation
failed; 2 bad usage or bad configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import redis

from ._console import Console
from ._fleet import Fleet, Probe, describe_error, load_fleet, ping, probe_all, shown_name
from ._purge import PurgePolicy, PurgeResult
from ._redact import MASK, SECRET_KEYS, redact_url

__all__ = ["COMMANDS", "Command", "Group", "UsageError"]


class UsageError(Exception):
    """A bad argument value: reported with the subcommand's usage line, exit 2."""


class Command(Protocol):
    """One subcommand."""

    name: str
    help: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the subcommand's own arguments."""

    def run(self, args: argparse.Namespace, console: Console) -> int:
        """Do the work; return the exit code."""
        ...


@dataclass(frozen=True)
class Group:
    """Subcommands under one word: ``redis-tenancy config validate``."""

    name: str
    help: str
    commands: Sequence[Command]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# -- check and status -----------------------------------------------------------------------


def _check(
    fleet: Fleet, names: Sequence[str], args: argparse.Namespace, console: Console
) -> list[Probe]:
    router = fleet.router
    with console.progress("checking", len(names)) as bar:
        return probe_all(
            names,
            partial(ping, router),
            timeout=args.timeout,
            concurrency=args.concurrency,
            on_result=lambda probe: bar.advance(),
            endpoint_of=lambda name: router.settings(name).endpoint,
        )


def _selected(fleet: Fleet, wanted: Sequence[str]) -> list[str]:
    return [fleet.require(name) for name in wanted] if wanted else list(fleet.names)


def _json(probe: Probe) -> dict[str, Any]:
    latency = None if probe.latency is None else round(probe.latency * 1e3, 3)
    return {
        "tenant": probe.tenant,
        "endpoint": probe.endpoint,
        "latency_ms": latency,
        "state": probe.state,
        "error": probe.error,
    }


def _summary(probes: Sequence[Probe]) -> str:
    failed = sum(1 for p in probes if not p.ok)
    noun = "tenant" if len(probes) == 1 else "tenants"
    return f"{len(probes)} {noun}: {len(probes) - failed} ok, {failed} failed"


def _probe_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of the commands that PING tenants (check, status)."""
    parser.add_argument("tenants", nargs="*", metavar="TENANT", help="only these tenants")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--concurrency", type=positive_int, default=32, help="tenants checked at once (32)"
    )


class Check:
    name = "check"
    help = "connect to every tenant and PING it, in parallel (exit 1 if any fails)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _probe_arguments(parser)

    def run(self, args: argparse.Namespace, console: Console) -> int:
        with load_fleet(args.config, timeout=args.timeout) as fleet:
            names = _selected(fleet, args.tenants)
            if not names:
                console.warn(f"no tenants to check in {fleet.source}")
                return 1
            probes = _check(fleet, names, args, console)
            if args.json:
                console.json(
                    {"ok": all(p.ok for p in probes), "tenants": [_json(p) for p in probes]}
                )
            else:
                rows = [
                    (
                        shown_name(p.tenant),
                        p.endpoint,
                        "-" if p.latency is None else f"{p.latency * 1e3:.1f} ms",
                        p.state if p.ok else f"{p.state}: {p.error}",
                    )
                    for p in probes
                ]
                console.table(["TENANT", "ENDPOINT", "LATENCY>", "STATE"], rows)
                console.line(_summary(probes))
            return 0 if all(p.ok for p in probes) else 1


class Status:
    name = "status"
    help = "PING every tenant, then show each endpoint's circuit (failover state)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _probe_arguments(parser)

    def run(self, args: argparse.Namespace, console: Console) -> int:
        with load_fleet(args.config, timeout=args.timeout) as fleet:
            names = _selected(fleet, args.tenants)
            probes = {p.tenant: p for p in _check(fleet, names, args, console)}
            statuses = [fleet.router.status(name) for name in names]
            if args.json:
                console.json(
                    {
                        "tenants": [
                            {
                                "tenant": s.name,
                                "kind": s.kind,
                                "state": probes[s.name].state,
                                "error": probes[s.name].error,
                                "active": s.active,
                                "failovers": s.failovers,
                                "failbacks": s.failbacks,
                                "endpoints": [
                                    {
                                        "url": e.url,
                                        "circuit": e.state,
                                        "active": e.active,
                                        "consecutive_failures": e.consecutive_failures,
                                        "last_error": e.last_error,
                                    }
                                    for e in s.endpoints
                                ],
                            }
                            for s in statuses
                        ]
                    }
                )
            else:
                rows = []
                for s in statuses:
                    first = True
                    for e in s.endpoints or ():
                        rows.append(
                            (
                                shown_name(s.name) if first else "",
                                probes[s.name].state if first else "",
                                e.url,
                                e.state,
                                "*" if e.active else "",
                                e.consecutive_failures,
                                " ".join((e.last_error or "").split())[:80],
                            )
                        )
                        first = False
                console.table(
                    ["TENANT", "STATE", "ENDPOINT", "CIRCUIT", "ACTIVE", "FAILURES>", "LAST ERROR"],
                    rows,
                )
                moved = sum(s.failovers for s in statuses)
                console.line(f"{_summary(list(probes.values()))}; {moved} failovers since start")
            return 0 if all(p.ok for p in probes.values()) else 1


# -- one tenant ----------------------------------------------------------------------------


def _flat(value: Any) -> str:
    if isinstance(value, Mapping):
        return ",".join(f"{k}={_flat(v)}" for k, v in value.items())
    return str(value)


class Info:
    name = "info"
    help = "show a tenant's INFO"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("tenant", metavar="TENANT")
        parser.add_argument("--section", help="one INFO section (server, memory, keyspace...)")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def run(self, args: argparse.Namespace, console: Console) -> int:
        with load_fleet(args.config, timeout=args.timeout) as fleet:
            name = fleet.require(args.tenant)
            settings = fleet.router.settings(name)
            try:
                info = (
                    fleet.router.client(name).info(args.section)
                    if args.section
                    else (fleet.router.client(name).info())
                )
            except redis.RedisError as exc:
                console.warn(f"{shown_name(name)}: {describe_error(exc, settings.redis_kwargs)}")
                return 1
            if args.json:
                console.json(info)
            else:
                for key, value in info.items():
                    console.line(f"{key}:{_flat(value)}")
            return 0


def _text(key: Any) -> str:
    if isinstance(key, bytes):
        return key.decode("utf-8", "backslashreplace")
    return str(key)


class Keys:
    name = "keys"
    help = "list a tenant's keys matching a pattern (SCAN, never KEYS)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("tenant", metavar="TENANT")
        parser.add_argument("--pattern", default="*", help="glob-style MATCH pattern ('*')")
        parser.add_argument(
            "--count", type=positive_int, default=1000, help="SCAN COUNT hint per call (1000)"
        )
        parser.add_argument("--limit", type=positive_int, help="stop after this many keys")

    def run(self, args: argparse.Namespace, console: Console) -> int:
        with load_fleet(args.config, timeout=args.timeout) as fleet:
            name = fleet.require(args.tenant)
            settings = fleet.router.settings(name)
            client = fleet.router.client(name)
            shown = 0
            try:
                with console.progress("scanning", None) as bar:
                    for batch in _scan(client, args.pattern, args.count):
                        for key in batch:
                            if args.limit is not None and shown >= args.limit:
                                return 0
                            console.line(_text(key))
                            shown += 1
                        bar.advance(len(batch), detail="keys matched")
            except redis.RedisError as exc:
                console.warn(f"{shown_name(name)}: {describe_error(exc, settings.redis_kwargs)}")
                return 1
            return 0


def _scan(client: Any, pattern: str, count: int) -> Iterable[list[Any]]:
    """Batches of matching keys, one per SCAN call (every primary of a Cluster)."""
    if not hasattr(client, "scan"):
        return
    if hasattr(client, "get_nodes"):  # a Cluster: redis-py walks every primary
        batch: list[Any] = []
        for key in client.scan_iter(match=pattern, count=count):
            batch.append(key)
            if len(batch) >= count:
                yield batch
                batch = []
        yield batch
        return
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor=cursor, match=pattern, count=count)
        yield keys
        if cursor == 0:
            return


class Purge:
    name = "purge"
    help = "delete every key of a tenant (its namespace, or its own database)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("tenant", metavar="TENANT")
        parser.add_argument("--dry-run", action="store_true", help="count the keys, delete nothing")
        parser.add_argument(
            "--yes", action="store_true", help="do not ask before deleting (scripts)"
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="a tenant without a namespace on db 0: its whole db 0 is really its own",
        )
        parser.add_argument(
            "--rate", type=positive_int, help="delete at most this many keys per second"
        )

    def run(self, args: argparse.Namespace, console: Console) -> int:
        with load_fleet(args.config, timeout=args.timeout) as fleet:
            name = fleet.require(args.tenant)
            router = fleet.router
            prefix = router.settings(name).key_prefix(name)
            scope = f"namespace {prefix!r}" if prefix else "its whole database"
            policy = PurgePolicy(max_keys_per_second=args.rate)
            with console.progress("counting", None) as bar:
                counted = router.purge(
                    name, dry_run=True, policy=policy, force=args.force, progress=_shown(bar)
                )
            console.line(f"{shown_name(name)}: {counted.matched} keys in {scope}")
            if args.dry_run:
                return 0
            if not args.yes and not _confirmed(name, counted.matched, console):
                console.warn("nothing deleted")
                return 1
            with console.progress("deleting", counted.matched) as bar:
                done = router.purge(name, policy=policy, force=args.force, progress=_shown(bar))
            console.line(f"{shown_name(name)}: deleted {done.deleted} keys in {done.seconds:.1f}s")
            return 0


def _shown(bar: Any) -> Any:
    """A purge progress callback that moves ``bar`` (counted keys or deleted ones)."""

    def seen(result: PurgeResult) -> None:
        bar.advance((result.deleted or result.matched) - bar.done, detail="keys")

    return seen


def _confirmed(name: str, count: int, console: Console) -> bool:
    """Ask a person at a terminal to type the tenant's name; refuse when nobody can."""
    if not sys.stdin.isatty():
        raise UsageError("not a terminal: pass --yes to purge without asking")
    console.warn(f"delete {count} keys of {shown_name(name)}? type the tenant's name to confirm:")
    return input().strip() == name


# -- configuration ---------------------------------------------------------------------------


def _redacted(key: str, value: Any) -> Any:
    if key in SECRET_KEYS:
        return MASK
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    if isinstance(value, Mapping):
        return {k: _redacted(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(key, v) for v in value]
    return value


def _toml(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


class ConfigValidate:
    name = "validate"
    help = "check the tenants file without connecting (exit 2 if invalid)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        pass

    def run(self, args: argparse.Namespace, console: Console) -> int:
        with load_fleet(args.config) as fleet:
            console.line(f"{fleet.source}: {len(fleet.names)} tenants, valid")
            return 0


class ConfigShow:
    name = "show"
    help = "print the tenants' settings, passwords and tokens masked"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON")

    def run(self, args: argparse.Namespace, console: Console) -> int:
        with load_fleet(args.config) as fleet:
            shown: dict[str, dict[str, Any]] = {}
            for name in fleet.names:
                table = fleet.tables.get(name) or {"url": os.environ.get("REDIS_URL", "")}
                status = fleet.router.status(name)
                standalone = status.kind == "standalone"
                shown[name] = {
                    "endpoint": fleet.router.settings(name).endpoint,
                    "kind": status.kind,
                    "failover": [e.url for e in status.endpoints[1:]] if standalone else [],
                    "settings": {k: _redacted(k, v) for k, v in table.items()},
                }
            if args.json:
                console.json({"source": fleet.source, "tenants": shown})
                return 0
            for name, entry in shown.items():
                console.line(f"[tenants.{json.dumps(name) if not name.isidentifier() else name}]")
                console.line(f"# endpoint: {entry['endpoint']} ({entry['kind']})")
                for url in entry["failover"]:
                    console.line(f"# failover: {url}")
                for key, value in entry["settings"].items():
                    console.line(f"{key} = {_toml(value)}")
                console.line()
            return 0


# -- the original two ----------------------------------------------------------------------


class Demo:
    name = "demo"
    help = "start 3 embedded redis-servers, serve a burst for 3 tenants, show isolation"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--requests", type=int, default=3000, help="total requests (3000)")

    def run(self, args: argparse.Namespace, console: Console) -> int:
        if args.requests < 1:
            raise UsageError("--requests must be at least 1")
        from ._demo import run_demo

        return run_demo(args.requests, out=console.out)


class Version:
    name = "version"
    help = "print the version"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        pass

    def run(self, args: argparse.Namespace, console: Console) -> int:
        from . import __version__

        console.line(__version__)
        return 0


#: Every subcommand, in the order ``--help`` lists them.
COMMANDS: Sequence[Command | Group] = (
    Check(),
    Status(),
    Info(),
    Keys(),
    Purge(),
    Group("config", "validate or show the tenants file", (ConfigValidate(), ConfigShow())),
    Demo(),
    Version(),
)
