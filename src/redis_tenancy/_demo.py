"""The demo behind ``python -m redis_tenancy demo``: three tenants, one burst, one table.

It starts three embedded ``redis-server`` processes, registers one tenant on each,
then serves a burst of "requests" from a thread pool and from asyncio tasks. Every
request picks a tenant at random, enters ``with tenant(name):`` and writes through
the unchanged Popoto API (``POPOTO_REDIS_DB`` / ``POPOTO_ASYNC_REDIS_DB``). The table
then counts, on each server directly, what landed there: every key must carry its
own tenant's name, which is the isolation the library promises.

Then a second act shows failover: acme gets a backup server at runtime
(``register_failover_url``), its primary is killed with SIGKILL in the middle of a
burst of writes, and later restarted; the demo reports the writes that succeeded and
failed, where acme's connections went, and when they came back.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import TextIO

import redis

from ._embedded import RedisServer
from .redis_db import (
    POPOTO_ASYNC_REDIS_DB,
    POPOTO_REDIS_DB,
    current_tenant,
    register_failover_url,
    scan_keys,
    set_REDIS_DB_settings,
    tenant,
    tenant_status,
)

__all__ = ["run_demo"]

TENANTS = ("acme", "globex", "initech")


def _sync_request(name: str, n: int, served: Counter[str], lock: threading.Lock) -> None:
    with tenant(name):
        POPOTO_REDIS_DB.set(f"demo:sync:{n}", current_tenant())
        POPOTO_REDIS_DB.incr("demo:requests")
    with lock:
        served[name] += 1


async def _async_request(name: str, n: int, served: Counter[str], gate: asyncio.Semaphore) -> None:
    # redis-py 8 pools refuse a 101st concurrent connection; the gate keeps the
    # burst within that, as a real server's request concurrency limit would.
    async with gate, tenant(name):
        await POPOTO_ASYNC_REDIS_DB.set(f"demo:async:{n}", current_tenant())
        await POPOTO_ASYNC_REDIS_DB.incr("demo:requests")
    served[name] += 1


async def _async_burst(plan: list[str], served: Counter[str]) -> None:
    gate = asyncio.Semaphore(64)
    await asyncio.gather(*(_async_request(name, n, served, gate) for n, name in enumerate(plan)))


def run_demo(requests: int = 3000, *, out: TextIO, seed: int = 7) -> int:
    """Run the demo; return 0 when every key sits on its own tenant's server."""
    rng = random.Random(seed)
    with ExitStack() as stack:
        servers = {name: stack.enter_context(RedisServer()) for name in TENANTS}
        for name, server in servers.items():
            set_REDIS_DB_settings(name, url=server.url, failover_cooldown=1.0)
        out.write(f"started {len(servers)} redis-server processes on 127.0.0.1\n")

        sync_plan = [rng.choice(TENANTS) for _ in range(requests // 2)]
        async_plan = [rng.choice(TENANTS) for _ in range(requests - len(sync_plan))]
        served: Counter[str] = Counter()
        lock = threading.Lock()
        with ThreadPoolExecutor(max_workers=16) as pool:
            for n, name in enumerate(sync_plan):
                pool.submit(_sync_request, name, n, served, lock)
        asyncio.run(_async_burst(async_plan, served))
        out.write(
            f"served {len(sync_plan)} requests from 16 threads and "
            f"{len(async_plan)} from asyncio tasks\n\n"
        )

        header = f"{'tenant':<10} {'requests':>8} {'keys':>6} {'misrouted':>9}  server"
        out.write(header + "\n" + "-" * len(header) + "\n")
        misrouted_total = 0
        for name, server in servers.items():
            direct = redis.Redis.from_url(server.url, decode_responses=True)
            with tenant(name):
                keys = scan_keys("demo:*:*")
            owners = [direct.get(k) for k in keys]
            misrouted = sum(1 for owner in owners if owner != name)
            misrouted_total += misrouted
            counted = int(direct.get("demo:requests") or 0)
            direct.close()
            out.write(f"{name:<10} {counted:>8} {len(keys):>6} {misrouted:>9}  {server.address}\n")
            if counted != served[name]:
                misrouted_total += abs(counted - served[name])
        out.write("\n")
        if misrouted_total:
            out.write(f"FAILED: {misrouted_total} requests landed on the wrong server\n")
            return 1
        out.write("every request landed on its own tenant's server: 0 misroutes\n")
        backup = stack.enter_context(RedisServer())
        return _failover_act(servers["acme"], backup, out)


def _failover_act(primary: RedisServer, backup: RedisServer, out: TextIO) -> int:
    """Kill acme's primary under load, then restart it; report what callers saw."""
    register_failover_url("acme", backup.url)
    out.write(
        f"\nfailover: backup {backup.address} registered for tenant 'acme' at runtime; "
        "8 threads write,\nthen its primary is killed (SIGKILL) and later restarted\n"
    )
    counts = Counter[str]()
    lock = threading.Lock()
    stop = threading.Event()

    def writer() -> None:
        with tenant("acme"):
            while not stop.is_set():
                try:
                    POPOTO_REDIS_DB.incr("demo:failover")
                    outcome = "ok"
                except redis.RedisError:
                    outcome = "failed"
                with lock:
                    counts[outcome] += 1

    def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: counts["ok"] >= 500, 30)
        primary.kill()
        killed = counts["ok"]
        wait_for(lambda: counts["ok"] >= killed + 1000, 30)
        moved = tenant_status("acme")
        primary.start()
        restarted = time.monotonic()
        back = wait_for(lambda: tenant_status("acme").failbacks > 0, 30)
        took = time.monotonic() - restarted
        wait_for(lambda: counts["ok"] >= killed + 2000, 30)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    out.write(
        f"  after the kill: acme's writes go to {moved.active} ({moved.failovers} failover)\n"
    )
    status = tenant_status("acme")
    out.write(
        f"  after the restart: back on {status.active} in {took:.1f}s "
        f"({status.failbacks} failback, cooldown 1.0s)\n"
        f"  writes: {counts['ok']} succeeded, {counts['failed']} failed\n"
    )
    return 0 if back and counts["failed"] == 0 else 1
