"""redis_tenancy.dramatiq with a real Dramatiq worker on a real Redis broker.

The broker is an embedded redis-server of its own; the worker runs one worker thread,
so every message after the first reuses a thread that already ran another tenant's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dramatiq
import pytest
from dramatiq import Middleware, Worker, group, pipeline
from dramatiq.brokers.redis import RedisBroker

from redis_tenancy._embedded import RedisServer
from redis_tenancy.dramatiq import OPTION, TenantMiddleware, install
from redis_tenancy.redis_db import POPOTO_REDIS_DB, current_tenant, default_router, tenant

from .conftest import Servers
from .tenancy import count_keys, landed, register_tenants

UNSET = object()


class Outcomes(Middleware):
    """Records, per message, whether it was processed or failed without running."""

    def __init__(self) -> None:
        self.skipped: list[str] = []
        self.leftover: list[object] = []

    def after_skip_message(self, broker: Any, message: Any) -> None:
        self.skipped.append(message.message_id)

    def after_ack(self, broker: Any, message: Any) -> None:
        # Runs after every after_process_message hook: the worker thread must be clean.
        self.leftover.append(default_router.var.get(UNSET))


@dataclass
class Setup:
    broker: RedisBroker
    worker: Worker
    tenancy: TenantMiddleware
    outcomes: Outcomes
    record: Any
    flaky: Any
    fan_out: Any

    def drain(self) -> None:
        self.broker.join("tenancy", timeout=30_000)
        self.worker.join()


@pytest.fixture
def tenants(servers: Servers) -> Servers:
    return register_tenants(servers)


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    with RedisServer() as server:
        broker = RedisBroker(host=server.host, port=server.port)  # type: ignore[no-untyped-call]
        outcomes = Outcomes()
        broker.add_middleware(outcomes)
        tenancy = install(broker)
        assert broker.middleware[0] is tenancy  # first, so its after_* hooks run last

        def record(key: str) -> None:
            POPOTO_REDIS_DB.rpush(key, current_tenant())

        def flaky(key: str) -> None:
            # Fails on its first attempt; Dramatiq's Retries middleware sends it again.
            if POPOTO_REDIS_DB.incr(key + ":attempts") == 1:
                raise RuntimeError("first attempt fails")
            record(key)

        def fan_out(key: str) -> None:
            record(key + ":self")
            for name in ("acme", "globex"):
                with tenant(name):
                    actors["record"].send(key)

        def declare(fn: Any, **options: Any) -> Any:
            options = {"max_retries": 0, **options}
            return dramatiq.actor(
                queue_name="tenancy", actor_name=fn.__name__, broker=broker, **options
            )(fn)

        actors = {
            "record": declare(record),
            "flaky": declare(flaky, max_retries=1, min_backoff=1),
            "fan_out": declare(fan_out, tenant_required=False),
        }
        worker = Worker(broker, worker_threads=1, worker_timeout=50)
        worker.start()
        try:
            yield Setup(broker, worker, tenancy, outcomes, *actors.values())
        finally:
            worker.stop()
            broker.close()


def test_dramatiq_message_runs_under_the_senders_tenant(tenants: Servers, setup: Setup) -> None:
    with tenant("acme"):
        setup.record.send("seen:msg")
        second = setup.record.message_with_options(args=("seen:pipe",), pipe_ignore=True)
        steps = pipeline([setup.record.message("seen:pipe"), second], broker=setup.broker)
        steps.run()  # type: ignore[no-untyped-call]
        setup.flaky.send("seen:retry")
    with tenant("globex"):
        setup.record.send("seen:msg")
        messages = [setup.record.message("seen:group") for _ in range(2)]
        group(messages, broker=setup.broker).run()  # type: ignore[no-untyped-call]
    setup.record.send("seen:outside")
    setup.drain()
    assert landed(tenants, "seen:msg") == {"b": "acme", "c": "globex"}
    # The pipeline's second message is sent by the worker, after the first ran.
    assert landed(tenants, "seen:pipe") == {"b": "acme,acme"}
    assert landed(tenants, "seen:retry") == {"b": "acme"}  # the retry kept its tenant
    assert landed(tenants, "seen:group") == {"c": "globex,globex"}
    assert landed(tenants, "seen:outside") == {"a": ""}
    assert set(setup.outcomes.leftover) == {UNSET}


@pytest.fixture
def strict(setup: Setup) -> Iterator[Setup]:
    setup.tenancy.strict = True
    try:
        yield setup
    finally:
        setup.tenancy.strict = False


def test_dramatiq_strict_mode_fails_messages_sent_outside_any_tenant(
    tenants: Servers, strict: Setup
) -> None:
    refused = strict.record.send("seen:refused")
    unknown = strict.record.send_with_options(args=("seen:unknown",), **{OPTION: "nobody"})
    with tenant("globex"):
        strict.record.send("seen:allowed")
    strict.fan_out.send("seen:fan-out")  # tenant_required=False
    strict.drain()
    assert {refused.message_id, unknown.message_id} <= set(strict.outcomes.skipped)
    assert count_keys(tenants, "seen:refused") == {"a": 0, "b": 0, "c": 0}
    assert count_keys(tenants, "seen:unknown") == {"a": 0, "b": 0, "c": 0}
    assert landed(tenants, "seen:allowed") == {"c": "globex"}
    assert landed(tenants, "seen:fan-out:self") == {"a": ""}  # no tenant activated
    assert landed(tenants, "seen:fan-out") == {"b": "acme", "c": "globex"}
    assert set(strict.outcomes.leftover) == {UNSET}
