"""Serving several tenants from one synchronous process with redis-tenancy.

What it shows, in the order a web app meets it:

1. registering tenants with ``set_REDIS_DB_settings(name, url=...)``;
2. serving "requests" inside ``with tenant(name):`` through the unchanged Popoto
   names: ``POPOTO_REDIS_DB``, a pipeline, ``scan_keys``;
3. ``@tenant(name)`` pinning a background job to one tenant;
4. a ``ThreadPoolExecutor``: worker threads do not inherit the active tenant, so
   wrap the callable with ``copy_tenant_context`` at submit time;
5. strict mode, ``Router(require_tenant=True)``: outside a tenant block any Redis
   use raises ``NoActiveTenantError`` instead of falling back to the default tenant.

Tenant URLs come from ``ACME_REDIS_URL``, ``GLOBEX_REDIS_URL`` and
``INITECH_REDIS_URL``; a tenant whose variable is unset gets a throwaway,
password-protected ``redis-server`` on 127.0.0.1, so this runs with no setup::

    python examples/plain_app.py

It writes only keys under ``example:`` and deletes ``example:*`` when it is done.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from redis_tenancy import NoActiveTenantError, Router, copy_tenant_context, default_router
from redis_tenancy._embedded import RedisServer
from redis_tenancy.redis_db import (
    POPOTO_REDIS_DB,
    current_tenant,
    scan_keys,
    set_REDIS_DB_settings,
    tenant,
)

TENANTS = ("acme", "globex", "initech")
ORDERS = [("acme", 120), ("globex", 75), ("acme", 30), ("initech", 990), ("globex", 5)]


def tenant_url(name: str, stack: ExitStack) -> str:
    """``$<NAME>_REDIS_URL`` if set, else the URL of a new embedded server on 127.0.0.1."""
    url = os.environ.get(f"{name.upper()}_REDIS_URL")
    if url:
        return url
    # The password is there to show that it never appears in the output below.
    server = stack.enter_context(RedisServer(password=secrets.token_urlsafe(16)))
    return server.url


def handle_order(name: str, order_id: int, amount: int) -> None:
    """One request: everything inside the block talks to tenant ``name``'s Redis."""
    with tenant(name):
        POPOTO_REDIS_DB.hset(f"example:order:{order_id}", mapping={"amount": amount})
        # The pipeline belongs to this tenant's client (MULTI/EXEC on its server).
        with POPOTO_REDIS_DB.pipeline() as pipe:
            pipe.incrby("example:revenue", amount)
            pipe.sadd("example:order-ids", order_id)
            pipe.execute()


@tenant("acme")
def acme_report() -> str:
    """A background job that always runs as acme, whoever calls it."""
    orders = scan_keys("example:order:*")
    revenue = int(POPOTO_REDIS_DB.get("example:revenue") or 0)
    return f"{current_tenant()} report (via @tenant): {len(orders)} orders, revenue {revenue}"


def active_tenant() -> str:
    """The active tenant's name for display ("<none>" in strict mode outside a block)."""
    try:
        return repr(current_tenant())
    except NoActiveTenantError:
        return "<none>"


def make_thumbnail(image_id: int) -> str:
    """Work done in a pool thread: it writes to whichever tenant is active there."""
    POPOTO_REDIS_DB.set(f"example:thumbnail:{image_id}", "done")
    return current_tenant()


def delete_example_keys() -> None:
    for name in TENANTS:
        with tenant(name):
            keys = scan_keys("example:*")
            if keys:
                POPOTO_REDIS_DB.delete(*keys)


def strict_mode_demo(url: str) -> None:
    """A router of your own in strict mode (``REDIS_TENANCY_REQUIRE_TENANT=1`` does
    the same for the default router behind ``redis_tenancy.redis_db``)."""
    strict = Router(require_tenant=True, default_url=url)
    strict.register("acme", url=url)
    try:
        strict.redis.ping()
    except NoActiveTenantError as exc:
        print(f"strict, outside a block: {type(exc).__name__}: {exc.message.split(':')[0]}")
    with strict.tenant("acme"):
        print(f"strict, inside tenant('acme'): ping -> {strict.redis.ping()}")
    strict.close()


def main() -> int:
    # The library logs as "POPOTO-REDIS_DB"; every line it writes is redacted.
    logging.basicConfig(level=logging.WARNING, format="  [log] %(levelname)s %(message)s")
    with ExitStack() as stack:
        urls = {name: tenant_url(name, stack) for name in TENANTS}
        for name, url in urls.items():
            set_REDIS_DB_settings(name, url=url, decode_responses=True)
            print(f"registered {name!r}: {default_router.settings(name).endpoint}")
        stack.callback(default_router.close)  # LIFO: before the servers stop
        stack.callback(delete_example_keys)  # and this first of all

        for order_id, (name, amount) in enumerate(ORDERS, start=1):
            handle_order(name, order_id, amount)
        revenue: dict[str, int] = {}
        for name in TENANTS:
            with tenant(name):
                orders = sorted(scan_keys("example:order:*"))
                revenue[name] = int(POPOTO_REDIS_DB.get("example:revenue") or 0)
                print(f"  {name:<8} revenue={revenue[name]:<4} orders={orders}")
        print(acme_report())

        with ThreadPoolExecutor(max_workers=4) as pool, tenant("globex"):
            bare = pool.submit(active_tenant).result()
            jobs = [pool.submit(copy_tenant_context(make_thumbnail), i) for i in range(4)]
            seen = [job.result() for job in jobs]
        print(f"pool thread without copy_tenant_context: tenant {bare}; with it: {seen}")
        with tenant("globex"):
            print(f"globex now holds {len(scan_keys('example:thumbnail:*'))} thumbnails")

        strict_mode_demo(urls["acme"])

    expected = {"acme": 150, "globex": 80, "initech": 990}
    ok = revenue == expected and seen == ["globex"] * 4
    print("OK: every tenant saw only its own data" if ok else f"FAILED: {revenue} {seen}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
