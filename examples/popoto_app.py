"""Popoto models for several tenants from one process, sync and async.

One call, ``redis_tenancy.popoto.install()``, and Popoto's models follow the active
tenant: ``Customer.create(...)`` inside ``with tenant("acme"):`` writes to acme's
Redis, the same code inside ``with tenant("globex"):`` to globex's, and neither can
read the other's records. What it shows:

1. ``install()`` before the models are imported (it also works after);
2. registering tenants, here with Popoto's own ``set_REDIS_DB_settings``;
3. sync requests: create, get, filter on a ``TagField`` (Lua-backed), a pipeline
   (``popoto.batch()`` on Popoto 1.10, ``POPOTO_REDIS_DB.pipeline()`` on 1.9);
4. async requests for both tenants interleaved on one event loop:
   ``async_create``, ``query.async_filter``, ``query.async_count``;
5. worker threads: wrap the callable in ``copy_tenant_context`` when submitting.

Tenant URLs come from ``ACME_REDIS_URL`` and ``GLOBEX_REDIS_URL``; a tenant whose
variable is unset gets a throwaway, password-protected ``redis-server`` on 127.0.0.1,
so this runs with no setup (``pip install 'redis-tenancy[popoto,embedded]'``)::

    python examples/popoto_app.py

It deletes the ``Customer`` records it created when it is done.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import redis_tenancy.popoto
from redis_tenancy import copy_tenant_context, current_tenant, default_router, tenant
from redis_tenancy._embedded import RedisServer

# 1. Before Popoto is imported (by your models module): Popoto is patched as it loads.
redis_tenancy.popoto.install()

import popoto  # noqa: E402  (after install(), on purpose)
from popoto.redis_db import POPOTO_REDIS_DB, set_REDIS_DB_settings  # noqa: E402

TENANTS = ("acme", "globex")
SIGNUPS = {
    "acme": [("ada", ["vip", "eu"]), ("grace", ["us"]), ("linus", ["eu"])],
    "globex": [("ada", ["us"]), ("hank", ["vip"])],  # another "ada": another tenant's
}


class Customer(popoto.Model):  # type: ignore[misc]
    name = popoto.KeyField()
    plan = popoto.Field(type=str, default="free")
    tags = popoto.TagField()  # maintained by a Lua script, per tenant server


def tenant_url(name: str, stack: ExitStack) -> str:
    """``$<NAME>_REDIS_URL`` if set, else the URL of a new embedded server on 127.0.0.1."""
    url = os.environ.get(f"{name.upper()}_REDIS_URL")
    if url:
        return url
    server = stack.enter_context(RedisServer(password=secrets.token_urlsafe(16)))
    return server.url


def open_batch() -> Any:
    """``popoto.batch()`` where it exists (1.10), else a pipeline of the tenant's client."""
    batch = getattr(popoto, "batch", None)
    return batch() if callable(batch) else POPOTO_REDIS_DB.pipeline()


def sign_up(name: str) -> None:
    """A sync "request" for tenant ``name``: every model call goes to its server."""
    with tenant(name):
        for customer, tags in SIGNUPS[name]:
            Customer.create(name=customer, tags=tags)
        pipe = open_batch()  # one MULTI/EXEC on this tenant's server
        for customer in Customer.query.filter(tags__contains="vip"):
            customer.plan = "gold"
            customer.save(pipeline=pipe)
        pipe.execute()


async def dashboard(name: str) -> dict[str, Any]:
    """An async "request": tasks inherit the tenant of the block that created them."""
    async with tenant(name):
        await Customer.async_create(name=f"{name}-bot", tags=["internal"])
        await asyncio.sleep(0)  # let the other tenant's task run in between
        eu = await Customer.query.async_filter(tags__contains="eu")
        return {
            "tenant": current_tenant(),
            "customers": await Customer.query.async_count(),
            "eu": sorted(c.name for c in eu),
        }


def plan_of(customer: str) -> str | None:
    found = Customer.query.get(name=customer)
    return None if found is None else str(found.plan)


def cleanup() -> None:
    for name in TENANTS:
        with tenant(name):
            for customer in Customer.query.all():
                customer.delete()


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="  [log] %(levelname)s %(message)s")
    with ExitStack() as stack:
        # 2. Popoto's own setter registers (or replaces) a tenant in the router.
        for name in TENANTS:
            set_REDIS_DB_settings(name, url=tenant_url(name, stack))
            print(f"registered {name!r}: {default_router.settings(name).endpoint}")
        stack.callback(default_router.close)  # LIFO: before the servers stop
        stack.callback(cleanup)  # and this first of all

        # 3. Sync requests.
        for name in TENANTS:
            sign_up(name)
        plans = {}
        for name in TENANTS:
            with tenant(name):
                plans[name] = plan_of("ada")
                names = sorted(c.name for c in Customer.query.all())
                print(f"  {name:<7} customers={names} ada's plan={plans[name]}")
        with tenant("globex"):
            grace = Customer.query.get(name="grace")
        print(f"globex looking for acme's 'grace': {grace}")

        # 4. Async requests, both tenants on one loop.
        async def both() -> list[dict[str, Any]]:
            return list(await asyncio.gather(dashboard("acme"), dashboard("globex")))

        boards = asyncio.run(both())
        for board in boards:
            print(f"  async {board}")

        # 5. A thread pool: the tenant travels only with copy_tenant_context.
        with ThreadPoolExecutor(max_workers=2) as pool, tenant("acme"):
            seen = pool.submit(copy_tenant_context(plan_of), "linus").result()
        print(f"pool thread with copy_tenant_context: acme's linus is on plan {seen!r}")

    ok = (
        plans == {"acme": "gold", "globex": "free"}
        and grace is None
        and [b["customers"] for b in boards] == [4, 3]
        and boards[0]["eu"] == ["ada", "linus"]
        and boards[1]["eu"] == []
        and seen == "free"
    )
    print("OK: every tenant saw only its own customers" if ok else "FAILED")
    redis_tenancy.popoto.uninstall()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
