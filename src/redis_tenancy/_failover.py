"""Endpoint health: circuit breakers and the order to try endpoints in.

Everything here is decision, nothing is I/O: the sync and async connections in
:mod:`redis_tenancy._connection` ask an :class:`EndpointPlan` which endpoint to connect
to, tell it what happened, and it answers. The clock is injected (``time.monotonic``
by default), so the tests drive every transition with a fake clock, and no thread or
timer ever runs: health is learned from real traffic and from probes that ride on the
next connection a caller opens.

Per endpoint the breaker is the classic one::

    closed --(threshold consecutive failures)--> open --(cooldown)--> half-open
      ^                                                                  |
      +-------------------(one successful probe)-------------------------+
                         (a failed probe re-opens it for another cooldown)

Only one caller at a time probes a half-open endpoint; everyone else skips it. Three
rules keep the breaker from ever making a tenant *less* available than a plain
``redis.Redis`` would be:

- **Stranded plans probe on demand.** When no endpoint is closed there is nowhere to
  fail over to, so waiting out the cooldown would only delay recovery: an open
  endpoint may then be probed by one caller at a time after a short backoff
  (:data:`ON_DEMAND_BACKOFF`), and a restarted server serves the next caller.
- **A timeout is a suspicion, not a verdict.** A blocking command (``BLPOP``) or a
  slow one (``DEBUG SLEEP``) outliving ``socket_timeout`` says nothing about the
  server. The caller that saw it verifies with a fresh connect and ``PING``
  (:meth:`EndpointPlan.suspect` / :meth:`EndpointPlan.verified`); only a failed check
  counts. And a timeout — of a check or of a connect — never opens the last usable
  endpoint: a paused or overloaded server with no backup still has nowhere better to
  send callers, who keep connecting as plain clients would.
- **Stale successes are ignored** (:meth:`EndpointPlan.succeeded` ``since``).

A plan may be shared by every tenant with the same connection settings, so it holds no
tenant's name: errors and events are labelled by the caller that saw them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ._checks import check_policy
from ._errors import NoHealthyEndpointError
from ._redact import redact_text

__all__ = [
    "DEFAULT_POLICY",
    "INF",
    "ON_DEMAND_BACKOFF",
    "CircuitPolicy",
    "EndpointPlan",
    "EndpointStatus",
    "FailoverEvent",
    "Route",
    "Switch",
    "TenantStatus",
]

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"
#: ``recheck_at`` of a plan with nothing to re-check (the connections' inline fast path
#: compares against it).
INF = _INF = math.inf

#: Pauses between on-demand probes of a stranded plan's endpoint, by how many times in
#: a row it failed (the last one repeats): a refused connect costs ~0.1 ms, so even the
#: longest pause keeps a tenant whose only server restarts within 0.1 s of a plain
#: client, at no more than ten probes per second.
ON_DEMAND_BACKOFF = (0.0, 0.01, 0.02, 0.05, 0.1)


@dataclass(frozen=True, slots=True)
class CircuitPolicy:
    """How quickly an endpoint is given up on and re-tried.

    Attributes:
        cooldown: seconds an open circuit waits before one probe may try it again
            (while another endpoint is healthy; see the module docstring).
        threshold: consecutive failures (refused or timed-out connects, failed
            verifications after a read timeout) that open the circuit. 1 means "the
            first failure moves the tenant to its next endpoint".
    """

    cooldown: float = 5.0
    threshold: int = 1

    def __post_init__(self) -> None:
        check_policy(self.cooldown, self.threshold)


DEFAULT_POLICY = CircuitPolicy()


@dataclass(frozen=True, slots=True)
class Switch:
    """New connections of a plan moved to another endpoint (no tenant attached yet).

    Attributes:
        kind: ``"failover"`` (to a lower-priority endpoint) or ``"failback"``.
        from_endpoint: redacted URL connections went to before.
        to_endpoint: redacted URL new connections go to now.
        reason: the redacted last error of the endpoint that was left, if any.
    """

    kind: str
    from_endpoint: str | None
    to_endpoint: str
    reason: str | None

    def seen_by(self, tenant: str) -> FailoverEvent:
        """This switch as the event of ``tenant``, the caller whose connection made it."""
        return FailoverEvent(tenant, self.kind, self.from_endpoint, self.to_endpoint, self.reason)


@dataclass(frozen=True, slots=True)
class FailoverEvent:
    """A tenant's new connections moved to another endpoint.

    Tenants with identical connection settings share one plan; the event names the
    tenant whose call made the connection that noticed the switch, never another one.

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
    """One endpoint of a plan and its breaker. ``target`` is what drivers connect to;
    ``url`` is its redacted URL."""

    __slots__ = (
        "failed_total",
        "failures",
        "last_error",
        "opened_at",
        "probe_after",
        "probing",
        "state",
        "target",
        "url",
        "verifying",
    )

    def __init__(self, target: object, url: str) -> None:
        self.target = target
        self.url = url
        self.state = CLOSED
        self.failures = 0
        #: Every failure ever recorded. A driver notes it before it connects and hands
        #: it to :meth:`EndpointPlan.succeeded`: a success whose connect began before
        #: the latest failure is stale news and must not close the circuit again.
        self.failed_total = 0
        self.opened_at = 0.0
        #: When a stranded plan may probe this endpoint again (on-demand backoff).
        self.probe_after = 0.0
        self.last_error: str | None = None
        self.probing = False
        #: A caller is checking the endpoint after a read timeout.
        self.verifying = False

    def __repr__(self) -> str:
        return f"<Route {self.url} {self.state}>"


class EndpointPlan:
    """The ordered endpoints of one connection identity and the health of each.

    Drivers call :meth:`attempts` to get the endpoints to try for a new connection
    (best first, probes claimed as they are handed out), then report each outcome
    with :meth:`failed` or :meth:`succeeded`. :meth:`keep` is the hot-path check a
    pooled connection makes before it is reused: one identity comparison while
    nothing is wrong.

    Args:
        routes: (target, redacted URL) pairs in priority order; the first is the primary.
        policy: cooldown and threshold.
        clock: a monotonic clock in seconds.
    """

    __slots__ = (
        "_lock",
        "active",
        "clock",
        "failbacks",
        "failovers",
        "policy",
        "recheck_at",
        "routes",
        "stable",
    )

    def __init__(
        self,
        routes: Sequence[tuple[object, str]],
        policy: CircuitPolicy = DEFAULT_POLICY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.routes: tuple[Route, ...] = tuple(Route(t, u) for t, u in routes)
        self.active: Route | None = None
        self.failovers = 0
        self.failbacks = 0
        self._lock = threading.Lock()
        #: Connections to ``stable`` are reused without further checks until ``recheck_at``.
        self.stable: Route | None = None
        self.recheck_at = _INF
        self._recompute()

    def __repr__(self) -> str:
        return f"<EndpointPlan {list(self.routes)}>"

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

        Closed endpoints are yielded as they are; an open endpoint that is due (its
        cooldown passed or, with no closed endpoint left, its on-demand backoff) is
        claimed for a probe (only one caller gets it); the rest are skipped. A caller
        that stops iterating after a probe without reporting must call :meth:`abandon`.
        """
        for route in self.routes:
            if route.state == CLOSED:
                yield route, False
            elif self._claim_probe(route):
                yield route, True

    def _claim_probe(self, route: Route) -> bool:
        now = self.clock()
        with self._lock:
            if route.probing:
                return False
            due = route.opened_at + self.policy.cooldown
            if self.stable is None:  # stranded: nowhere to fail over to
                due = min(due, route.probe_after)
            if now < due:
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

    def failed(self, route: Route, error: BaseException, *, definite: bool = True) -> bool:
        """Record a failure of ``route``; True if it counted (try the next endpoint).

        A refused connect is ``definite``. A timed-out one is not: a loaded machine or a
        paused server look the same from here, so it counts only when another endpoint
        could take over (or the endpoint was being probed); on the last usable endpoint
        it is noted as the last error and nothing else, and the caller gets the timeout
        as a plain client would, while everyone else keeps connecting.
        """
        now = self.clock()
        with self._lock:
            if not definite and not route.probing and not self._others_usable(route):
                route.last_error = redact_text(f"{type(error).__name__}: {error}")
                return False
            self._fail(route, error, now)
            self._recompute()
            return True

    def _others_usable(self, route: Route) -> bool:
        # Called with the lock held.
        return any(r.state == CLOSED for r in self.routes if r is not route)

    def _fail(self, route: Route, error: BaseException, now: float) -> None:
        route.failures += 1
        route.failed_total += 1
        route.last_error = redact_text(f"{type(error).__name__}: {error}")
        backoff = ON_DEMAND_BACKOFF[min(route.failures, len(ON_DEMAND_BACKOFF)) - 1]
        route.probe_after = now + min(backoff, self.policy.cooldown)
        opens = route.state == CLOSED and route.failures >= self.policy.threshold
        if route.probing or opens:
            route.state = OPEN
            route.opened_at = now
            route.probing = False

    def succeeded(self, route: Route, since: int | None = None) -> Switch | None:
        """A connection to ``route`` is up: close its circuit; return the switch, if any.

        ``since`` is ``route.failed_total`` as the driver read it before connecting.
        If a failure was recorded in between, this success is older news than that
        failure (its handshake finished before the server died, say, and its thread
        was descheduled before reporting) and changes nothing: reopening the circuit
        on its word would send every caller back to a dead endpoint.

        The driver announces the returned :class:`Switch` as its caller's event and
        closes its pool's idle connections to the endpoint that was left.
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
            return self._switch(previous, route)

    def _switch(self, previous: Route | None, route: Route) -> Switch | None:
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
        return Switch(
            kind="failback" if failback else "failover",
            from_endpoint=previous.url,
            to_endpoint=route.url,
            reason=None if failback else previous.last_error,
        )

    # -- read timeouts ----------------------------------------------------------------------

    def suspect(self, route: Route) -> bool:
        """A command on a connection to ``route`` timed out reading: should this caller
        check the endpoint? Only one caller at a time does; the answer for the others,
        and for endpoints that are already open, is ``False``."""
        with self._lock:
            if route.state != CLOSED or route.verifying:
                return False
            route.verifying = True
            return True

    def verified(self, route: Route, error: BaseException | None, *, definite: bool = True) -> None:
        """The check :meth:`suspect` asked for is done.

        ``error`` is ``None`` if the endpoint answered ``PING`` (the command was just
        slow: nothing is recorded). A refused connect (``definite``) counts as a
        failure. A check that timed out counts too, unless ``route`` is the last usable
        endpoint: opening it could not send anyone somewhere better (see :meth:`failed`).
        """
        with self._lock:
            route.verifying = False
        if error is not None:
            self.failed(route, error, definite=definite)

    # -- all down -----------------------------------------------------------------------------

    def exhausted(self, tenant: str) -> NoHealthyEndpointError:
        """The error for "every endpoint is down", naming ``tenant`` (the caller) and each
        endpoint with its last error. Logged once per change of state (see ``_errors``)."""
        now = self.clock()
        parts = []
        with self._lock:
            stranded = self.stable is None
            # What the log throttle compares: which endpoints failed, and with what.
            state = tuple(
                (route.state == CLOSED, (route.last_error or "").partition(":")[0])
                for route in self.routes
            )
            for route in self.routes:
                detail = route.last_error or "not tried"
                if route.state != CLOSED:
                    due = route.opened_at + self.policy.cooldown
                    if stranded:
                        due = min(due, route.probe_after)
                    wait = max(0.0, due - now)
                    detail = f"{route.state}, next probe in {wait:.2f}s; last error: {detail}"
                parts.append(f"{route.url} ({detail})")
        key = (tenant, tuple(route.url for route in self.routes))
        return NoHealthyEndpointError(
            f"tenant {tenant!r}: no healthy endpoint: " + "; ".join(parts), key=key, state=state
        )

    # -- changing the endpoint list ---------------------------------------------------------

    def set_routes(self, routes: Sequence[tuple[object, str]]) -> None:
        """Replace the endpoint list, keeping the health of endpoints that stay."""
        with self._lock:
            known = {r.url: r for r in self.routes}
            self.routes = tuple(known.get(u) or Route(t, u) for t, u in routes)
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
        """A snapshot for :meth:`Router.status` of tenant ``name``."""
        now = self.clock()
        with self._lock:
            endpoints = tuple(
                EndpointStatus(
                    url=r.url,
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
            active = self.active.url if self.active is not None else None
            return TenantStatus(name, kind, active, endpoints, self.failovers, self.failbacks)
