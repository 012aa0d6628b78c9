"""Introspection of a router: how many tenants, clients, pools and connections it holds.

Pure bookkeeping over objects the router already has: no I/O, no server round trip.
The connection counts come from the connections the router made (each knows whether
its socket is open and whether a caller has it), so they are what this process holds
open; ``INFO clients`` on the server is the outside view of the same. Pools the
router did not make (a caller's own ``connection_pool``) and Cluster clients report
redis-py's own count of connection objects instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._backend import Backend

__all__ = ["RouterStats", "count_backends"]


@dataclass(frozen=True, slots=True)
class RouterStats:
    """A snapshot of :meth:`Router.stats`.

    Attributes:
        registered: tenant names the router knows (live or not yet used).
        live_tenants: tenants used at least once (they have a Tenant object).
        live_clients: shared redis-py clients built (sync, plus async per event loop);
            tenants with identical connection settings share theirs.
        pools: distinct connection pools behind those clients.
        open_connections: connected sockets in those pools, busy or idle.
        idle_connections: connected sockets nobody has checked out.
    """

    registered: int
    live_tenants: int
    live_clients: int
    pools: int
    open_connections: int
    idle_connections: int


def _object_counts(pool: Any) -> tuple[int, int]:
    """(all, idle) connection objects of a pool we did not make, as redis-py counts them."""
    counts = [count for count, _ in pool.get_connection_count()]
    return sum(counts), counts[0] if counts else 0


def count_backends(backends: Iterable[Backend]) -> tuple[int, int, int, int]:
    """``(clients, pools, open, idle)`` over every built template of ``backends``."""
    clients = pools = opened = idle = 0
    for backend in backends:
        templates = backend.templates()
        clients += len(templates)
        states = {id(state): state for state in backend.states()}
        for state in states.values():
            if state.pool() is None:
                continue
            pools += 1
            more, quiet = state.counts()
            opened += more
            idle += quiet
        for template in templates:
            pool = getattr(template, "connection_pool", None)
            if pool is not None and not any(s.pool() is pool for s in states.values()):
                pools += 1
                more, quiet = _object_counts(pool)
                opened += more
                idle += quiet
    return clients, pools, opened, idle
