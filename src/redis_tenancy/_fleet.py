"""The tenants the command line acts on, and checking them all in parallel with deadlines.

A :class:`Fleet` is built from the tenants file (``--config`` or
``REDIS_TENANCY_CONFIG``) into a :class:`~redis_tenancy.Router` of the command's own,
so the command sees exactly the file's tenants, validated the same way an app's
router validates them, and its connections carry the command's timeouts. The default
tenant takes part only when ``REDIS_URL`` names it.

:func:`probe_all` PINGs tenants from a pool of daemon threads. Every tenant gets its
own deadline, counted from the moment its check starts; one that misses it is
reported as ``timeout`` and its thread is abandoned (a fresh one takes its place),
so one hung server can neither stall the others nor keep a readiness probe from
answering in time.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import PopotoException, Router, TenantConfigError
from ._config import read_config
from ._redact import redact_text

__all__ = ["Fleet", "Probe", "describe_error", "load_fleet", "probe_all", "shown_name"]


def shown_name(name: str) -> str:
    """How a tenant's name is printed: the unnamed default tenant as ``(default)``."""
    return name or "(default)"


@dataclass
class Fleet:
    """The tenants of one command run.

    Attributes:
        source: where the tenants came from (the file's path, or ``REDIS_URL``).
        tables: each tenant's settings as the file wrote them (not yet redacted).
        router: a router holding exactly these tenants.
        names: the tenants to act on, in file order.
    """

    source: str
    tables: dict[str, dict[str, Any]]
    router: Router
    names: list[str] = field(default_factory=list)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.router.close()

    def require(self, name: str) -> str:
        """``name`` if it is one of the fleet's tenants, else a clear error."""
        if name in self.names:
            return name
        listed = ", ".join(shown_name(n) for n in self.names[:8])
        more = f" and {len(self.names) - 8} more" if len(self.names) > 8 else ""
        raise TenantConfigError(
            f"unknown tenant {name!r}: {self.source} has {listed or 'none'}{more}"
        )


def load_fleet(path: str | None, *, timeout: float | None = None) -> Fleet:
    """Read the tenants file (or ``REDIS_URL`` alone) into a fresh router.

    ``timeout`` caps every socket connect and read of the fleet's connections.

    Raises:
        TenantConfigError: no tenants configured, or a bad file (nothing registered).
    """
    path = path or os.environ.get("REDIS_TENANCY_CONFIG") or None
    default_url = os.environ.get("REDIS_URL") or None
    if path is None and default_url is None:
        raise TenantConfigError(
            "no tenants configured: pass --config tenants.toml or set REDIS_TENANCY_CONFIG"
        )
    tables = read_config(path) if path is not None else {}
    router = Router(default_url=default_url)
    limits = (
        {} if timeout is None else {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    )
    try:
        router.register_many({name: {**table, **limits} for name, table in tables.items()})
        if default_url is not None and limits:
            router.register(router.default_name, url=default_url, **limits)
    except TenantConfigError as exc:
        raise TenantConfigError(f"{path}: {exc.message}") from None
    names = list(tables)
    if default_url is not None and router.default_name not in tables:
        names.insert(0, router.default_name)
    return Fleet(path or "REDIS_URL", tables, router, names)


def describe_error(exc: BaseException, secrets: Mapping[str, Any] | None = None) -> str:
    """``Type: message`` on one line, with anything secret-looking masked.

    The library's own errors are built from redacted values already; anything else
    (redis-py's, the socket's) goes through :func:`redact_text`.
    """
    text = exc.message if isinstance(exc, PopotoException) else redact_text(str(exc), secrets)
    return f"{type(exc).__name__}: {' '.join(text.split()) or 'no details'}"


@dataclass(frozen=True, slots=True)
class Probe:
    """The outcome of checking one tenant.

    Attributes:
        tenant: the tenant's name.
        state: ``ok``, ``failed`` or ``timeout``.
        endpoint: the endpoint (redacted) that answered, else the one configured.
        latency: seconds from the start of the check to PING's answer (it includes
            connecting, when the check opened the connection); ``None`` unless ok.
        error: what went wrong (redacted), for ``failed`` and ``timeout``.
    """

    tenant: str
    state: str
    endpoint: str
    latency: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == "ok"


def ping(router: Router, name: str) -> Probe:
    """PING one tenant through ``router`` (following its failover endpoints)."""
    settings = router.settings(name)
    start = time.monotonic()
    try:
        router.client(name).ping()
    except Exception as exc:
        return Probe(
            name, "failed", settings.endpoint, error=describe_error(exc, settings.redis_kwargs)
        )
    latency = time.monotonic() - start
    active = router.status(name).active
    return Probe(name, "ok", active or settings.endpoint, latency)


def probe_all(
    names: Sequence[str],
    check: Callable[[str], Probe],
    *,
    timeout: float,
    concurrency: int,
    on_result: Callable[[Probe], None] = lambda probe: None,
    endpoint_of: Callable[[str], str] = lambda name: "",
) -> list[Probe]:
    """Run ``check`` for every name on up to ``concurrency`` threads, each with ``timeout``.

    Returns one probe per name, in the order of ``names``; ``on_result`` is called
    (on this thread) as each one is known.
    """
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for name in names:
        todo.put(name)
    done: queue.SimpleQueue[tuple[str, Probe]] = queue.SimpleQueue()
    started: dict[str, float] = {}
    lock = threading.Lock()

    def work() -> None:
        while True:
            try:
                name = todo.get_nowait()
            except queue.Empty:
                return
            with lock:
                started[name] = time.monotonic()
            done.put((name, check(name)))

    def spawn() -> None:
        threading.Thread(target=work, name="redis-tenancy-check", daemon=True).start()

    for _ in range(min(concurrency, len(names))):
        spawn()
    results: dict[str, Probe] = {}
    while len(results) < len(names):
        now = time.monotonic()
        with lock:
            running = {n: t for n, t in started.items() if n not in results}
        expired = [n for n, began in running.items() if now - began >= timeout]
        for name in expired:
            probe = Probe(name, "timeout", endpoint_of(name), error=f"no answer in {timeout:g}s")
            results[name] = probe
            on_result(probe)
            spawn()  # its thread stays stuck: abandon it, keep the pool at strength
        if expired:
            continue
        deadline = min(running.values(), default=now) + timeout
        try:
            name, probe = done.get(timeout=max(0.001, deadline - now))
        except queue.Empty:
            continue
        if name not in results:  # an answer after its deadline is dropped
            results[name] = probe
            on_result(probe)
    return [results[name] for name in names]
