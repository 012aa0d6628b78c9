"""The end of a new connection's handshake, sent in one write instead of a round trip each.

redis-py 8.1 opens a RESP3 connection with up to six commands, and its sync driver
waits for each reply before sending the next: ``HELLO``, ``CLIENT MAINT_NOTIFICATIONS``,
``CLIENT SETNAME``, ``CLIENT SETINFO LIB-NAME``, ``CLIENT SETINFO LIB-VER``,
``SELECT``. Only the first reply steers what follows (it upgrades the parser and
settles the protocol); the rest can go out back to back, which is what redis-py's
async driver already does for part of them, what upstream's sync driver does since
redis-py#4203, and what the Redis protocol documentation recommends. A tenant's first
request pays for this handshake, and so does every reconnect after a failover or a
budget eviction, so the managed connections in :mod:`redis_tenancy._connection` let
redis-py run the head (``AUTH``/``HELLO``) with the tail hidden, then send the tail
built here in one write and judge each reply exactly as redis-py would.

Everything here is decision, nothing is I/O; the drivers read the replies.

This leans on the order of redis-py's private handshake (which public attributes it
reads, in which order it sends the commands). That contract is pinned by
``tests/test_handshake.py`` for each redis-py release listed in :data:`VERIFIED`; with
any other release :func:`trusted` is false and the connections let redis-py run its
own handshake, unchanged. See docs/DESIGN.md for the measurement behind keeping it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.exceptions import ConnectionError, ResponseError
from redis.utils import check_protocol_version, str_if_bytes

__all__ = ["VERIFIED", "Step", "head_only", "tail", "trusted"]

#: redis-py releases whose handshake ``tests/test_handshake.py`` has checked against
#: this module's: the same commands, the same replies judged the same way.
VERIFIED = frozenset({"8.1.0"})

_TRUSTED = redis.__version__ in VERIFIED


def trusted() -> bool:
    """May the managed connections send the handshake's tail themselves?"""
    return _TRUSTED


Judge = Callable[[Any], None]
"""Checks one reply: the value read, or the ``ResponseError`` the server answered."""

Step = tuple[tuple[Any, ...], Judge]
"""A command of the tail and the check its reply must pass."""

# What redis-py's own handshake would send after AUTH/HELLO; hidden while it runs.
_TAIL_ATTRIBUTES = ("maint_notifications_config", "client_name", "driver_info", "db")
_HIDDEN = (None, None, None, 0)

_log = logging.getLogger("redis.connection")


@contextmanager
def head_only(conn: Any) -> Iterator[None]:
    """Let redis-py's handshake run with nothing to send after ``AUTH``/``HELLO``."""
    # An attribute this redis-py does not have is left alone (and its command with it).
    hidden = [(n, v) for n, v in zip(_TAIL_ATTRIBUTES, _HIDDEN, strict=True) if hasattr(conn, n)]
    saved = [(name, getattr(conn, name)) for name, _ in hidden]
    for name, value in hidden:
        setattr(conn, name, value)
    try:
        yield
    finally:
        for name, value in saved:
            setattr(conn, name, value)


def tail(conn: Any) -> list[Step]:
    """The rest of the handshake, in redis-py's order. Call it after the head ran:
    whether maintenance notifications apply depends on the protocol HELLO settled."""
    steps: list[Step] = []
    command: tuple[Any, ...]
    config = getattr(conn, "maint_notifications_config", None)
    if (
        config
        and config.enabled
        and getattr(conn, "_maint_notifications_connection_handler", None)
        and getattr(conn, "host", None) is not None
        and check_protocol_version(conn.get_protocol(), 3)
    ):
        endpoint_type = config.get_endpoint_type(conn.host, conn).value
        command = ("CLIENT", "MAINT_NOTIFICATIONS", "ON", "moving-endpoint-type", endpoint_type)
        steps.append((command, _maint_notifications(config.enabled == "auto")))
    if getattr(conn, "client_name", None):
        command = ("CLIENT", "SETNAME", conn.client_name)
        steps.append((command, _expect_ok("Error setting client name")))
    info = getattr(conn, "driver_info", None)
    if info and info.formatted_name:
        steps.append((("CLIENT", "SETINFO", "LIB-NAME", info.formatted_name), _optional))
    if info and info.lib_version:
        steps.append((("CLIENT", "SETINFO", "LIB-VER", info.lib_version), _optional))
    if conn.db:
        steps.append((("SELECT", conn.db), _expect_ok("Invalid Database")))
    return steps


def _expect_ok(failure: str) -> Judge:
    def judge(reply: Any) -> None:
        if isinstance(reply, ResponseError):
            raise reply
        if str_if_bytes(reply) != "OK":
            raise ConnectionError(failure)

    return judge


def _optional(reply: Any) -> None:
    """CLIENT SETINFO is new in Redis 7.2: older servers refuse it, and that is fine."""


def _maint_notifications(auto: bool) -> Judge:
    def judge(reply: Any) -> None:
        if not isinstance(reply, ResponseError) and reply and str_if_bytes(reply) == "OK":
            return
        error = reply
        if not isinstance(error, ResponseError):
            error = ResponseError("The server doesn't support maintenance notifications")
        if not auto:
            raise error
        _log.debug("Failed to enable maintenance notifications: %s", error)

    return judge
