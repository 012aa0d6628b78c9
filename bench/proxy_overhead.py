"""Cost of routing through ``POPOTO_REDIS_DB`` / ``POPOTO_ASYNC_REDIS_DB`` (issue 2).

Measures, in one run and side by side:

1. attribute access: ``proxy.get`` vs ``client.get`` (the same concrete client the proxy
   resolves to) vs werkzeug ``LocalProxy`` over a ContextVar holding that client;
2. ``with tenant("acme"): pass`` (construction + enter + exit);
3. loopback ``GET`` throughput through the proxy vs the direct client (paired blocks);
4. the same for asyncio: attribute access on ``POPOTO_ASYNC_REDIS_DB`` vs the direct
   ``redis.asyncio.Redis``, and ``GET`` throughput (sequential awaits and gathered batches).

It starts its own ``redis-server`` on 127.0.0.1 (``redis_tenancy._embedded.RedisServer``).

Usage::

    .venv/bin/python bench/proxy_overhead.py              # full run (~3.5 min)
    .venv/bin/python bench/proxy_overhead.py --quick      # short run (~5 s), noisier
    .venv/bin/python bench/proxy_overhead.py --rounds 45 --block 2000  # older, coarser GET blocks
    .venv/bin/python bench/proxy_overhead.py --check      # exit 1 if a target is missed

Method: micro-benchmarks use ``timeit`` (GC off, the object bound to a local in the
setup), take the minimum of several repeats, and interleave the variants in each repeat
(rotating their order) so drift hits all of them alike. Throughput runs go in rounds
("pairs") of three equal blocks of GETs: proxy, direct, and direct again as an A/A
control that shows the method's own noise on this machine. The order rotates every
round and the GC is off during a block. Reported: the median over rounds of
``direct_time / proxy_time`` (1.0 = no overhead) with a bootstrap 90% confidence
interval, next to the control's median (its distance from 1.0 is the noise floor).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import hashlib
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import redis.asyncio
import redis.utils
from werkzeug.local import LocalProxy

import redis_tenancy
from redis_tenancy._embedded import RedisServer
from redis_tenancy.redis_db import (
    POPOTO_ASYNC_REDIS_DB,
    POPOTO_REDIS_DB,
    get_async_redis_db,
    get_REDIS_DB,
    set_REDIS_DB_settings,
    tenant,
)

TENANT = "acme"
KEY = "bench:proxy_overhead:key"
VALUE = b"x" * 32


@dataclass(frozen=True)
class Config:
    """How long each part runs."""

    attr_number: int  # accesses per timeit call
    attr_repeats: int  # timeit calls per variant (min is kept)
    ctx_number: int
    ctx_repeats: int
    get_block: int  # GETs per block
    get_pairs: int  # rounds of proxy / direct / control blocks
    agather_batch: int  # coroutines per asyncio.gather()
    agather_batches: int  # gathers per block


FULL = Config(
    attr_number=1_000_000,
    attr_repeats=9,
    ctx_number=300_000,
    ctx_repeats=9,
    # Small blocks, many rounds: this VM's loopback latency drifts minute to minute,
    # and short interleaved blocks see the same drift on both sides.
    get_block=200,
    get_pairs=400,
    agather_batch=50,
    agather_batches=40,
)
QUICK = Config(
    attr_number=200_000,
    attr_repeats=5,
    ctx_number=100_000,
    ctx_repeats=5,
    get_block=500,
    get_pairs=7,
    agather_batch=50,
    agather_batches=10,
)


@dataclass(frozen=True)
class Check:
    """One line of the final table."""

    name: str
    value: float
    unit: str
    target: float | None  # None: informational row
    higher_is_better: bool = True
    note: str = ""

    @property
    def passed(self) -> bool:
        if self.target is None:
            return True
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def row(self) -> list[str]:
        op = ">=" if self.higher_is_better else "<="
        fmt = "{:.4f}" if self.unit == "ratio" else "{:.1f}"
        unit = "" if self.unit == "ratio" else f" {self.unit}"
        if self.target is None:
            return [self.name, fmt.format(self.value) + unit, "(info)", "", self.note]
        return [
            self.name,
            fmt.format(self.value) + unit,
            f"{op} {fmt.format(self.target)}{unit}",
            "PASS" if self.passed else "FAIL",
            self.note,
        ]


# -- helpers ----------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 or header[i] == "note" else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


@contextlib.contextmanager
def _gc_off() -> Iterator[None]:
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def interleaved_min_ns(
    variants: dict[str, tuple[str, str, dict[str, Any]]], number: int, repeats: int
) -> dict[str, float]:
    """Min ns per execution of each ``(stmt, setup, globals)``, variants interleaved."""
    timers = {
        label: timeit.Timer(stmt, setup=setup, globals=glb)
        for label, (stmt, setup, glb) in variants.items()
    }
    for t in timers.values():  # warm-up (also builds lazily created clients)
        t.timeit(min(number, 10_000))
    labels = list(timers)
    best = dict.fromkeys(labels, float("inf"))
    for rep in range(repeats):
        shift = rep % len(labels)
        for label in labels[shift:] + labels[:shift]:
            ns = timers[label].timeit(number) * 1e9 / number
            best[label] = min(best[label], ns)
    return best


@dataclass(frozen=True)
class Paired:
    """Result of rounds of proxy / direct / control blocks (the control is the direct
    client again: an A/A comparison that shows how noisy the method is here)."""

    ratios: list[float]  # direct_time / proxy_time, one per round
    control_ratios: list[float]  # direct_time / control_time (A/A), one per round
    proxy_us: float  # median per-operation time through the proxy
    direct_us: float  # median per-operation time on the direct client
    min_ratio: float  # fastest direct block / fastest proxy block (robust to interference)

    @property
    def median_ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def control_median(self) -> float:
        return statistics.median(self.control_ratios)

    def ci(self, control: bool = False) -> str:
        lo, hi = bootstrap_median_ci(self.control_ratios if control else self.ratios)
        return f"90% CI {lo:.3f}..{hi:.3f}"


def bootstrap_median_ci(values: list[float], level: float = 0.90) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median (fixed seed: reproducible)."""
    rng = random.Random(12345)
    meds = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(2000))
    cut = int(len(meds) * (1 - level) / 2)
    return meds[cut], meds[-cut - 1]


LABELS = ("proxy", "direct", "control")


def _round_order(i: int) -> list[str]:
    """Rotate the three labels each round and reverse every other cycle, so each label
    takes each position equally often (position and drift effects cancel)."""
    shift = i % len(LABELS)
    order = list(LABELS[shift:] + LABELS[:shift])
    return order[::-1] if (i // len(LABELS)) % 2 else order


def _paired_result(times: dict[str, list[int]], ops: int) -> Paired:
    direct = times["direct"]
    return Paired(
        ratios=[d / p for d, p in zip(direct, times["proxy"], strict=True)],
        control_ratios=[d / c for d, c in zip(direct, times["control"], strict=True)],
        proxy_us=statistics.median(times["proxy"]) / ops / 1e3,
        direct_us=statistics.median(direct) / ops / 1e3,
        min_ratio=min(direct) / min(times["proxy"]),
    )


def paired_sync(
    block: Callable[[Any], int], proxy: Any, direct: Any, pairs: int, ops: int
) -> Paired:
    """``pairs`` rounds of ``block(proxy)``, ``block(direct)``, ``block(direct)`` (control)."""
    clients = {"proxy": proxy, "direct": direct, "control": direct}
    block(proxy)  # warm-up: connections, caches
    block(direct)
    times: dict[str, list[int]] = {label: [] for label in LABELS}
    for i in range(pairs):
        for label in _round_order(i):
            with _gc_off():
                times[label].append(block(clients[label]))
    return _paired_result(times, ops)


async def paired_async(
    block: Callable[[Any], Awaitable[int]], proxy: Any, direct: Any, pairs: int, ops: int
) -> Paired:
    """Async version of :func:`paired_sync`."""
    clients = {"proxy": proxy, "direct": direct, "control": direct}
    await block(proxy)
    await block(direct)
    times: dict[str, list[int]] = {label: [] for label in LABELS}
    for i in range(pairs):
        for label in _round_order(i):
            with _gc_off():
                times[label].append(await block(clients[label]))
    return _paired_result(times, ops)


def make_sync_get_block(n: int) -> Callable[[Any], int]:
    """``n`` GETs, each one resolving ``client.get`` anew (as application code does)."""

    def block(client: Any) -> int:
        key = KEY
        rng = range(n)
        t0 = time.perf_counter_ns()
        for _ in rng:
            client.get(key)
        return time.perf_counter_ns() - t0

    return block


def _report_paired(p: Paired, attr_overhead_ns: float | None = None) -> None:
    print(f"  direct: {p.direct_us:.2f} us/GET ({1e6 / p.direct_us:,.0f} GET/s, median block)")
    print(f"  proxy:  {p.proxy_us:.2f} us/GET ({1e6 / p.proxy_us:,.0f} GET/s, median block)")
    print(
        f"  throughput ratio direct_time/proxy_time: median of rounds {p.median_ratio:.4f} "
        f"({p.ci()}; range {min(p.ratios):.4f}..{max(p.ratios):.4f}); "
        f"fastest blocks {p.min_ratio:.4f}"
    )
    print(
        f"  A/A control direct_time/direct_time: median {p.control_median:.4f} "
        f"({p.ci(control=True)}; range {min(p.control_ratios):.4f}..{max(p.control_ratios):.4f})"
    )
    if attr_overhead_ns is not None:
        expected = p.direct_us * 1e3 / (p.direct_us * 1e3 + attr_overhead_ns)
        print(f"  expected from the attribute overhead alone: {expected:.4f}")


def minimal_proxy(var: ContextVar[Any]) -> object:
    """Reference floor: the least a Python ``__getattribute__`` ContextVar proxy can do.

    ``getattr(var.get(), name)`` with the var's ``get`` and ``getattr`` bound as default
    arguments (the same trick the real proxy uses), no slot, no error handling. The
    ContextVar holds the client itself, so there is no tenant object in between.
    """

    def __getattribute__(
        self: object, name: str, _get: Any = var.get, _getattr: Any = getattr
    ) -> Any:
        return _getattr(_get(), name)

    cls = type("MinimalProxy", (), {"__slots__": (), "__getattribute__": __getattribute__})
    return object.__new__(cls)


def attr_access_ns(
    cfg: Config,
    direct: tuple[str, Any],
    proxy: tuple[str, Any],
    extra: dict[str, tuple[str, str, dict[str, Any]]] | None = None,
) -> dict[str, float]:
    """Time ``x.get`` on the direct client, our proxy, werkzeug and the reference floor.

    werkzeug's ``LocalProxy`` and the minimal reference proxy read a ContextVar that
    holds the direct client itself, so all variants end at the same object.
    """
    var: ContextVar[Any] = ContextVar("bench_client")
    token = var.set(direct[1])
    local: LocalProxy[Any] = LocalProxy(var)
    variants: dict[str, tuple[str, str, dict[str, Any]]] = {
        "empty loop (timeit baseline)": ("pass", "", {}),
        direct[0]: ("x.get", "x = obj", {"obj": direct[1]}),
        proxy[0]: ("x.get", "x = obj", {"obj": proxy[1]}),
        "werkzeug LocalProxy(ContextVar).get": ("x.get", "x = obj", {"obj": local}),
        **(extra or {}),
        "ref: minimal Python-hook proxy": ("x.get", "x = obj", {"obj": minimal_proxy(var)}),
    }
    try:
        return interleaved_min_ns(variants, cfg.attr_number, cfg.attr_repeats)
    finally:
        var.reset(token)


# -- the parts --------------------------------------------------------------------------


def bench_sync_attr(cfg: Config, checks: list[Check]) -> float:
    print("\n[1] attribute access `x.get` (sync), ns per access, min of", cfg.attr_repeats)
    with tenant(TENANT):
        client = get_REDIS_DB()
        res = attr_access_ns(
            cfg,
            ("direct client.get", client),
            ("POPOTO_REDIS_DB.get", POPOTO_REDIS_DB),
            {"get_REDIS_DB().get": ("f().get", "f = obj", {"obj": get_REDIS_DB})},
        )
    base = res["empty loop (timeit baseline)"]
    direct = res["direct client.get"]
    rows = []
    for label, ns in res.items():
        if label.startswith("empty"):
            rows.append([label, f"{ns:.1f}", "", "", ""])
            continue
        rows.append(
            [
                label,
                f"{ns:.1f}",
                f"{ns - base:.1f}",
                f"{ns - direct:+.1f}",
                f"{(ns - base) / (direct - base):.2f}x",
            ]
        )
    print(_table(["variant", "ns/access", "net of loop", "vs direct", "net ratio"], rows))
    overhead = res["POPOTO_REDIS_DB.get"] - direct
    lp_overhead = res["werkzeug LocalProxy(ContextVar).get"] - direct
    print(
        f"proxy overhead {overhead:.1f} ns; werkzeug LocalProxy overhead {lp_overhead:.1f} ns "
        f"(proxy is {lp_overhead / overhead:.1f}x cheaper)"
        if overhead > 0
        else f"proxy overhead {overhead:.1f} ns; werkzeug LocalProxy overhead {lp_overhead:.1f} ns"
    )
    checks.append(Check("sync attr overhead (proxy - direct)", overhead, "ns", 50, False))
    return overhead


_MIN_VAR: ContextVar[object] = ContextVar("bench_minimal_tenant")
_MIN_LOOKUP: dict[str | None, object] = {TENANT: object()}


class MinimalTenant:
    """Reference floor for ``with tenant(name)``: a slotted class whose ``__enter__`` sets
    a (module-global) ContextVar to a dict lookup of the name and whose ``__exit__``
    resets it; no validation, no re-entry support, no router object."""

    __slots__ = ("_token", "name")

    def __init__(self, name: str | None) -> None:
        self.name = name
        self._token: Token[object] | None = None

    def __enter__(self) -> MinimalTenant:
        self._token = _MIN_VAR.set(_MIN_LOOKUP[self.name])
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        _MIN_VAR.reset(self._token)  # type: ignore[arg-type]


def bench_tenant_ctx(cfg: Config, checks: list[Check]) -> None:
    print("\n[2] `with tenant(...): pass`, ns per op, min of", cfg.ctx_repeats)
    reused = tenant(TENANT)
    res = interleaved_min_ns(
        {
            "with tenant('acme'): pass (construct+enter+exit)": (
                "with t(name):\n    pass",
                "t = obj; name = n",
                {"obj": tenant, "n": TENANT},
            ),
            "with <reused tenant obj>: pass (enter+exit)": (
                "with c:\n    pass",
                "c = obj",
                {"obj": reused},
            ),
            "ref: minimal slotted CM class, same work": (
                "with t(name):\n    pass",
                "t = obj; name = n",
                {"obj": MinimalTenant, "n": TENANT},
            ),
            "with nullcontext(): pass (reference)": (
                "with c:\n    pass",
                "c = obj",
                {"obj": contextlib.nullcontext()},
            ),
            "var.set()+var.reset() (reference)": (
                "var.reset(var.set(1))",
                "var = obj",
                {"obj": ContextVar("bench_ref")},
            ),
        },
        cfg.ctx_number,
        cfg.ctx_repeats,
    )
    print(_table(["variant", "ns/op"], [[k, f"{v:.1f}"] for k, v in res.items()]))
    checks.append(
        Check(
            "with tenant('acme'): pass",
            res["with tenant('acme'): pass (construct+enter+exit)"],
            "ns",
            350,
            False,
        )
    )


def bench_sync_get(cfg: Config, checks: list[Check], attr_overhead_ns: float) -> None:
    print(
        f"\n[3] loopback GET (sync): {cfg.get_pairs} rounds of {cfg.get_block}-GET blocks, "
        "proxy/direct/control rotating"
    )
    with tenant(TENANT):
        client = get_REDIS_DB()
        client.set(KEY, VALUE)
        p = paired_sync(
            make_sync_get_block(cfg.get_block),
            POPOTO_REDIS_DB,
            client,
            cfg.get_pairs,
            cfg.get_block,
        )
    _report_paired(p, attr_overhead_ns)
    checks.append(Check("sync GET throughput ratio", p.median_ratio, "ratio", 0.99, note=p.ci()))
    checks.append(
        Check("  sync GET A/A control (noise)", p.control_median, "ratio", None, note=p.ci(True))
    )


async def _async_attr(cfg: Config, checks: list[Check]) -> float:
    print("\n[4a] attribute access `x.get` (async, inside a running loop), ns per access")
    with tenant(TENANT):
        aclient = await get_async_redis_db()
        POPOTO_ASYNC_REDIS_DB.get  # noqa: B018 - first access fills the proxy's fast path
        res = attr_access_ns(
            cfg,
            ("direct async client.get", aclient),
            ("POPOTO_ASYNC_REDIS_DB.get", POPOTO_ASYNC_REDIS_DB),
        )
    base = res["empty loop (timeit baseline)"]
    direct = res["direct async client.get"]
    rows = [
        [k, f"{v:.1f}", f"{v - base:.1f}", "" if k.startswith("empty") else f"{v - direct:+.1f}"]
        for k, v in res.items()
    ]
    print(_table(["variant", "ns/access", "net of loop", "vs direct"], rows))
    overhead = res["POPOTO_ASYNC_REDIS_DB.get"] - direct
    print(f"async proxy overhead {overhead:.1f} ns")
    checks.append(Check("async attr overhead (proxy - direct)", overhead, "ns", 100, False))
    return overhead


async def _async_get(cfg: Config, checks: list[Check], attr_overhead_ns: float) -> None:
    n = cfg.get_block
    print(
        f"\n[4b] loopback GET (async, sequential awaits): {cfg.get_pairs} rounds of {n}-GET blocks"
    )

    async def seq_block(client: Any) -> int:
        key = KEY
        t0 = time.perf_counter_ns()
        for _ in range(n):
            await client.get(key)
        return time.perf_counter_ns() - t0

    batch, batches = cfg.agather_batch, cfg.agather_batches

    async def gather_block(client: Any) -> int:
        key = KEY
        rng = range(batch)
        t0 = time.perf_counter_ns()
        for _ in range(batches):
            await asyncio.gather(*[client.get(key) for _ in rng])
        return time.perf_counter_ns() - t0

    with tenant(TENANT):
        aclient = await get_async_redis_db()
        await aclient.set(KEY, VALUE)
        seq = await paired_async(seq_block, POPOTO_ASYNC_REDIS_DB, aclient, cfg.get_pairs, n)
        _report_paired(seq, attr_overhead_ns)
        print(
            f"\n[4c] loopback GET (async, gather of {batch}): {cfg.get_pairs} rounds of "
            f"{batches}x{batch}-GET blocks"
        )
        gat = await paired_async(
            gather_block, POPOTO_ASYNC_REDIS_DB, aclient, cfg.get_pairs, batch * batches
        )
        _report_paired(gat)
    checks += [
        Check("async GET ratio (sequential)", seq.median_ratio, "ratio", 0.98, note=seq.ci()),
        Check(
            "  async seq A/A control (noise)", seq.control_median, "ratio", None, note=seq.ci(True)
        ),
        Check(f"async GET ratio (gather {batch})", gat.median_ratio, "ratio", 0.98, note=gat.ci()),
        Check("  async gather A/A control", gat.control_median, "ratio", None, note=gat.ci(True)),
    ]


async def bench_async(cfg: Config, checks: list[Check]) -> None:
    overhead = await _async_attr(cfg, checks)
    await _async_get(cfg, checks, overhead)


# -- main -------------------------------------------------------------------------------


def _loadavg(label: str) -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return f"{label}: unavailable"
    return f"{label}: {one:.2f} (1 min), {five:.2f} (5 min); other processes add noise"


def source_info() -> str:
    """Which redis_tenancy code was measured: a hash of its sources, plus git state.

    The hash is taken at start-up, right after import, so runs can be matched to the
    code they measured even while the tree is being edited.
    """
    pkg = Path(redis_tenancy.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(pkg.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    text = f"redis_tenancy sources sha256 {digest.hexdigest()[:12]}"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        cwd = pkg.parent.parent
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", str(pkg)],
            cwd=cwd,
            capture_output=True,
            text=True,
        ).stdout.split()
        changed = sorted({Path(w).name for w in dirty if w.endswith(".py")})
        if head:
            text += f", git {head}" + (f" + uncommitted {', '.join(changed)}" if changed else "")
    return text


def machine_info(server_version: str) -> list[str]:
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        nproc = os.cpu_count() or 0
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return [
        f"python: {platform.python_implementation()} {platform.python_version()} "
        f"({sys.executable})",
        f"machine: {platform.system()} {platform.release()} {platform.machine()}, "
        f"nproc={nproc}, cpu={cpu}",
        f"redis-py {redis.__version__} (hiredis: {redis.utils.HIREDIS_AVAILABLE}), "
        f"redis-server {server_version} on 127.0.0.1",
        source_info(),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short run (noisier numbers)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--rounds", type=int, help="GET rounds (default: 400 full, 7 quick)")
    parser.add_argument("--block", type=int, help="GETs per block (default: 200 full, 500 quick)")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    if args.rounds:
        cfg = dataclasses.replace(cfg, get_pairs=args.rounds)
    if args.block:
        cfg = dataclasses.replace(cfg, get_block=args.block)
    checks: list[Check] = []
    started = time.monotonic()
    with RedisServer() as server:
        set_REDIS_DB_settings(TENANT, url=server.url)
        with tenant(TENANT):
            server_version = str(get_REDIS_DB().info("server")["redis_version"])
        info = machine_info(server_version)
        print("redis-tenancy proxy overhead benchmark", "(quick)" if args.quick else "(full)")
        print("\n".join(info))
        print(_loadavg("load average at start"))
        overhead = bench_sync_attr(cfg, checks)
        bench_tenant_ctx(cfg, checks)
        bench_sync_get(cfg, checks, overhead)
        asyncio.run(bench_async(cfg, checks))
        with tenant(TENANT):
            get_REDIS_DB().delete(KEY)
            get_REDIS_DB().connection_pool.disconnect()
    print(f"\n== summary ({'quick' if args.quick else 'full'}, {time.monotonic() - started:.0f} s)")
    print("\n".join(info))
    print(_loadavg("load average at end"))
    print(_table(["metric", "measured", "target", "result", "note"], [c.row() for c in checks]))
    missed = [c.name for c in checks if c.target is not None and not c.passed]
    print("all targets met" if not missed else f"missed: {', '.join(missed)}")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
