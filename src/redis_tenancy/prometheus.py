"""A Prometheus collector over ``Router.stats()`` and the failover counters of ``Router.status()``.

Every metric is unlabelled or has a label with a fixed, tiny set of values (a circuit
state), whatever the number of tenants: one time series per tenant is how a
100 000-tenant deployment takes down its Prometheus. Per-tenant series exist only
when asked for (``per_tenant=True``), for deployments with a handful of tenants.

Failover counters come from ``Router.status(name)`` of the tenants that failed over
or back since the collector was created (it learns them from ``Router.on_failover``),
so a scrape reads a few tenants, never all of them, and never makes an idle tenant
live. ``tenants=`` adds names to read on every scrape (e.g. ``router.names`` for a
small, fixed fleet). A removed tenant's counts are kept, so the totals never go
backwards.

Example::

    from prometheus_client import REGISTRY
    from redis_tenancy.prometheus import TenantCollector

    REGISTRY.register(TenantCollector())
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from . import default_router

if TYPE_CHECKING:
    from . import FailoverEvent, Router, TenantStatus

__all__ = ["TenantCollector"]

_STATES = ("closed", "open", "half-open")


class TenantCollector:
    """Collect router and failover metrics, with bounded labels.

    Args:
        router: the router to observe; default the module-level router.
        per_tenant: also export per-tenant series (label ``tenant``). Off by default:
            only for a small number of tenants.
        tenants: names to read the status of on every scrape, besides those that
            failed over; ``None`` reads only those.
    """

    def __init__(
        self,
        router: Router | None = None,
        *,
        per_tenant: bool = False,
        tenants: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self.router = router if router is not None else default_router
        self.per_tenant = per_tenant
        self.tenants = tenants
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._retired: Counter[str] = Counter()
        self._last: dict[str, tuple[int, int]] = {}
        self._unsubscribe = self.router.on_failover(self._on_event)

    def close(self) -> None:
        """Stop listening for failover events (unregister from the registry yourself)."""
        self._unsubscribe()

    def _on_event(self, event: FailoverEvent) -> None:
        with self._lock:
            self._seen.add(event.tenant)

    def _statuses(self) -> list[TenantStatus]:
        with self._lock:
            names = set(self._seen)
        if self.tenants is not None:
            names.update(self.tenants())
        found = []
        for name in sorted(names):
            if name not in self.router:
                self._retire(name)
                continue
            status = self.router.status(name)
            with self._lock:
                self._last[name] = (status.failovers, status.failbacks)
            found.append(status)
        return found

    def _retire(self, name: str) -> None:
        with self._lock:
            failovers, failbacks = self._last.pop(name, (0, 0))
            self._retired["failover"] += failovers
            self._retired["failback"] += failbacks
            self._seen.discard(name)

    def describe(self) -> Iterator[Metric]:
        """The metric families, without samples (lets the registry check names)."""
        gauges, *others = self._families()
        yield from gauges.values()
        yield from others
        if self.per_tenant:
            yield from self._per_tenant([])

    def collect(self) -> Iterator[Metric]:
        """Read the router (no server I/O) and yield the metric families."""
        stats = self.router.stats()
        statuses = self._statuses()
        gauges, failovers, failbacks, endpoints, moved = self._families()
        for name, value in (
            ("registered", stats.registered),
            ("live", stats.live_tenants),
            ("clients", stats.live_clients),
            ("pools", stats.pools),
            ("open", stats.open_connections),
            ("idle", stats.idle_connections),
        ):
            gauges[name].add_metric([], value)
        with self._lock:
            retired = dict(self._retired)
        failovers.add_metric([], retired.get("failover", 0) + sum(s.failovers for s in statuses))
        failbacks.add_metric([], retired.get("failback", 0) + sum(s.failbacks for s in statuses))
        states = Counter(e.state for s in statuses for e in s.endpoints)
        for state in _STATES:
            endpoints.add_metric([state], states[state])
        moved.add_metric([], sum(1 for s in statuses if _failed_over(s)))
        yield from gauges.values()
        yield from (failovers, failbacks, endpoints, moved)
        if self.per_tenant:
            yield from self._per_tenant(statuses)

    def _families(
        self,
    ) -> tuple[
        dict[str, GaugeMetricFamily],
        CounterMetricFamily,
        CounterMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
    ]:
        gauges = {
            "registered": GaugeMetricFamily(
                "redis_tenancy_tenants_registered", "Tenant names the router knows."
            ),
            "live": GaugeMetricFamily(
                "redis_tenancy_tenants_live", "Tenants used at least once (live objects)."
            ),
            "clients": GaugeMetricFamily(
                "redis_tenancy_clients_live", "redis-py clients built (shared ones counted once)."
            ),
            "pools": GaugeMetricFamily(
                "redis_tenancy_pools", "Distinct connection pools behind the live clients."
            ),
            "open": GaugeMetricFamily(
                "redis_tenancy_connections_open", "Connected sockets in those pools, busy or idle."
            ),
            "idle": GaugeMetricFamily(
                "redis_tenancy_connections_idle", "Connected sockets waiting in a pool."
            ),
        }
        failovers = CounterMetricFamily(
            "redis_tenancy_failovers", "Times tenants' new connections moved to a backup endpoint."
        )
        failbacks = CounterMetricFamily(
            "redis_tenancy_failbacks", "Times tenants' new connections moved back up."
        )
        endpoints = GaugeMetricFamily(
            "redis_tenancy_endpoints",
            "Endpoints of tenants that failed over, by circuit state.",
            labels=["state"],
        )
        moved = GaugeMetricFamily(
            "redis_tenancy_tenants_failed_over",
            "Tenants whose connections use another endpoint than their first.",
        )
        return gauges, failovers, failbacks, endpoints, moved

    def _per_tenant(self, statuses: list[TenantStatus]) -> Iterator[Metric]:
        failovers = CounterMetricFamily(
            "redis_tenancy_tenant_failovers", "Failovers of one tenant.", labels=["tenant"]
        )
        failbacks = CounterMetricFamily(
            "redis_tenancy_tenant_failbacks", "Failbacks of one tenant.", labels=["tenant"]
        )
        moved = GaugeMetricFamily(
            "redis_tenancy_tenant_failed_over",
            "1 when the tenant's connections use another endpoint than its first.",
            labels=["tenant"],
        )
        for status in statuses:
            failovers.add_metric([status.name], status.failovers)
            failbacks.add_metric([status.name], status.failbacks)
            moved.add_metric([status.name], int(_failed_over(status)))
        yield from (failovers, failbacks, moved)


def _failed_over(status: TenantStatus) -> bool:
    return bool(status.endpoints) and status.active not in (None, status.endpoints[0].url)
