"""Serving several tenants from one asyncio event loop with redis-tenancy.

What it shows:

1. ``async with tenant(name):`` around each request, with ``POPOTO_ASYNC_REDIS_DB``
   and ``await get_async_redis_db()`` resolving to that tenant's
   ``redis.asyncio.Redis`` for the running loop;
2. ``asyncio.gather`` of interleaved sessions for different tenants: each task
   keeps its own tenant across every ``await``, because the active tenant is a
   ContextVar and every task runs in its own copy of its creator's context;
3. ``@tenant(name)`` on a coroutine function, and a task it creates inheriting
   that tenant;
4. ``async_check_connection`` and ``async_scan_keys`` per tenant.

Tenant URLs come from ``ACME_REDIS_URL``, ``GLOBEX_REDIS_URL`` and
``INITECH_REDIS_URL``; a tenant whose variable is unset gets a throwaway,
password-protected ``redis-server`` on 127.0.0.1, so this runs with no setup::

    python examples/async_app.py

It writes only keys under ``example:`` and deletes ``example:*`` when it is done.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import sys
from contextlib import ExitStack

from redis_tenancy import default_router
from redis_tenancy._embedded import RedisServer
from redis_tenancy.redis_db import (
    POPOTO_ASYNC_REDIS_DB,
    async_check_connection,
    async_scan_keys,
    current_tenant,
    get_async_redis_db,
    set_REDIS_DB_settings,
    tenant,
)

TENANTS = ("acme", "globex", "initech")
STEPS = 5


def tenant_url(name: str, stack: ExitStack) -> str:
    """``$<NAME>_REDIS_URL`` if set, else the URL of a new embedded server on 127.0.0.1."""
    url = os.environ.get(f"{name.upper()}_REDIS_URL")
    if url:
        return url
    server = stack.enter_context(RedisServer(password=secrets.token_urlsafe(16)))
    return server.url


async def session(name: str, user: int) -> int:
    """One user session: several commands with other tenants' tasks running in between.

    Returns how many steps found a tenant other than ``name`` active (always 0).
    """
    wrong = 0
    async with tenant(name):
        for _ in range(STEPS):
            await POPOTO_ASYNC_REDIS_DB.rpush(f"example:session:{user}", current_tenant())
            await asyncio.sleep(random.random() / 200)  # let the other tasks interleave
            wrong += current_tenant() != name
        client = await get_async_redis_db()  # the concrete client, e.g. for a pipeline
        async with client.pipeline() as pipe:
            pipe.incr("example:sessions")
            pipe.expire("example:sessions", 3600)
            await pipe.execute()
    return wrong


@tenant("initech")
async def initech_audit() -> list[str]:
    """Always runs as initech; ``create_task`` copies the context, tenant included."""
    task = asyncio.create_task(async_scan_keys("example:session:*"))
    return sorted(await task)


async def main_async() -> int:
    plan = [(random.choice(TENANTS), user) for user in range(30)]
    results = await asyncio.gather(*(session(name, user) for name, user in plan))
    print(f"ran {len(plan)} interleaved sessions; tenant lost mid-session: {sum(results)}")

    misrouted = 0
    for name in TENANTS:
        async with tenant(name):
            if not await async_check_connection():
                print(f"  {name}: server not answering PING")
                return 1
            client = await get_async_redis_db()
            keys = await async_scan_keys("example:session:*")
            owners = {owner for key in keys for owner in await client.lrange(key, 0, -1)}
            misrouted += len(owners - {name})
            sessions = int(await POPOTO_ASYNC_REDIS_DB.get("example:sessions") or 0)
            expected = sum(1 for tenant_name, _ in plan if tenant_name == name)
            misrouted += abs(sessions - expected)
            print(f"  {name:<8} sessions={sessions:<3} keys={len(keys):<3} written by {owners}")
    print(f"initech audit (via @tenant) sees {len(await initech_audit())} session keys")

    for name in TENANTS:
        async with tenant(name):
            keys = await async_scan_keys("example:*")
            if keys:
                await POPOTO_ASYNC_REDIS_DB.delete(*keys)

    failures = misrouted + sum(results)
    print("OK: every task kept its tenant" if not failures else f"FAILED: {failures}")
    return 0 if failures == 0 else 1


def main() -> int:
    with ExitStack() as stack:
        for name in TENANTS:
            set_REDIS_DB_settings(name, url=tenant_url(name, stack), decode_responses=True)
            print(f"registered {name!r}: {default_router.settings(name).async_endpoint}")
        # Async clients are kept per (tenant, loop) and closed when the loop shuts down.
        return asyncio.run(main_async())


if __name__ == "__main__":
    sys.exit(main())
