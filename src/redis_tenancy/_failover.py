"""Endpoint health for one tenant: circuit breakers and the order to try endpoints in.

Everything here is decision, nothing is I/O: the sync and async connection drivers in
:mod:`redis_tenancy._pool` ask an :class:`EndpointPlan` which endpoint to connect to,
tell it what happened, and it answers. The clock is injected (``time.monotonic`` by
default), so the tests drive every transition with a fake clock, and no thread or
timer ever runs: health is learned from real traffic and from half-open probes that
ride on the next connection a caller opens.

Per endpoint the breaker is the classic one::

    closed --(threshold consecutive failures)--> open --(cooldown)--> half-open
      ^                                                                  |
      +-------------------(one successful probe)-------------------------+
                         (a failed probe re-opens it for another cooldown)

Only one caller at a time probes a half-open endpoint; everyone else skips it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ._errors import NoHealthyEndpointError, TenantConfigError
from ._redact import redact_text

__all__ = [
    "DEFAULT_POLICY",
    "CircuitPolicy",
    "EndpointPlan",
    "EndpointStatus",
    "FailoverEvent",
    "Route",
    "TenantStatus",
]

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"
_INF = math.inf


@dataclass(frozen=True, slots=True)
class CircuitPolicy:
    """How quickly an endpoint is given up on and re-tried.

    Attributes:
        cooldown: seconds an open circuit waits before one probe may try it again.
        threshold: consecutive failures (refused or timed-out connects, read
            timeouts) that open the circuit. 1 means "the first failure moves the
            tenant to its next endpoint".
    """

    cooldown: float = 5.0
    threshold: int = 1

    def __post_init__(self) -> None:
        cooldown_ok = isinstance(self.cooldown, int | float) and not isinstance(self.cooldown, bool)
        if not cooldown_ok or not self.cooldown >= 0 or math.isinf(self.cooldown):
            raise TenantConfigError(
                f"failover_cooldown must be a finite number of seconds >= 0, got {self.cooldown!r}"
            )
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int):
            raise TenantConfigError(
                f"failover_threshold must be an int >= 1, got {type(self.threshold).__name__}"
            )
        if self.threshold < 1:
            raise TenantConfigError(f"failover_threshold must be >= 1, got {self.threshold}")


DEFAULT_POLICY = CircuitPolicy()


@dataclass(frozen=True, slots=True)
class FailoverEvent:
    """A tenant's new connections moved to another endpoint.

    Attributes:
        tenant: the tenant's name.
        kind: ``"failover"`` (to a lower-priority endpoint) or ``"failback"``.
        from_endpoint: redacted URL connections went to before (``None`` at start).
        to_endpoint: redacted URL new connections go to now.
        reason: the redacted last error of the endpoint that was left, if any.
    """

    tenant: str
    kind: str
    from_endpoint: str | None
    to_endpoint: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class EndpointStatus:
    """One endpoint as :meth:`Router.status` reports it (all text redacted)."""

    url: str
    state: str
    consecutive_failures: int
    last_error: str | None
    active: bool


@dataclass(frozen=True, slots=True)
class TenantStatus:
    """A tenant's endpoints, which one is active, and how often it switched."""

    name: str
    kind: str
    active: str | None
    endpoints: tuple[EndpointStatus, ...]
    failovers: int = 0
    failbacks: int = 0


class Route:
    """One endpoint of a plan and its breaker. ``target`` is what drivers connect to."""

    __slots__ = (
        "failed_total",
        "failures",
        "last_error",
        "opened_at",
        "probing",
        "shown",
        "state",
        "target",
    )

    def __init__(self, target: object, shown: str) -> None:
        self.target = target
        self.shown = shown
        self.state = CLOSED
        self.failures = 0
        #: Every failure ever recorded. A driver notes it before it connects and hands
        #: it to :meth:`EndpointPlan.succeeded`: a success whose connect began before
        #: the latest failure is stale news and must not close the circuit again.
        self.failed_total = 0
        self.opened_at = 0.0
        self.last_error: str | None = None
        self.probing = False

    def __repr__(self) -> str:
        return f"<Route {self.shown} {self.state}>"


class EndpointPlan:
    """The ordered endpoints of one tenant and the health of each.

    Drivers call :meth:`attempts` to get the endpoints to try for a new connection
    (best first, probes claimed as they are handed out), then report each outcome
    with :meth:`failed` or :meth:`succeeded`. :meth:`keep` is the hot-path check a
    pooled connection makes before it is reused: it is one identity comparison while
    nothing is wrong.

    Args:
        tenant: the tenant's name, for messages and events.
        routes: (target, redacted URL) pairs in priority order; the first is the primary.
        policy: cooldown and threshold.
        announce: called with a :class:`FailoverEvent` when new connections move.
        clock: a monotonic clock in seconds.
    """

    __slots__ = (
        "_lock",
        "active",
        "announce",
        "clock",
        "failbacks",
        "failovers",
        "policy",
        "recheck_at",
        "routes",
        "stable",
        "tenant",
        "touched",
    )

    def __init__(
        self,
        tenant: str,
        routes: Sequence[tuple[object, str]],
        policy: CircuitPolicy = DEFAULT_POLICY,
        announce: Callable[[FailoverEvent], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tenant = tenant
        self.policy = policy
        self.announce = announce
        self.clock = clock
        self.routes: tuple[Route, ...] = tuple(Route(t, s) for t, s in routes)
        self.active: Route | None = None
        self.failovers = 0
        self.failbacks = 0
        #: Set by connections on every checkout: the use bit of the live-client clock.
        self.touched = False
        self._lock = threading.Lock()
        #: Connections to ``stable`` are reused without further checks until ``recheck_at``.
        self.stable: Route | None = None
        self.recheck_at = _INF
        self._recompute()

    def __repr__(self) -> str:
        return f"<EndpointPlan {self.tenant!r} {list(self.routes)}>"

    # -- the hot path ---------------------------------------------------------------------

    def keep(self, route: Route | None) -> bool:
        """May a pooled connection to ``route`` be reused as it is?

        False when its circuit opened, when a better endpoint is healthy again
        (failback), or when a better endpoint is due for a probe.
        """
        if route is not self.stable:
            return False
        recheck_at = self.recheck_at
        return recheck_at == _INF or self.clock() < recheck_at

    # -- connecting -----------------------------------------------------------------------

    def attempts(self) -> Iterator[tuple[Route, bool]]:
        """Yield ``(route, is_probe)`` in the order a new connection should try them.

        Closed endpoints are yielded as they are; an open endpoint whose cooldown has
        passed is claimed for a probe (only one caller gets it); the rest are skipped.
        A caller that stops iterating after a probe without reporting must call
        :meth:`abandon`.
        """
        for route in self.routes:
            if route.state == CLOSED:
                yield route, False
            elif self._claim_probe(route):
                yield route, True

    def _claim_probe(self, route: Route) -> bool:
        now = self.clock()
        with self._lock:
            if route.probing or now < route.opened_at + self.policy.cooldown:
                return False
            route.probing = True
            route.state = HALF_OPEN
            self._recompute()
            return True

    def abandon(self, route: Route) -> None:
        """A probe was interrupted without a verdict: let another caller try later."""
        with self._lock:
            if route.probing:
                route.probing = False
                route.state = OPEN
                self._recompute()

    def failed(self, route: Route, error: BaseException) -> None:
        """Record a failure of ``route`` (connect refused or timed out, read timeout)."""
        now = self.clock()
        with self._lock:
            route.failures += 1
            route.failed_total += 1
            route.last_error = redact_text(f"{type(error).__name__}: {error}")
            opens = route.state == CLOSED and route.failures >= self.policy.threshold
            if route.probing or opens:
                route.state = OPEN
                route.opened_at = now
                route.probing = False
            self._recompute()

    def succeeded(self, route: Route, since: int | None = None) -> FailoverEvent | None:
        """A connection to ``route`` is up: close its circuit; announce a switch if any.

        ``since`` is ``route.failed_total`` as the driver read it before connecting.
        If a failure was recorded in between, this success is older news than that
        failure (its handshake finished before the server died, say, and its thread
        was descheduled before reporting) and changes nothing: reopening the
        circuit on its word would send every caller back to a dead endpoint.

        Returns the switch (so the driver can close its pool's idle connections to the
        endpoint that was left), or ``None``.
        """
        with self._lock:
            if since is not None and route.failed_total != since:
                return None  # keep() retires the connection if its endpoint is not kept
            route.failures = 0
            route.state = CLOSED
            route.probing = False
            self._recompute()
            if route is not self.stable:
                # A straggler: it chose this endpoint before a better one recovered.
                # keep() will retire it; it must not flip the active endpoint back.
                return None
            previous = self.active
            self.active = route
            event = self._event(previous, route)
        if event is not None and self.announce is not None:
            self.announce(event)
        return event

    def _event(self, previous: Route | None, route: Route) -> FailoverEvent | None:
        if previous is route or (previous is None and route is self.routes[0]):
            return None
        if previous is None:
            previous = self.routes[0]
        order = {id(r): i for i, r in enumerate(self.routes)}
        failback = order.get(id(route), 0) < order.get(id(previous), len(self.routes))
        if failback:
            self.failbacks += 1
        else:
            self.failovers += 1
        return FailoverEvent(
            tenant=self.tenant,
            kind="failback" if failback else "failover",
            from_endpoint=previous.shown,
            to_endpoint=route.shown,
            reason=None if failback else previous.last_error,
        )

    def exhausted(self) -> NoHealthyEndpointError:
        """The error for "every endpoint is down", naming each one and its last error."""
        now = self.clock()
        parts = []
        for route in self.routes:
            detail = route.last_error or "not tried"
            if route.state != CLOSED:
                wait = max(0.0, route.opened_at + self.policy.cooldown - now)
                detail = f"{route.state}, next probe in {wait:.1f}s; last error: {detail}"
            parts.append(f"{route.shown} ({detail})")
        return NoHealthyEndpointError(
            f"tenant {self.tenant!r}: no healthy endpoint: " + "; ".join(parts)
        )

    # -- changing the endpoint list ---------------------------------------------------------

    def set_routes(self, routes: Sequence[tuple[object, str]]) -> None:
        """Replace the endpoint list, keeping the health of endpoints that stay."""
        with self._lock:
            known = {r.shown: r for r in self.routes}
            self.routes = tuple(known.get(s) or Route(t, s) for t, s in routes)
            for route, (target, _) in zip(self.routes, routes, strict=True):
                route.target = target
            if self.active is not None and self.active not in self.routes:
                self.active = None
            self._recompute()

    def _recompute(self) -> None:
        # Called with the lock held (or from __init__). Connections to the best closed
        # endpoint are kept until the earliest time a better one may be probed.
        stable: Route | None = None
        recheck_at = _INF
        cooldown = self.policy.cooldown
        for route in self.routes:
            if route.state == CLOSED:
                stable = route
                break
            if not route.probing:
                recheck_at = min(recheck_at, route.opened_at + cooldown)
        self.recheck_at = recheck_at
        self.stable = stable

    # -- introspection ----------------------------------------------------------------------

    def status(self, name: str, kind: str) -> TenantStatus:
        """A snapshot for :meth:`Router.status`."""
        now = self.clock()
        with self._lock:
            endpoints = tuple(
                EndpointStatus(
                    url=r.shown,
                    state=(
                        HALF_OPEN
                        if r.state == OPEN and now >= r.opened_at + self.policy.cooldown
                        else r.state
                    ),
                    consecutive_failures=r.failures,
                    last_error=r.last_error,
                    active=r is self.active,
                )
                for r in self.routes
            )
            active = self.active.shown if self.active is not None else None
            return TenantStatus(name, kind, active, endpoints, self.failovers, self.failbacks)
