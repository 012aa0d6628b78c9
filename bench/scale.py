"""Many tenants: registration cost, round-robin throughput, cold first requests (issue 4).

Measures, in one run, against a ``redis-server`` it starts on 127.0.0.1:

1. memory and time to register 1k / 10k / 100k tenants, with ``register_bulk`` (one set
   of settings for all) and with ``register_many`` (a mapping; 16 distinct URLs, one
   per db), measured with ``tracemalloc`` (memory) and without it (time); the names
   themselves are made before measuring (they are the caller's strings);
2. GET throughput round-robin over 10 000 tenants spread over 16 databases (each GET
   in its own ``with router.tenant(name):``) vs one shared ``redis.Redis`` doing the
   same GETs, in paired blocks with an A/A control, and the server connections used;
   also the memory that first use adds per tenant (``tracemalloc``, after a collection);
3. first-request latency of a cold tenant (registered, never used): when its
   connection settings match a tenant already in use (its pool is warm), and when it
   is the first of its settings (a new client and a new connection); and, side by
   side, the first GET on a new connection of a plain ``redis.Redis`` vs the same
   client with the router's managed connections (whose handshake sends everything
   after HELLO in one write).

Usage::

    .venv/bin/python bench/scale.py            # full run (~1 min)
    .venv/bin/python bench/scale.py --quick    # short run, noisier
    .venv/bin/python bench/scale.py --check    # exit 1 if a target is missed
"""

from __future__ import annotations

import functools
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from _common import Check, arg_parser, header, paired_sync, summary, table

from redis_tenancy import Router
from redis_tenancy._clients import build
from redis_tenancy._connection import PoolState
from redis_tenancy._embedded import RedisServer
from redis_tenancy._failover import EndpointPlan
from redis_tenancy._settings import STANDALONE

DBS = 16
KEY = "bench:scale:key"


@dataclass(frozen=True)
class Config:
    sizes: tuple[int, ...]
    get_block: int
    get_pairs: int
    cold: int  # cold tenants timed per kind


FULL = Config(sizes=(1_000, 10_000, 100_000), get_block=200, get_pairs=200, cold=300)
QUICK = Config(sizes=(1_000, 10_000, 100_000), get_block=200, get_pairs=20, cold=50)


def db_url(server: RedisServer, db: int) -> str:
    return f"redis://{server.address}/{db}"


def bench_registration(cfg: Config, server: RedisServer, checks: list[Check]) -> None:
    print("\n== 1. registering tenants (settings only; clients are built on first use)")
    urls = [db_url(server, db) for db in range(DBS)]
    rows = []
    for size in cfg.sizes:
        names = [f"tenant-{i:06d}" for i in range(size)]
        mapping = {n: {"url": urls[i % DBS]} for i, n in enumerate(names)}

        def bulk(router: Router, names: list[str] = names) -> None:
            router.register_bulk(names, url=urls[0])

        def many(router: Router, mapping: dict[str, dict[str, str]] = mapping) -> None:
            router.register_many(mapping)

        register: Callable[[Router], None]
        for label, register in (("register_bulk", bulk), ("register_many", many)):
            routers = [Router(default_url=urls[0]) for _ in range(4)]
            gc.collect()
            tracemalloc.start()
            register(routers[0])
            per_tenant = tracemalloc.get_traced_memory()[0] / size
            tracemalloc.stop()
            times = []
            for router in routers[1:]:
                gc.collect()
                start = time.perf_counter()
                register(router)
                times.append((time.perf_counter() - start) * 1e3)
            best = min(times)
            rows.append([label, f"{size:,}", f"{per_tenant:.0f}", f"{best:.1f}"])
            if size == 100_000:
                checks.append(
                    Check(f"{label} 100k: memory per tenant", per_tenant, "B", 300, False)
                )
                checks.append(Check(f"{label} 100k: time", best, "ms", 100, False))
            del routers
    print(table(["api", "tenants", "bytes/tenant", "ms (best of 3)"], rows))


def bench_round_robin(cfg: Config, server: RedisServer, checks: list[Check]) -> None:
    print("\n== 2. GET round-robin over 10 000 tenants in 16 dbs vs one shared client")
    router = Router(default_url=db_url(server, 0))
    names = [f"rr-{i}" for i in range(10_000)]
    for db in range(DBS):
        router.register_bulk(names[db::DBS], url=db_url(server, db))
        redis.Redis.from_url(db_url(server, db)).set(KEY, b"x" * 32)
    shared = redis.Redis.from_url(db_url(server, 0))
    n = cfg.get_block
    turn = [0]

    def block(kind: str) -> int:
        if kind == "shared":
            rng = range(n)
            start = time.perf_counter_ns()
            for _ in rng:
                shared.get(KEY)
            return time.perf_counter_ns() - start
        first = turn[0]
        turn[0] = (first + n) % len(names)
        chosen = [names[(first + i) % len(names)] for i in range(n)]
        proxy, tenant = router.redis, router.tenant
        start = time.perf_counter_ns()
        for name in chosen:
            with tenant(name):
                proxy.get(KEY)
        return time.perf_counter_ns() - start

    gc.collect()
    tracemalloc.start()
    for name in names:  # every tenant used once: all live, pools warm
        with router.tenant(name):
            router.redis.get(KEY)
    gc.collect()
    live_bytes = tracemalloc.get_traced_memory()[0] / len(names)
    tracemalloc.stop()
    print(
        f"  memory of a live tenant (first use of 10k registered tenants, 16 shared clients"
        f" and pools included): {live_bytes:.0f} B per tenant"
    )
    p = paired_sync(block, "router", "shared", cfg.get_pairs, n)
    with redis.Redis.from_url(db_url(server, 0)) as watcher:
        connections = int(watcher.info("clients")["connected_clients"]) - 1
    stats = router.stats()
    print(
        f"  ratio shared_time / router_time: median {p.median_ratio:.4f} ({p.ci()}); "
        f"{p.subject_us:.2f} vs {p.baseline_us:.2f} us/GET; "
        f"A/A control {p.control_median:.4f} ({p.ci(control=True)})"
    )
    print(
        f"  server connections in use: {connections} (router: {stats.pools} pools, "
        f"{stats.open_connections} open; the shared client: 1) for {stats.live_tenants:,} "
        "live tenants"
    )
    checks.append(Check("round-robin GET ratio (10k tenants)", p.median_ratio, "ratio", 0.9))
    checks.append(Check("  A/A control (noise)", p.control_median, "ratio", None))
    checks.append(Check("  server connections used", connections, "conns", None, False))
    checks.append(Check("memory per live tenant (10k)", live_bytes, "B", None, False))
    router.close()
    shared.close()


def bench_cold(cfg: Config, server: RedisServer, checks: list[Check]) -> None:
    print("\n== 3. first request of a cold tenant (registered, never used)")
    router = Router(default_url=db_url(server, 0))
    warm_names = [f"warm-{i}" for i in range(cfg.cold)]
    router.register_bulk(["anchor", *warm_names], url=db_url(server, 1))
    with router.tenant("anchor"):  # its pool is warm: cold tenants of the same settings share it
        router.redis.get(KEY)
    results: dict[str, list[float]] = {"same settings as a live tenant": [], "new settings": []}
    for i, name in enumerate(warm_names):
        start = time.perf_counter()
        with router.tenant(name):
            router.redis.get(KEY)
        results["same settings as a live tenant"].append((time.perf_counter() - start) * 1e6)
        own = f"own-{i}"
        # a distinct identity (no other tenant has this exact timeout): new client + pool
        router.register(own, url=db_url(server, 2), socket_timeout=5 + i / 1e6)
        start = time.perf_counter()
        with router.tenant(own):
            router.redis.get(KEY)
        results["new settings"].append((time.perf_counter() - start) * 1e6)
        router.remove(own)
    for label, values in results.items():
        ordered = sorted(values)
        p95 = ordered[round(0.95 * (len(ordered) - 1))]
        median = statistics.median(values)
        print(f"  {label}: median {median:.0f} us, p95 {p95:.0f} us, max {max(values):.0f} us")
        note = f"median {median:.0f} us"
        checks.append(Check(f"cold tenant, {label} (p95)", p95 / 1e3, "ms", 1.0, False, note))
    router.close()
    bench_first_get(cfg, server, checks)


def _same(plan: EndpointPlan) -> EndpointPlan:
    return plan


def bench_first_get(cfg: Config, server: RedisServer, checks: list[Check]) -> None:
    """The connection set-up alone: redis-py's handshake vs ours, interleaved."""
    times: dict[str, list[float]] = {"redis-py": [], "managed": []}
    for i in range(2 * cfg.cold):
        label = "managed" if i % 2 else "redis-py"
        kwargs: dict[str, Any] = {"host": server.host, "port": server.port, "db": 2}
        if label == "managed":
            plan = EndpointPlan([(None, "server")])
            client = build(kwargs, STANDALONE, functools.partial(_same, plan), PoolState())
            client.auto_close_connection_pool = True
        else:
            client = redis.Redis(**kwargs)
        start = time.perf_counter()
        client.get(KEY)
        times[label].append((time.perf_counter() - start) * 1e6)
        client.close()
    plain, managed = (statistics.median(times[k]) for k in ("redis-py", "managed"))
    print(
        f"  first GET on a new connection (db 2, RESP3 default): redis-py median {plain:.0f} us,"
        f" managed median {managed:.0f} us; ratio {plain / managed:.2f}"
    )
    note = f"{plain:.0f} vs {managed:.0f} us"
    checks.append(
        Check(
            "first GET, new connection: redis-py / managed", plain / managed, "x", None, note=note
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = arg_parser(__doc__)
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    checks: list[Check] = []
    started = time.monotonic()
    with RedisServer() as server:
        version = str(redis.Redis.from_url(server.url).info("server")["redis_version"])
        info = header("scale", args.quick, version)
        bench_registration(cfg, server, checks)
        bench_round_robin(cfg, server, checks)
        bench_cold(cfg, server, checks)
    return summary(checks, info, quick=args.quick, check=args.check, started=started)


if __name__ == "__main__":
    sys.exit(main())
