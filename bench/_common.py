"""Measuring helpers shared by the ``bench/`` scripts.

Side-by-side ratios need the same care in every script: variants interleaved (their
order rotating) so drift hits all of them alike, the GC off inside a timed block, an
A/A control that shows the method's own noise, and a header that says which code and
machine were measured. This module holds that once.
"""

from __future__ import annotations

import argparse
import contextlib
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import redis.utils

import redis_tenancy


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


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 or header[i] == "note" else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


@contextlib.contextmanager
def gc_off() -> Iterator[None]:
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
    """Result of rounds of subject / baseline / control blocks (the control is the
    baseline again: an A/A comparison that shows how noisy the method is here)."""

    ratios: list[float]  # baseline_time / subject_time, one per round
    control_ratios: list[float]  # baseline_time / control_time (A/A), one per round
    subject_us: float  # median per-operation time of the subject
    baseline_us: float  # median per-operation time of the baseline
    min_ratio: float  # fastest baseline block / fastest subject block

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


LABELS = ("subject", "baseline", "control")


def round_order(i: int) -> list[str]:
    """Rotate the three labels each round and reverse every other cycle, so each label
    takes each position equally often (position and drift effects cancel)."""
    shift = i % len(LABELS)
    order = list(LABELS[shift:] + LABELS[:shift])
    return order[::-1] if (i // len(LABELS)) % 2 else order


def paired_result(times: dict[str, list[int]], ops: int) -> Paired:
    baseline = times["baseline"]
    return Paired(
        ratios=[b / s for b, s in zip(baseline, times["subject"], strict=True)],
        control_ratios=[b / c for b, c in zip(baseline, times["control"], strict=True)],
        subject_us=statistics.median(times["subject"]) / ops / 1e3,
        baseline_us=statistics.median(baseline) / ops / 1e3,
        min_ratio=min(baseline) / min(times["subject"]),
    )


def paired_sync(
    block: Callable[[Any], int], subject: Any, baseline: Any, pairs: int, ops: int
) -> Paired:
    """``pairs`` rounds of ``block(subject)``, ``block(baseline)`` and ``block(baseline)``
    again (the control), in rotating order."""
    clients = {"subject": subject, "baseline": baseline, "control": baseline}
    block(subject)  # warm-up: connections, caches
    block(baseline)
    times: dict[str, list[int]] = {label: [] for label in LABELS}
    for i in range(pairs):
        for label in round_order(i):
            with gc_off():
                times[label].append(block(clients[label]))
    return paired_result(times, ops)


async def paired_async(
    block: Callable[[Any], Awaitable[int]], subject: Any, baseline: Any, pairs: int, ops: int
) -> Paired:
    """Async version of :func:`paired_sync`."""
    clients = {"subject": subject, "baseline": baseline, "control": baseline}
    await block(subject)
    await block(baseline)
    times: dict[str, list[int]] = {label: [] for label in LABELS}
    for i in range(pairs):
        for label in round_order(i):
            with gc_off():
                times[label].append(await block(clients[label]))
    return paired_result(times, ops)


def loadavg(label: str) -> str:
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


def arg_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every bench script takes: ``--quick`` and ``--check``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help="short run (noisier numbers)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    return parser


def header(title: str, quick: bool, server_version: str) -> list[str]:
    """Print what is measured on which machine and code; return it for the summary."""
    info = machine_info(server_version)
    print(f"redis-tenancy {title} benchmark", "(quick)" if quick else "(full)")
    print("\n".join(info))
    print(loadavg("load average at start"))
    return info


def summary(
    checks: list[Check], info: list[str], *, quick: bool, check: bool, started: float
) -> int:
    """Print the closing table of a bench script; its exit status under ``--check``."""
    print(f"\n== summary ({'quick' if quick else 'full'}, {time.monotonic() - started:.0f} s)")
    print("\n".join(info))
    print(loadavg("load average at end"))
    print(table(["metric", "measured", "target", "result", "note"], [c.row() for c in checks]))
    missed = [c.name for c in checks if c.target is not None and not c.passed]
    print("all targets met" if not missed else f"missed: {', '.join(missed)}")
    return 1 if check and missed else 0
