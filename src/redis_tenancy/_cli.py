"""Command line: ``python -m redis_tenancy demo``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m redis_tenancy`` and the ``redis-tenancy`` script."""
    parser = argparse.ArgumentParser(
        prog="python -m redis_tenancy",
        description="Multi-tenant Redis/Valkey routing behind the popoto.redis_db API.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="start 3 embedded redis-servers, serve a burst for 3 tenants, show isolation"
    )
    demo.add_argument("--requests", type=int, default=3000, help="total requests (default 3000)")
    commands.add_parser("version", help="print the version")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "version":
        from . import __version__

        print(__version__)
        return 0
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    from ._demo import run_demo

    return run_demo(args.requests, out=sys.stdout)
