"""Introspection of a router: how many tenants, clients, pools and connections it holds.

Pure bookkeeping over objects the router already has: no I/O, no server round trip.
The connection counts come from the redis-py pools themselves, so they are what this
process holds open; ``INFO clients`` on the server is the outside view of the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["RouterStats", "count_pools"]


@dataclass(frozen=True, slots=True)
class RouterStats:
    """A snapshot of :meth:`Router.stats`.

    Attributes:
        registered: tenant names the router knows (live or not yet used).
        live_tenants: tenants used at least once (they have a Tenant object).
        live_clients: redis-py client objects built (sync, plus async per event loop);
            tenants with identical connection settings share theirs.
        pools: distinct connection pools behind those clients.
        open_connections: connected sockets in those pools, busy or idle.
        idle_connections: connected sockets waiting in a pool.
    """

    registered: int
    live_tenants: int
    live_clients: int
    pools: int
    open_connections: int
    idle_connections: int


def _is_open(connection: Any) -> bool:
    # sync connections keep a socket in ``_sock``; async ones expose ``is_connected``
    is_connected = getattr(connection, "is_connected", None)
    if is_connected is not None:
        return bool(is_connected)
    return getattr(connection, "_sock", None) is not None


def count_pools(clients: Iterable[Any]) -> tuple[int, int, int, int]:
    """``(clients, pools, open, idle)`` over ``clients`` (shared pools counted once)."""
    seen: set[int] = set()
    seen_clients: set[int] = set()
    n_pools = n_open = n_idle = 0
    for client in clients:
        if id(client) in seen_clients:
            continue
        seen_clients.add(id(client))
        pool = getattr(client, "connection_pool", None)
        if pool is None or id(pool) in seen:
            continue
        seen.add(id(pool))
        n_pools += 1
        idle = [c for c in list(pool._available_connections) if _is_open(c)]
        busy = [c for c in list(pool._in_use_connections) if _is_open(c)]
        n_idle += len(idle)
        n_open += len(idle) + len(busy)
    return len(seen_clients), n_pools, n_open, n_idle
