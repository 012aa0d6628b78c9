"""The endpoint plan's decisions, driven I/O-free with a fake clock."""

from __future__ import annotations

import pytest
import redis

from redis_tenancy import FailoverEvent, NoHealthyEndpointError, PopotoException
from redis_tenancy._errors import TenantConfigError
from redis_tenancy._failover import CircuitPolicy, EndpointPlan, Route


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


ROUTES = [(None, "redis://primary:6379/0"), ("b", "redis://backup:6379/0")]
REFUSED = redis.exceptions.ConnectionError("Error 111 connecting to primary:6379. refused.")


def make_plan(
    threshold: int = 1, cooldown: float = 5.0
) -> tuple[EndpointPlan, FakeClock, list[FailoverEvent]]:
    clock = FakeClock()
    events: list[FailoverEvent] = []
    plan = EndpointPlan("acme", ROUTES, CircuitPolicy(cooldown, threshold), events.append, clock)
    return plan, clock, events


def tries(plan: EndpointPlan) -> list[tuple[str, bool]]:
    """What a connect would try now (claiming probes, then abandoning them)."""
    seen = []
    for route, probe in plan.attempts():
        seen.append((route.shown.split("//")[1].split(":")[0], probe))
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
    assert [r.shown for r, _ in plan.attempts()] == ["redis://backup:6379/0"]
    clock.now += 0.2
    assert not plan.keep(backup), "a due probe must pull the next connection to the primary"
    assert plan.status("acme", "standalone").endpoints[0].state == "half-open"
    first = plan.attempts()
    assert next(first) == (primary, True)
    # While that probe runs, everybody else goes straight to the backup and keeps it.
    assert [(r.shown, p) for r, p in plan.attempts()] == [("redis://backup:6379/0", False)]
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
    assert list(plan.attempts()) == []
    error = plan.exhausted()
    assert isinstance(error, NoHealthyEndpointError)
    assert isinstance(error, PopotoException)
    assert isinstance(error, redis.exceptions.ConnectionError)
    text = str(error)
    assert "tenant 'acme'" in text
    assert "redis://primary:6379/0 (open, next probe in 5.0s; last error: ConnectionError" in text
    assert "redis://backup:6379/0 (open" in text
    assert "TimeoutError: Timeout connecting to server" in text


def test_plan_first_success_on_a_backup_counts_as_a_failover() -> None:
    plan, _, events = make_plan()
    primary, backup = primary_backup(plan)
    plan.failed(primary, REFUSED)
    plan.succeeded(backup)
    assert [(e.kind, e.from_endpoint) for e in events] == [("failover", primary.shown)]


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
    assert "hunter2-pw" not in str(plan.exhausted())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cooldown": -1}, "failover_cooldown"),
        ({"cooldown": "5"}, "failover_cooldown"),
        ({"cooldown": float("inf")}, "failover_cooldown"),
        ({"threshold": 0}, "failover_threshold must be >= 1"),
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
    assert plan.status("acme", "standalone").active == primary.shown
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
    assert status.active == backup.shown
    assert [e.state for e in status.endpoints] == ["open", "closed"]
    assert status.endpoints[0].consecutive_failures == 1
    assert not plan.keep(primary), "the stale connection is dropped on its next checkout"
    assert plan.keep(backup)
    assert [e.kind for e in events] == ["failover"]
    # A success that began after the failure is fresh news and is believed.
    plan.succeeded(primary, primary.failed_total)
    assert [e.kind for e in events] == ["failover", "failback"]
