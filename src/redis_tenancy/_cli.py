"""The command line: ``redis-tenancy`` and ``python -m redis_tenancy``.

Operators check, inspect and observe every tenant of a tenants file::

    redis-tenancy --config tenants.toml check          # readiness probe: exit 0 / 1
    redis-tenancy check --json
    redis-tenancy status
    redis-tenancy info acme --section memory
    redis-tenancy keys acme --pattern 'session:*' --count 500
    redis-tenancy config validate
    redis-tenancy config show

The tenants come from ``--config`` (before or after the subcommand) or
``REDIS_TENANCY_CONFIG``, plus the default tenant when ``REDIS_URL`` is set. This
module only parses, dispatches and reports errors; the subcommands live in
:mod:`redis_tenancy._commands`, one class each.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence

import redis

from ._commands import COMMANDS, Command, Group, UsageError
from ._console import Console
from ._errors import PopotoException, TenantConfigError, UnknownTenantError
from ._fleet import describe_error

__all__ = ["main", "program_name"]

#: The logger the library writes to (as Popoto's did).
_LIBRARY_LOGGER = "POPOTO-REDIS_DB"


def program_name(argv0: str) -> str:
    """The program as it was invoked, for the usage line."""
    base = os.path.basename(argv0)
    if base in ("__main__.py", "-m", "-c", ""):
        return "python -m redis_tenancy"
    return base


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text}")
    return value


def _common(defaults: bool) -> argparse.ArgumentParser:
    """The options every subcommand takes, before or after its name.

    On the subcommands their defaults are suppressed, so a value given before the
    subcommand is not overwritten by the subparser's default.
    """
    parser = argparse.ArgumentParser(add_help=False)

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--config",
        metavar="FILE",
        default=default(None),
        help="tenants file (TOML); default: $REDIS_TENANCY_CONFIG",
    )
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        metavar="SECONDS",
        default=default(5.0),
        help="connect, read and per-tenant check timeout (5)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default(0),
        help="show the library's log (-v warnings, -vv everything)",
    )
    return parser


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The parser for every subcommand in :data:`redis_tenancy._commands.COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Check, inspect and observe the tenants of a redis-tenancy config.",
        parents=[_common(defaults=True)],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for entry in COMMANDS:
        if isinstance(entry, Group):
            group = commands.add_parser(entry.name, help=entry.help, description=entry.help)
            nested = group.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")
            for command in entry.commands:
                _add(nested, command)
        else:
            _add(commands, entry)
    return parser


def _add(commands: argparse._SubParsersAction[argparse.ArgumentParser], command: Command) -> None:
    sub = commands.add_parser(
        command.name, help=command.help, description=command.help, parents=[_common(False)]
    )
    command.add_arguments(sub)
    sub.set_defaults(run=command.run, parser=sub)


@contextlib.contextmanager
def _library_log(verbosity: int) -> Iterator[None]:
    """Show the library's own log lines only when asked (``-v``).

    The command reports every failure itself; without this, each error would also
    be printed by the logging module's last-resort handler. The level is restored
    afterwards (``main()`` may run inside a larger program, or a test).
    """
    logger = logging.getLogger(_LIBRARY_LOGGER)
    saved = logger.level
    if verbosity:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        logger.setLevel(logging.WARNING if verbosity == 1 else logging.DEBUG)
    else:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(saved)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m redis_tenancy`` and the ``redis-tenancy`` script."""
    prog = program_name(sys.argv[0])
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    console = Console(sys.stdout, sys.stderr)
    # The demo narrates its failover with the library's warnings, as it always did.
    verbosity = max(args.verbose, 1) if args.command == "demo" else args.verbose
    with _library_log(verbosity):
        try:
            return int(args.run(args, console))
        except UsageError as exc:
            args.parser.print_usage(sys.stderr)
            console.warn(f"{args.parser.prog}: error: {exc}")
            return 2
        except (TenantConfigError, UnknownTenantError) as exc:
            console.warn(f"{prog}: error: {exc.message}")
            return 2
        except PopotoException as exc:
            console.warn(f"{prog}: error: {exc.message}")
            return 1
        except redis.RedisError as exc:
            console.warn(f"{prog}: error: {describe_error(exc)}")
            return 1
        except KeyboardInterrupt:
            return 130
