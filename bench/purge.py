"""Purge: how fast a namespace is deleted, and what the other tenants feel (issue 11).

Measures, in one run, against a ``redis-server`` it starts on 127.0.0.1:

1. the purge rate (keys deleted per second) of a namespace that is the whole server,
   sync and async side by side (rounds interleaved, medians), next to a dry run (the
   SCAN alone) of the same keys;
2. the purge of 20 000 tenant keys among 300 000 foreign ones (SCAN visits every name,
   so the rate per tenant key is lower: this is the realistic shared-server case);
3. a purge with ``max_keys_per_second`` set, to show the limit holds;
4. how long the server ran each purge command, from SLOWLOG (reset before each purge,
   ``slowlog-log-slower-than 0`` so every command is logged): no purge command may
   stall the other tenants for more than 10 ms. Next to it a control: a CPU-bound EVAL
   calibrated to the purge commands' median cost, sent from another connection between
   the round trips of one more purge. SLOWLOG measures wall-clock time, so a server
   preempted on a busy machine stretches whatever it runs; the control shows how much;
5. the server's CPU time per purge command (its main thread's schedstat clock read
   around each command): what a command really blocks the server for, whatever the
   machine's load.

Loading keys (pipelined MSETs) is never timed.

Usage::

    .venv/bin/python bench/purge.py            # full run (~1 min)
    .venv/bin/python bench/purge.py --quick    # short run (~15 s), noisier
    .venv/bin/python bench/purge.py --check    # exit 1 if a target is missed
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio
from _common import Check, arg_parser, header, summary, table

from redis_tenancy._embedded import RedisServer
from redis_tenancy._purge import (
    DEFAULT_PURGE_POLICY,
    PurgePolicy,
    PurgeResult,
    Scan,
    Unlink,
    async_purge,
    purge,
    purge_flow,
)

PREFIX = "tenant:acme:"


@dataclass(frozen=True)
class Config:
    whole_keys: int  # keys of the namespace-is-the-server runs
    rounds: int  # interleaved sync/async/dry rounds
    mixed_rounds: int
    limited_keys: int
    limit: float  # keys/s for the rate-limited run


FULL = Config(whole_keys=200_000, rounds=5, mixed_rounds=3, limited_keys=100_000, limit=50_000)
QUICK = Config(whole_keys=50_000, rounds=2, mixed_rounds=1, limited_keys=20_000, limit=50_000)


@dataclass
class Slowlog:
    """SLOWLOG durations (µs) of the purge's SCAN/UNLINK commands and of the control."""

    purge: list[int] = field(default_factory=list)
    control: list[int] = field(default_factory=list)
    worst: str = ""

    def take(self, client: redis.Redis) -> None:
        for entry in client.slowlog_get(1_000_000):
            micros = int(entry["duration"])
            words = [w.decode(errors="replace") for w in entry["command"].split()[:3]]
            kind = words[0].upper() if words else ""
            if kind in {"EVAL", "EVALSHA"}:
                self.control.append(micros)
            elif kind in {"SCAN", "UNLINK"}:
                if micros > max(self.purge, default=-1):
                    self.worst = " ".join(words) + " ..."
                self.purge.append(micros)


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))]) if ordered else 0.0


def fill(client: redis.Redis, prefix: str, count: int) -> None:
    pipe = client.pipeline(transaction=False)
    for first in range(0, count, 2000):
        pipe.mset({f"{prefix}{i}": "v" for i in range(first, min(first + 2000, count))})
    pipe.execute()


def timed(client: redis.Redis, slowlog: Slowlog, run: Callable[[], PurgeResult]) -> PurgeResult:
    """Run one purge and keep the SLOWLOG of its commands."""
    client.slowlog_reset()
    result = run()
    slowlog.take(client)
    return result


def run_async(server: RedisServer, **kwargs: Any) -> PurgeResult:
    async def go() -> PurgeResult:
        async with redis.asyncio.Redis(host=server.host, port=server.port) as client:
            return await async_purge(client, PREFIX, **kwargs)

    return asyncio.run(go())


def bench_whole(
    cfg: Config, server: RedisServer, client: redis.Redis, slowlog: Slowlog, checks: list[Check]
) -> None:
    rates: dict[str, list[float]] = {"sync": [], "async": [], "dry run": []}
    for round_ in range(cfg.rounds):
        order = ["sync", "async", "dry run"]
        for label in order[round_ % 3 :] + order[: round_ % 3]:
            client.flushall()
            fill(client, PREFIX, cfg.whole_keys)
            if label == "sync":
                result = timed(client, slowlog, lambda: purge(client, PREFIX))
            elif label == "async":
                result = timed(client, slowlog, lambda: run_async(server))
            else:
                result = timed(client, slowlog, lambda: purge(client, PREFIX, dry_run=True))
            counted = result.matched if result.dry_run else result.deleted
            assert counted == cfg.whole_keys, result
            rates[label].append(counted / result.seconds)
    med = {label: statistics.median(values) for label, values in rates.items()}
    print(f"\n== 1. namespace = whole server: {cfg.whole_keys} keys, {cfg.rounds} rounds")
    rows = [
        [label, f"{med[label]:,.0f}", f"{min(values):,.0f}", f"{max(values):,.0f}"]
        for label, values in rates.items()
    ]
    print(table(["variant", "median keys/s", "min", "max"], rows))
    checks.append(Check("purge rate, sync (keys/s)", med["sync"], "keys/s", 100_000))
    checks.append(Check("purge rate, async (keys/s)", med["async"], "keys/s", 100_000))
    checks.append(Check("async / sync purge rate", med["async"] / med["sync"], "ratio", None))
    checks.append(Check("purge / dry-run rate", med["sync"] / med["dry run"], "ratio", None))


def bench_mixed(cfg: Config, client: redis.Redis, slowlog: Slowlog, checks: list[Check]) -> None:
    client.flushall()
    for other in ("tenant:acmX:", "tenant:other:", "cache:"):
        fill(client, other, 100_000)
    deleted: list[float] = []
    visited: list[float] = []
    for _ in range(cfg.mixed_rounds):
        fill(client, PREFIX, 20_000)
        result = timed(client, slowlog, lambda: purge(client, PREFIX))
        assert result.deleted == 20_000, result
        assert client.dbsize() == 300_000
        deleted.append(result.deleted / result.seconds)
        visited.append(320_000 / result.seconds)
    print("\n== 2. 20 000 tenant keys among 300 000 foreign keys")
    print(f"tenant keys deleted/s (median): {statistics.median(deleted):,.0f}")
    print(f"names visited by SCAN/s (median): {statistics.median(visited):,.0f}")
    checks.append(
        Check("mixed: tenant keys/s", statistics.median(deleted), "keys/s", None, note="info")
    )
    checks.append(
        Check("mixed: names scanned/s", statistics.median(visited), "keys/s", None, note="info")
    )


def bench_limited(cfg: Config, client: redis.Redis, slowlog: Slowlog, checks: list[Check]) -> None:
    client.flushall()
    fill(client, PREFIX, cfg.limited_keys)
    policy = PurgePolicy(max_keys_per_second=cfg.limit)
    result = timed(client, slowlog, lambda: purge(client, PREFIX, policy=policy))
    rate = result.deleted / result.seconds
    print(f"\n== 3. max_keys_per_second={cfg.limit:,.0f}: {rate:,.0f} keys/s measured")
    checks.append(Check("rate-limited purge (keys/s)", rate, "keys/s", cfg.limit, False))


#: A CPU-bound control command: ARGV[1] additions in Lua, a fixed cost per call.
CONTROL = "local x = 0 for i = 1, tonumber(ARGV[1]) do x = x + i end return x"


def control_loops(client: redis.Redis, target_us: float) -> int:
    """Loop count that makes one CONTROL call cost about ``target_us`` on this server."""
    loops = 100_000
    client.slowlog_reset()
    for _ in range(20):
        client.eval(CONTROL, 0, loops)
    durations = [int(e["duration"]) for e in client.slowlog_get(100) if b"EVAL" in e["command"]]
    return max(1, int(loops * target_us / max(statistics.median(durations), 1)))


def stats_row(label: str, values: list[int]) -> list[str]:
    return [
        label,
        str(len(values)),
        f"{percentile(values, 0.5) / 1000:.2f}",
        f"{percentile(values, 0.99) / 1000:.2f}",
        f"{max(values, default=0) / 1000:.2f}",
        str(sum(v > 10_000 for v in values)),
    ]


def bench_stall(cfg: Config, client: redis.Redis, slowlog: Slowlog, checks: list[Check]) -> None:
    """The purge's commands next to a control of the same median cost (a CPU-bound
    EVAL sent from another connection after every purge round trip): a preempted
    server stretches whatever it is running, and on a busy machine the control shows
    how long a millisecond command can take for that reason alone."""
    loops = control_loops(client, percentile(slowlog.purge, 0.5))
    client.flushall()
    fill(client, PREFIX, cfg.whole_keys)
    paired = Slowlog()
    address = client.connection_pool.connection_kwargs
    with redis.Redis(host=address["host"], port=address["port"]) as other:

        def control(_: PurgeResult) -> None:
            other.eval(CONTROL, 0, loops)

        timed(client, paired, lambda: purge(client, PREFIX, progress=control))
    slowlog.purge += paired.purge
    print("\n== 4. SLOWLOG (ms): every purge command above; one purge with the control")
    rows = [
        stats_row("purge, all runs", slowlog.purge),
        stats_row("purge, control run", paired.purge),
        stats_row("control EVAL", paired.control),
    ]
    print(table(["commands", "count", "p50", "p99", "max", "> 10 ms"], rows))
    print(f"slowest purge command: {slowlog.worst}")
    control_max = max(paired.control, default=0) / 1000
    checks.append(
        Check("purge command p99", percentile(slowlog.purge, 0.99) / 1000, "ms", 10.0, False)
    )
    checks.append(
        Check(
            "slowest purge command",
            max(slowlog.purge, default=0) / 1000,
            "ms",
            10.0,
            False,
            f"control max {control_max:.1f} ms",
        )
    )
    checks.append(
        Check(
            "purge / control p99 (control run)",
            percentile(paired.purge, 0.99) / max(percentile(paired.control, 0.99), 1),
            "ratio",
            None,
        )
    )


def thread_cpu_ns(pid: int) -> int:
    """CPU time the server's main thread has run, in ns (Linux schedstat)."""
    with open(f"/proc/{pid}/task/{pid}/schedstat", encoding="ascii") as fh:
        return int(fh.read().split()[0])


def bench_cpu(cfg: Config, client: redis.Redis, checks: list[Check]) -> None:
    """Server CPU time per purge command: the time the server really could not serve
    anyone else, which preemption does not stretch (SLOWLOG measures wall-clock).

    The bench drives :func:`purge_flow` itself, as the library's drivers do, reading the
    main thread's CPU clock before and after each command (the thread is otherwise
    idle: its cron adds some µs every 100 ms).
    """
    pid = int(client.info("server")["process_id"])
    try:
        thread_cpu_ns(pid)
    except OSError as exc:
        print(f"\n== 5. server CPU per command: not measured ({exc})")
        return
    costs: dict[str, list[int]] = {"SCAN": [], "UNLINK": []}
    for namespace_only in (True, False):
        client.flushall()
        if not namespace_only:
            for other in ("tenant:acmX:", "tenant:other:", "cache:"):
                fill(client, other, 100_000)
        fill(client, PREFIX, cfg.whole_keys if namespace_only else 20_000)
        flow = purge_flow(PREFIX, [None], dry_run=False)
        reply: Any = None
        while True:
            try:
                action = flow.send(reply)
            except StopIteration:
                break
            before = thread_cpu_ns(pid)
            if isinstance(action, Scan):
                cursor, names = client.scan(action.cursor, match=action.match, count=action.count)
                reply = (int(cursor), names)
            elif isinstance(action, Unlink):
                reply = client.unlink(*action.groups[0])
            costs["SCAN" if isinstance(action, Scan) else "UNLINK"].append(
                thread_cpu_ns(pid) - before
            )
    print("\n== 5. server main-thread CPU per purge command (ms), both data sets")
    rows = [stats_row(kind, [ns // 1000 for ns in values]) for kind, values in costs.items()]
    print(table(["command", "count", "p50", "p99", "max", "> 10 ms"], rows))
    worst = max(max(values, default=0) for values in costs.values()) / 1e6
    checks.append(Check("server CPU of one purge command, max", worst, "ms", 10.0, False))


def main(argv: list[str] | None = None) -> int:
    parser = arg_parser(__doc__)
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    checks: list[Check] = []
    started = time.monotonic()
    slowlog = Slowlog()
    with RedisServer() as server, redis.Redis(host=server.host, port=server.port) as client:
        version = str(client.info("server")["redis_version"])
        info = header("purge", args.quick, version)
        policy = DEFAULT_PURGE_POLICY
        print(f"policy: scan_count={policy.scan_count}, batch_size={policy.batch_size}")
        client.config_set("slowlog-log-slower-than", 0)
        client.config_set("slowlog-max-len", 1_000_000)
        bench_whole(cfg, server, client, slowlog, checks)
        bench_mixed(cfg, client, slowlog, checks)
        bench_limited(cfg, client, slowlog, checks)
        bench_stall(cfg, client, slowlog, checks)
        bench_cpu(cfg, client, checks)
    return summary(checks, info, quick=args.quick, check=args.check, started=started)


if __name__ == "__main__":
    sys.exit(main())
