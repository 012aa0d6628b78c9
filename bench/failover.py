"""Failover: how fast a tenant moves, how little it loses, what a healthy tenant pays (issue 3).

Measures, in one run, against ``redis-server`` processes it starts on 127.0.0.1 and
kills itself:

1. the hot path of a healthy tenant with a failover URL configured vs the same tenant
   without one (paired GET blocks, with an A/A control; sync and async), and, for
   information, a tenant's managed connection vs a plain ``redis.Redis``;
2. time from the primary's death (SIGKILL, process reaped) to the first successful
   command on the backup, and from the failed connect (the moment the primary's
   circuit opened) to that success, over several kills;
3. the share of successful operations of 8 threads and 50 asyncio tasks writing
   without pause across a kill and a restart of the primary, and the time from the
   restart to the failback.

Usage::

    .venv/bin/python bench/failover.py            # full run (~1 min)
    .venv/bin/python bench/failover.py --quick    # short run (~15 s), noisier
    .venv/bin/python bench/failover.py --check    # exit 1 if a target is missed
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from _common import (
    Check,
    Paired,
    arg_parser,
    header,
    paired_async,
    paired_sync,
    summary,
)

from redis_tenancy._embedded import RedisServer
from redis_tenancy.redis_db import (
    POPOTO_ASYNC_REDIS_DB,
    POPOTO_REDIS_DB,
    default_router,
    set_REDIS_DB_settings,
    tenant,
    tenant_status,
)

KEY = "bench:failover:key"
CLIENTS = 8  # clients per side in the hot-path comparison


@dataclass(frozen=True)
class Config:
    get_block: int  # GETs per block
    get_pairs: int  # rounds of subject / baseline / control blocks
    kills: int  # kill -9 trials for the time-to-first-success
    cycle_seconds: float  # length of the kill/restart run
    threads: int
    tasks: int


FULL = Config(get_block=200, get_pairs=400, kills=20, cycle_seconds=8.0, threads=8, tasks=50)
QUICK = Config(get_block=300, get_pairs=12, kills=5, cycle_seconds=5.0, threads=8, tasks=50)


def kill(server: RedisServer) -> float:
    """SIGKILL ``server``, wait until it is reaped; return that moment (monotonic)."""
    server.kill()
    return time.monotonic()


class Rotation:
    """Several equivalent clients, used in turn: one per block.

    Two clients on one server differ in more than their code (each has its own
    connection, socket buffers and server-side client); comparing just two objects
    measured up to 2% apart here with identical code. Rotating over several clients
    per side, and for the A/A control too, spreads that over every comparison.
    """

    def __init__(self, clients: list[Any]) -> None:
        self.clients = clients
        self.turn = 0

    def next(self) -> Any:
        self.turn += 1
        return self.clients[self.turn % len(self.clients)]


def get_block(n: int) -> Callable[[Rotation], int]:
    def block(rotation: Rotation) -> int:
        client, key, rng = rotation.next(), KEY, range(n)
        t0 = time.perf_counter_ns()
        for _ in rng:
            client.get(key)
        return time.perf_counter_ns() - t0

    return block


def register_sides(server: RedisServer, spare: RedisServer) -> tuple[list[str], list[str]]:
    """Register CLIENTS tenants with a failover URL and CLIENTS without, on ``server``.

    Tenant ``i`` of each side uses db ``i``: tenants with identical settings would share
    one client, and the comparison is meant to spread over CLIENTS connections per side.
    """
    with_failover = [f"with-failover-{i}" for i in range(CLIENTS)]
    without = [f"without-{i}" for i in range(CLIENTS)]
    for i, name in enumerate(with_failover):
        set_REDIS_DB_settings(name, url=db_url(server, i), failover_urls=[spare.url])
    for i, name in enumerate(without):
        set_REDIS_DB_settings(name, url=db_url(server, i))
    return with_failover, without


def db_url(server: RedisServer, db: int) -> str:
    return f"redis://{server.address}/{db}"


def bench_hot_path(
    cfg: Config, server: RedisServer, spare: RedisServer, checks: list[Check]
) -> None:
    print(f"\n== 1. hot path of a healthy tenant ({CLIENTS} clients per side, used in turn)")
    names_with, names_without = register_sides(server, spare)
    with_failover = Rotation([default_router.client(n) for n in names_with])
    without = Rotation([default_router.client(n) for n in names_without])
    plain = Rotation([redis.Redis.from_url(db_url(server, i)) for i in range(CLIENTS)])
    for client in plain.clients:
        client.set(KEY, b"x" * 32)
    for rotation in (with_failover, without, plain):  # connect them all before timing
        for client in rotation.clients:
            client.get(KEY)
    block = get_block(cfg.get_block)
    for label, subject, baseline, target in (
        ("GET ratio: failover configured / not", with_failover, without, 0.99),
        ("GET ratio: managed connection / plain redis-py", without, plain, None),
    ):
        p = paired_sync(block, subject, baseline, cfg.get_pairs, cfg.get_block)
        report(label, p, target, checks)
    for client in plain.clients:
        client.close()
    asyncio.run(async_hot_path(cfg, names_with, names_without, checks))


async def async_hot_path(
    cfg: Config, names_with: list[str], names_without: list[str], checks: list[Check]
) -> None:
    with_failover = Rotation([default_router.async_client(n) for n in names_with])
    without = Rotation([default_router.async_client(n) for n in names_without])
    for client in (*with_failover.clients, *without.clients):
        await client.get(KEY)
    n = cfg.get_block

    async def block(rotation: Rotation) -> int:
        client, key, rng = rotation.next(), KEY, range(n)
        t0 = time.perf_counter_ns()
        for _ in rng:
            await client.get(key)
        return time.perf_counter_ns() - t0

    p = await paired_async(block, with_failover, without, cfg.get_pairs, n)
    report("async GET ratio: failover configured / not", p, 0.99, checks)


def report(label: str, p: Paired, target: float | None, checks: list[Check]) -> None:
    print(
        f"  {label}: median {p.median_ratio:.4f} ({p.ci()}), "
        f"{p.subject_us:.2f} vs {p.baseline_us:.2f} us/GET; "
        f"A/A control {p.control_median:.4f} ({p.ci(control=True)})"
    )
    checks.append(Check(label, p.median_ratio, "ratio", target, note=p.ci()))
    checks.append(Check("  A/A control (noise)", p.control_median, "ratio", None, note=p.ci(True)))


def bench_first_success(cfg: Config, checks: list[Check]) -> None:
    print(f"\n== 2. kill -9 the primary: time to the first success on the backup ({cfg.kills}x)")
    from_death: list[float] = []
    from_failed_connect: list[float] = []
    with RedisServer() as primary, RedisServer() as backup:
        for trial in range(cfg.kills):
            set_REDIS_DB_settings(
                "kill", url=primary.url, failover_urls=[backup.url], failover_cooldown=60
            )
            with tenant("kill"):
                for _ in range(20):  # a warm pool, as in a running app
                    POPOTO_REDIS_DB.set(KEY, trial)
                dead_at = kill(primary)
                while True:
                    try:
                        POPOTO_REDIS_DB.set(KEY, trial)
                        break
                    except redis.ConnectionError:
                        continue
                ok_at = time.monotonic()
                opened_at = default_router.lookup["kill"].plan().routes[0].opened_at
            assert tenant_status("kill").active == f"redis://{backup.address}/0"
            from_death.append((ok_at - dead_at) * 1e3)
            from_failed_connect.append((ok_at - opened_at) * 1e3)
            # Re-registering identical settings keeps the plan (and its open circuit), so
            # each trial starts from a fresh tenant.
            default_router.remove("kill")
            primary.start()
    for label, values, target in (
        ("first success after death", from_death, None),
        ("first success after failed connect", from_failed_connect, 50.0),
    ):
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        print(
            f"  {label}: median {statistics.median(values):.2f} ms, p95 {p95:.2f} ms, "
            f"max {max(values):.2f} ms"
        )
        note = f"median {statistics.median(values):.2f} ms, p95 {p95:.2f} ms"
        checks.append(Check(f"{label} (max)", max(values), "ms", target, False, note))
    print(
        "  (between death and the failed connect: the pool finds the pooled connection\n"
        "   closed and reconnects by the plan; a command caught mid-flight would add\n"
        "   redis-py's first retry backoff, a jittered 0-20 ms)"
    )


def bench_cycle(cfg: Config, checks: list[Check]) -> None:
    print(f"\n== 3. {cfg.threads} threads + {cfg.tasks} tasks writing across a kill and a restart")
    cooldown = 1.0
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()

    def count(ok: bool) -> None:
        with lock:
            counts["ok" if ok else "failed"] += 1

    def sync_worker(n: int) -> None:
        with tenant("cycle"):
            while not stop.is_set():
                try:
                    POPOTO_REDIS_DB.incr(f"s{n}")
                    count(True)
                except redis.RedisError:
                    count(False)

    async def async_worker(n: int) -> None:
        while not stop.is_set():
            try:
                await POPOTO_ASYNC_REDIS_DB.incr(f"a{n}")
                count(True)
            except redis.RedisError:
                count(False)

    async def async_main() -> None:
        with tenant("cycle"):
            await asyncio.gather(*(async_worker(n) for n in range(cfg.tasks)))

    with RedisServer() as primary, RedisServer() as backup:
        set_REDIS_DB_settings(
            "cycle", url=primary.url, failover_urls=[backup.url], failover_cooldown=cooldown
        )
        workers = [threading.Thread(target=sync_worker, args=(n,)) for n in range(cfg.threads)]
        workers.append(threading.Thread(target=asyncio.run, args=(async_main(),)))
        started = time.monotonic()
        for worker in workers:
            worker.start()
        time.sleep(cfg.cycle_seconds * 0.2)  # a benchmark's load phase, not a test's wait
        kill(primary)
        time.sleep(cfg.cycle_seconds * 0.2)
        primary.start()
        restarted = time.monotonic()
        failback_at = None
        deadline = started + cfg.cycle_seconds
        while time.monotonic() < deadline:
            if failback_at is None and tenant_status("cycle").failbacks:
                failback_at = time.monotonic()
            time.sleep(0.005)
        stop.set()
        for worker in workers:
            worker.join()
        status = tenant_status("cycle")
    total = counts["ok"] + counts["failed"]
    share = 100 * counts["ok"] / total
    back = (failback_at - restarted) if failback_at is not None else float("nan")
    print(
        f"  {counts['ok']:,} ok, {counts['failed']:,} failed of {total:,} operations "
        f"({share:.3f}% ok); failovers {status.failovers}, failbacks {status.failbacks}; "
        f"failback {back * 1e3:.0f} ms after the restart (cooldown {cooldown:.1f} s)"
    )
    checks.append(
        Check("ops ok across kill + restart", share, "%", 99.9, note=f"{counts['failed']} failed")
    )
    checks.append(Check("failback after restart", back * 1e3, "ms", None, False, "cooldown 1 s"))


def main(argv: list[str] | None = None) -> int:
    parser = arg_parser(__doc__)
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    # One WARNING per switch is the library's job; here it would drown the numbers.
    logging.getLogger("POPOTO-REDIS_DB").setLevel(logging.ERROR)
    checks: list[Check] = []
    started = time.monotonic()
    with RedisServer() as server, RedisServer() as spare:
        version = str(redis.Redis.from_url(server.url).info("server")["redis_version"])
        info = header("failover", args.quick, version)
        bench_hot_path(cfg, server, spare, checks)
    bench_first_success(cfg, checks)
    bench_cycle(cfg, checks)
    return summary(checks, info, quick=args.quick, check=args.check, started=started)


if __name__ == "__main__":
    sys.exit(main())
