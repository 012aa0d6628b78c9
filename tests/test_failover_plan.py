"""The endpoint plan's decisions, driven I/O-free with a fake clock."""

from __future__ import annotations

import pytest
import redis

from redis_tenancy import NoHealthyEndpointError, PopotoException
from redis_tenancy._errors import TenantConfigError
from redis_tenancy._failover import ON_DEMAND_BACKOFF, CircuitPolicy, EndpointPlan, Route, Switch


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


ROUTES = [(None, "redis://primary:6379/0"), ("b", "redis://backup:6379/0")]
REFUSED = redis.exceptions.ConnectionError("Error 111 connecting to primary:6379. refused.")
READ_TIMEOUT = redis.exceptions.TimeoutError("Timeout reading from primary:6379")
CONNECT_TIMEOUT = redis.exceptions.TimeoutError("Timeout connecting to server")


class Plan(EndpointPlan):
    """An EndpointPlan whose switches are recorded (``events``) for the assertions."""

    __slots__ = ("events",)
    events: list[Switch]

    def succeeded(self, route: Route, since: int | None = None) -> Switch | None:
        switch = super().succeeded(route, since)
        if switch is not None:
            self.events.append(switch)
        return switch


def make_plan(threshold: int = 1, cooldown: float = 5.0) -> tuple[Plan, FakeClock, list[Switch]]:
    clock = FakeClock()
    plan = Plan(ROUTES, CircuitPolicy(cooldown, threshold), clock)
    plan.events = []
    return plan, clock, plan.events


def tries(plan: EndpointPlan) -> list[tuple[str, bool]]:
    """What a connect would try now (claiming probes, then abandoning them)."""
    seen = []
    for route, probe in plan.attempts():
        seen.append((route.url.split("//")[1].split(":")[0], probe))
        if probe:
            plan.abandon(route)
    return seen


def primary_backup(plan: EndpointPlan) -> tuple[Route, Route]:
    return plan.routes[0], plan.routes[1]


def test_plan_tries_endpoints_in_registration_order_while_healthy() -> None:
    plan, _, events = make_plan()
    primary, _ = primary_backup(plan)
    assert tries(plan) == [("primary", False), ("backup", False)]
    plan.succeeded(primary)
    assert plan.keep(primary)
    assert events == []
    assert plan.status("acme", "standalone").active == "redis://primary:6379/0"


def test_plan_failure_opens_the_circuit_and_moves_to_the_next_endpoint() -> None:
    plan, _, events = make_plan()
    primary, backup = primary_backup(plan)
    plan.succeeded(primary)
    plan.failed(primary, REFUSED)
    assert not plan.keep(primary)
    assert tries(plan) == [("backup", False)]
    plan.succeeded(backup)
    assert plan.keep(backup)
    assert [(e.kind, e.from_endpoint, e.to_endpoint) for e in events] == [
        ("failover", "redis://primary:6379/0", "redis://backup:6379/0")
    ]
    assert events[0].reason is not None
    assert "refused" in events[0].reason
    status = plan.status("acme", "standalone")
    assert [(e.state, e.consecutive_failures, e.active) for e in status.endpoints] == [
        ("open", 1, False),
        ("closed", 0, True),
    ]
    assert (status.failovers, status.failbacks) == (1, 0)


def test_plan_threshold_counts_consecutive_failures() -> None:
    plan, _, _ = make_plan(threshold=3)
    primary, _ = primary_backup(plan)
    plan.failed(primary, REFUSED)
    plan.failed(primary, REFUSED)
    assert tries(plan)[0] == ("primary", False)
    plan.succeeded(primary)  # a success resets the count
    plan.failed(primary, REFUSED)
    plan.failed(primary, REFUSED)
    assert tries(plan)[0] == ("primary", False)
    plan.failed(primary, REFUSED)
    assert tries(plan) == [("backup", False)]


def test_plan_half_open_after_cooldown_lets_exactly_one_probe_through() -> None:
    plan, clock, _ = make_plan(cooldown=5.0)
    primary, backup = primary_backup(plan)
    plan.failed(primary, REFUSED)
    plan.succeeded(backup)
    clock.now += 4.9
    assert plan.keep(backup)
    assert [r.url for r, _ in plan.attempts()] == ["redis://backup:6379/0"]
    clock.now += 0.2
    assert not plan.keep(backup), "a due probe must pull the next connection to the primary"
    assert plan.status("acme", "standalone").endpoints[0].state == "half-open"
    first = plan.attempts()
    assert next(first) == (primary, True)
    # While that probe runs, everybody else goes straight to the backup and keeps it.
    assert [(r.url, p) for r, p in plan.attempts()] == [("redis://backup:6379/0", False)]
    assert plan.keep(backup)


def test_plan_successful_probe_fails_back_and_failed_probe_reopens() -> None:
    plan, clock, events = make_plan(cooldown=1.0)
    primary, backup = primary_backup(plan)
    plan.succeeded(primary)
    plan.failed(primary, REFUSED)
    plan.succeeded(backup)
    clock.now += 1.5
    route, probe = next(plan.attempts())
    assert (route, probe) == (primary, True)
    plan.failed(primary, REFUSED)  # the probe failed: open for another full cooldown
    clock.now += 0.9
    assert plan.keep(backup)
    assert tries(plan) == [("backup", False)]
    clock.now += 0.2
    route, probe = next(plan.attempts())
    assert probe
    plan.succeeded(primary)
    assert plan.keep(primary)
    assert not plan.keep(backup), "connections to the backup are dropped after failback"
    assert [e.kind for e in events] == ["failover", "failback"]
    status = plan.status("acme", "standalone")
    assert (status.failovers, status.failbacks) == (1, 1)
    assert status.active == "redis://primary:6379/0"


def test_plan_abandoned_probe_is_released_for_the_next_caller() -> None:
    plan, clock, _ = make_plan(cooldown=1.0)
    primary, _ = primary_backup(plan)
    plan.failed(primary, REFUSED)
    clock.now += 2
    assert next(plan.attempts()) == (primary, True)
    plan.abandon(primary)
    assert next(plan.attempts()) == (primary, True)


def test_plan_all_down_is_one_typed_error_naming_every_endpoint() -> None:
    plan, _, _ = make_plan()
    primary, backup = primary_backup(plan)
    plan.failed(primary, REFUSED)
    plan.failed(backup, redis.exceptions.TimeoutError("Timeout connecting to server"))
    error = plan.exhausted("acme")
    assert isinstance(error, NoHealthyEndpointError)
    assert isinstance(error, PopotoException)
    assert isinstance(error, redis.exceptions.ConnectionError)
    text = str(error)
    assert "tenant 'acme'" in text
    assert "redis://primary:6379/0 (open, next probe in 0.00s; last error: ConnectionError" in text
    assert "redis://backup:6379/0 (open" in text
    assert "TimeoutError: Timeout connecting to server" in text


def test_plan_first_success_on_a_backup_counts_as_a_failover() -> None:
    plan, _, events = make_plan()
    primary, backup = primary_backup(plan)
    plan.failed(primary, REFUSED)
    plan.succeeded(backup)
    assert [(e.kind, e.from_endpoint) for e in events] == [("failover", primary.url)]


def test_plan_new_endpoint_list_keeps_the_health_of_endpoints_that_stay() -> None:
    plan, _, _ = make_plan()
    primary, backup = primary_backup(plan)
    plan.failed(primary, REFUSED)
    plan.succeeded(backup)
    plan.set_routes([*ROUTES, ("c", "redis://third:6379/0")])
    assert plan.routes[0] is primary
    assert plan.routes[0].state == "open"
    assert plan.keep(backup)
    plan.set_routes(ROUTES[:1])
    assert not plan.keep(backup), "connections to a removed endpoint are dropped"
    assert plan.status("acme", "standalone").active is None


def test_plan_secrets_in_errors_are_redacted() -> None:
    plan, _, _ = make_plan()
    primary, _ = primary_backup(plan)
    plan.failed(primary, redis.exceptions.ConnectionError("redis://:hunter2-pw@h:1 refused"))
    last_error = plan.status("acme", "standalone").endpoints[0].last_error
    assert last_error is not None
    assert "hunter2-pw" not in last_error
    assert "hunter2-pw" not in str(plan.exhausted("acme"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cooldown": -1}, "failover_cooldown"),
        ({"cooldown": "5"}, "failover_cooldown"),
        ({"cooldown": float("inf")}, "failover_cooldown"),
        ({"threshold": 0}, "failover_threshold must be an int >= 1"),
        ({"threshold": True}, "failover_threshold must be an int"),
    ],
)
def test_circuit_policy_rejects_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(TenantConfigError, match=message):
        CircuitPolicy(**kwargs)  # type: ignore[arg-type]


def test_plan_straggler_success_after_failback_does_not_flap() -> None:
    plan, clock, events = make_plan(cooldown=1.0)
    primary, backup = primary_backup(plan)
    plan.failed(primary, REFUSED)
    plan.succeeded(backup)
    straggler = list(plan.attempts())  # chosen while the primary was still open
    assert straggler == [(backup, False)]
    clock.now += 2
    plan.succeeded(primary)  # a probe succeeded meanwhile: failback
    plan.succeeded(backup)  # the straggler's connect completes afterwards
    assert plan.status("acme", "standalone").active == primary.url
    assert [e.kind for e in events] == ["failover", "failback"]
    assert not plan.keep(backup)


def test_plan_success_reported_after_a_later_failure_does_not_reopen_the_endpoint() -> None:
    # The CI race: a connect to the primary finishes its handshake, its thread is
    # descheduled, the server dies, another connect is refused and reported, and only
    # then does the first report success. That success is older than the failure.
    plan, _, events = make_plan(cooldown=60.0)
    primary, backup = primary_backup(plan)
    plan.succeeded(primary)
    since = primary.failed_total  # the slow connect starts
    plan.failed(primary, REFUSED)  # a later connect is refused first
    plan.succeeded(backup, backup.failed_total)
    assert plan.succeeded(primary, since) is None  # the slow connect reports last
    status = plan.status("acme", "standalone")
    assert status.active == backup.url
    assert [e.state for e in status.endpoints] == ["open", "closed"]
    assert status.endpoints[0].consecutive_failures == 1
    assert not plan.keep(primary), "the stale connection is dropped on its next checkout"
    assert plan.keep(backup)
    assert [e.kind for e in events] == ["failover"]
    # A success that began after the failure is fresh news and is believed.
    plan.succeeded(primary, primary.failed_total)
    assert [e.kind for e in events] == ["failover", "failback"]


# -- stranded plans probe on demand -----------------------------------------------------------


def test_stranded_plan_probes_on_demand_one_caller_at_a_time_with_a_short_backoff() -> None:
    # The only endpoint is down: waiting out the 60 s cooldown would only delay recovery.
    clock = FakeClock()
    plan = EndpointPlan([(None, "redis://only:6379/0")], CircuitPolicy(60.0, 1), clock)
    (only,) = plan.routes
    plan.failed(only, REFUSED)
    first = plan.attempts()
    assert next(first) == (only, True), "no other endpoint: probe at once, not in 60 s"
    assert list(plan.attempts()) == [], "one caller at a time"
    plan.failed(only, REFUSED)  # the probe was refused too: now a short backoff applies
    assert list(plan.attempts()) == []
    clock.now += ON_DEMAND_BACKOFF[1]
    route, probe = next(plan.attempts())
    assert probe
    plan.succeeded(route, route.failed_total)
    assert plan.keep(only), "the restarted server serves everybody again"
    # Consecutive failures back off further, never beyond the longest step.
    for failures in range(1, 10):
        plan.failed(only, REFUSED)
        pause = ON_DEMAND_BACKOFF[min(failures, len(ON_DEMAND_BACKOFF)) - 1]
        if pause:
            assert list(plan.attempts()) == []
        clock.now += pause
        route, probe = next(plan.attempts())
        assert probe
        plan.abandon(route)
    assert max(ON_DEMAND_BACKOFF) <= 0.1


def test_plan_with_a_healthy_backup_still_waits_out_the_cooldown() -> None:
    plan, clock, _ = make_plan(cooldown=60.0)
    primary, backup = primary_backup(plan)
    plan.failed(primary, REFUSED)
    plan.succeeded(backup)
    clock.now += 1.0
    assert tries(plan) == [("backup", False)], "the backup works: no on-demand probe"


def test_on_demand_backoff_never_exceeds_the_cooldown() -> None:
    clock = FakeClock()
    plan = EndpointPlan([(None, "redis://only:6379/0")], CircuitPolicy(0.005, 1), clock)
    (only,) = plan.routes
    for _ in range(5):
        plan.failed(only, REFUSED)
    clock.now += 0.005
    assert next(plan.attempts()) == (only, True)


# -- read timeouts are suspicions ---------------------------------------------------------------


def test_read_timeout_suspicion_is_checked_by_one_caller_and_a_healthy_answer_changes_nothing() -> (
    None
):
    plan, _, _ = make_plan()
    primary, _ = primary_backup(plan)
    plan.succeeded(primary)
    assert plan.suspect(primary)
    assert not plan.suspect(primary), "one check at a time"
    plan.verified(primary, None)  # PING answered: the command was just slow
    assert plan.keep(primary)
    assert primary.failures == 0
    assert plan.suspect(primary), "the next timeout may be checked again"


def test_failed_check_after_a_read_timeout_opens_the_circuit() -> None:
    plan, _, events = make_plan()
    primary, backup = primary_backup(plan)
    plan.succeeded(primary)
    assert plan.suspect(primary)
    plan.verified(primary, REFUSED)
    assert not plan.keep(primary)
    assert tries(plan) == [("backup", False)]
    plan.succeeded(backup)
    assert [e.kind for e in events] == ["failover"]


def test_unanswered_check_opens_only_when_another_endpoint_can_take_over() -> None:
    # A paused server accepts the check's connect but never answers its PING.
    plan, _, _ = make_plan()
    primary, backup = primary_backup(plan)
    plan.succeeded(primary)
    assert plan.suspect(primary)
    plan.verified(primary, READ_TIMEOUT, definite=False)
    assert not plan.keep(primary), "the backup is closed: move there"
    plan.succeeded(backup)
    # Now the backup is the last usable endpoint: a read timeout alone never opens it.
    assert plan.suspect(backup)
    plan.verified(backup, READ_TIMEOUT, definite=False)
    assert plan.keep(backup)
    assert backup.last_error is not None
    assert "Timeout" in backup.last_error
    # ...but a refused connect is a verdict, last endpoint or not.
    assert plan.suspect(backup)
    plan.verified(backup, REFUSED)
    assert not plan.keep(backup)


def test_open_endpoints_are_not_suspected() -> None:
    plan, _, _ = make_plan()
    primary, _ = primary_backup(plan)
    plan.failed(primary, REFUSED)
    assert not plan.suspect(primary)


# -- a shared plan names the caller ------------------------------------------------------------


def test_shared_plan_names_the_calling_tenant_only() -> None:
    plan, _, _ = make_plan()
    primary, backup = primary_backup(plan)
    plan.failed(primary, REFUSED)
    plan.failed(backup, REFUSED)
    assert "tenant 'globex'" in str(plan.exhausted("globex"))
    assert "acme" not in str(plan.exhausted("globex"))
    switch = plan.succeeded(backup, backup.failed_total)
    assert switch is not None
    event = switch.seen_by("globex")
    assert (event.tenant, event.kind, event.to_endpoint) == ("globex", "failover", backup.url)
    assert "acme" not in repr(plan)


def test_connect_timeout_opens_only_when_another_endpoint_can_take_over() -> None:
    # A slow connect on a loaded machine looks like a paused server: with a backup it
    # moves callers there; on the last usable endpoint it changes nothing for anyone else.
    plan, _, _ = make_plan()
    primary, backup = primary_backup(plan)
    assert plan.failed(primary, CONNECT_TIMEOUT, definite=False), "the backup can take over"
    assert tries(plan) == [("backup", False)]
    plan.succeeded(backup)
    assert not plan.failed(backup, CONNECT_TIMEOUT, definite=False)
    assert plan.keep(backup)
    assert backup.failures == 0
    assert backup.last_error is not None
    assert plan.failed(backup, REFUSED), "a refused connect is a verdict"
    assert not plan.keep(backup)


def test_connect_timeout_of_a_probe_counts() -> None:
    clock = FakeClock()
    plan = EndpointPlan([(None, "redis://only:6379/0")], CircuitPolicy(1.0, 1), clock)
    (only,) = plan.routes
    plan.failed(only, REFUSED)
    route, probe = next(plan.attempts())
    assert probe
    assert plan.failed(route, CONNECT_TIMEOUT, definite=False)
    assert route.state == "open"
