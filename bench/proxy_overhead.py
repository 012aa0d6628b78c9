"""Cost of routing through ``POPOTO_REDIS_DB`` / ``POPOTO_ASYNC_REDIS_DB`` (issue 2).

Measures, in one run and side by side:

1. attribute access: ``proxy.get`` vs ``client.get`` (the same concrete client the proxy
   resolves to) vs werkzeug ``LocalProxy`` over a ContextVar holding that client;
2. ``with tenant("acme"): pass`` (construction + enter + exit), and entering one
   object that concurrent threads share;
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

import asyncio
import contextlib
import dataclasses
import sys
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

import uvloop
from _common import (
    Check,
    Paired,
    arg_parser,
    header,
    interleaved_min_ns,
    paired_async,
    paired_sync,
    summary,
    table,
)
from werkzeug.local import LocalProxy

from redis_tenancy import TenantContext
from redis_tenancy._embedded import RedisServer
from redis_tenancy.redis_db import (
    POPOTO_ASYNC_REDIS_DB,
    POPOTO_REDIS_DB,
    _DefaultTenant,
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


# -- helpers ----------------------------------------------------------------------------


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
    print(f"  direct: {p.baseline_us:.2f} us/GET ({1e6 / p.baseline_us:,.0f} GET/s, median block)")
    print(f"  proxy:  {p.subject_us:.2f} us/GET ({1e6 / p.subject_us:,.0f} GET/s, median block)")
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
        expected = p.baseline_us * 1e3 / (p.baseline_us * 1e3 + attr_overhead_ns)
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
    print(table(["variant", "ns/access", "net of loop", "vs direct", "net ratio"], rows))
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


def shared_tenant(name: str) -> TenantContext:
    """A ``tenant(name)`` that was once entered by two threads at the same time.

    From then on every entry of it keeps its token on its own thread's or task's
    stack (the path a module-level object shared by concurrent requests takes).
    """
    block = _DefaultTenant(name)  # its own object: tenant() would hand out a cached one
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with block:
            inside.set()
            leave.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait()
    with block:
        pass
    leave.set()
    holder.join()
    return block


def bench_tenant_ctx(cfg: Config, checks: list[Check]) -> None:
    print("\n[2] `with tenant(...): pass`, ns per op, min of", cfg.ctx_repeats)
    reused = _DefaultTenant(TENANT)
    res = interleaved_min_ns(
        {
            "with tenant('acme'): pass (construct+enter+exit)": (
                "with t(name):\n    pass",
                "t = obj; name = n",
                {"obj": tenant, "n": TENANT},
            ),
            "with <new object every time>: pass (no re-use)": (
                "with t(name):\n    pass",
                "t = obj; name = n",
                {"obj": _DefaultTenant, "n": TENANT},
            ),
            "with <reused tenant obj>: pass (enter+exit)": (
                "with c:\n    pass",
                "c = obj",
                {"obj": reused},
            ),
            "with <tenant obj shared by threads>: pass (enter+exit)": (
                "with c:\n    pass",
                "c = obj",
                {"obj": shared_tenant(TENANT)},
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
    print(table(["variant", "ns/op"], [[k, f"{v:.1f}"] for k, v in res.items()]))
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


async def _async_attr(cfg: Config, checks: list[Check], loop_kind: str = "asyncio") -> float:
    print(f"\n[4a] attribute access `x.get` (async, inside a running {loop_kind} loop), ns/access")
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
    print(table(["variant", "ns/access", "net of loop", "vs direct"], rows))
    overhead = res["POPOTO_ASYNC_REDIS_DB.get"] - direct
    print(f"async proxy overhead ({loop_kind}) {overhead:.1f} ns")
    label = "async attr overhead (proxy - direct)"
    if loop_kind != "asyncio":
        label = f"async attr overhead on {loop_kind} (proxy - direct)"
    checks.append(Check(label, overhead, "ns", 100, False))
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


def main(argv: list[str] | None = None) -> int:
    parser = arg_parser(__doc__)
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
        info = header("proxy overhead", args.quick, server_version)
        overhead = bench_sync_attr(cfg, checks)
        bench_tenant_ctx(cfg, checks)
        bench_sync_get(cfg, checks, overhead)
        asyncio.run(bench_async(cfg, checks))
        uvloop.run(_async_attr(cfg, checks, "uvloop"))
        with tenant(TENANT):
            get_REDIS_DB().delete(KEY)
            get_REDIS_DB().connection_pool.disconnect()
    return summary(checks, info, quick=args.quick, check=args.check, started=started)


if __name__ == "__main__":
    sys.exit(main())
