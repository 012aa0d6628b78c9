"""Drop-in, tenant-routed replacement for ``popoto.redis_db``.

Porting an application is one change per import: ``popoto.redis_db`` becomes
``redis_tenancy.redis_db``. The names and signatures are the same; what changes is
that every connection-level name resolves to the *active tenant* (chosen with
``with tenant(name):``) instead of one global connection, and that
``POPOTO_REDIS_DB`` is a proxy, so importing it before the connection is
(re)configured can never leave a module holding a stale client.

Configuration read at import (nothing connects until the first command):

- ``REDIS_URL``: the default tenant's URL (else ``redis://127.0.0.1:6379/0``);
- ``ENV``: the default tenant's name (else ``""``);
- ``REDIS_TENANCY_CONFIG``: optional TOML file of more tenants;
- ``REDIS_TENANCY_REQUIRE_TENANT=1``: strict mode;
- ``BEGINNING_OF_TIME``: Unix timestamp floor for time-series queries (default 0).
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import redis
import redis.asyncio
import redis.exceptions

from ._clients import is_cluster
from ._config import read_config
from ._context import TenantContext, TenantFactory, fast_paths, reusing
from ._errors import PopotoException, TenantConfigError, logger
from ._failover import TenantStatus
from ._router import Router
from ._steps import arun_steps, run_steps

__all__ = [
    "BEGINNING_OF_TIME",
    "ENCODING",
    "POPOTO_ASYNC_REDIS_DB",
    "POPOTO_REDIS_DB",
    "PopotoException",
    "async_check_connection",
    "async_scan_keys",
    "check_connection",
    "current_tenant",
    "default_router",
    "get_REDIS_DB",
    "get_async_redis_db",
    "print_redis_info",
    "register_failover_url",
    "scan_keys",
    "set_REDIS_DB_settings",
    "set_async_redis_db_settings",
    "tenant",
    "tenant_status",
]

ENCODING = "utf-8"


def _beginning_of_time() -> int:
    raw = os.environ.get("BEGINNING_OF_TIME", "")
    if not raw:
        return 0
    try:
        return int(float(raw))
    except ValueError:
        logger.warning("BEGINNING_OF_TIME=%r is not a Unix timestamp; using 0", raw[:40])
        return 0


def _make_default_router() -> Router:
    """The router of the module-level names, configured from the environment.

    A bad ``REDIS_URL`` fails here with an error naming the variable; a bad
    ``REDIS_TENANCY_CONFIG`` file with one naming the file, the tenant and the key.
    """
    strict = os.environ.get("REDIS_TENANCY_REQUIRE_TENANT", "").strip().lower()
    router = Router(require_tenant=strict in {"1", "true", "yes", "on"})
    path = os.environ.get("REDIS_TENANCY_CONFIG")
    if path:
        tenants = read_config(path)
        problem: TenantConfigError | None = None
        try:
            router.register_many(tenants)
        except TenantConfigError as exc:
            problem = exc
        if problem is not None:
            # Raised outside the except block: nothing of the first error's chain
            # rides along as __context__ (its message is kept, already redacted).
            raise TenantConfigError(f"{path}: {problem.message}")
    return router


#: Unix timestamp (seconds) used as a floor for time-series queries.
BEGINNING_OF_TIME: int = _beginning_of_time()

#: The router behind every module-level name here (also ``redis_tenancy.default_router``).
default_router: Router = _make_default_router()

#: Proxy to the active tenant's ``redis.Redis``; safe to import before configuring.
POPOTO_REDIS_DB: redis.Redis = default_router.redis

#: Proxy to the active tenant's ``redis.asyncio.Redis`` for the running event loop.
POPOTO_ASYNC_REDIS_DB: redis.asyncio.Redis = default_router.async_redis


def set_REDIS_DB_settings(env_partition_name: str | None = "", *args: Any, **kwargs: Any) -> None:
    """Register tenant ``env_partition_name`` or replace its connection.

    ``""``/``None`` names the default tenant, as in Popoto. ``args``/``kwargs`` go
    to ``redis.Redis`` (``url="redis://..."`` accepted) with 5 s socket timeouts by
    default. Everything is validated before anything changes; commands already
    running on the old connection finish there, later ones use the new one, and both
    the sync and the async side follow.

    Example::

        set_REDIS_DB_settings(host="localhost", port=6379, db=15)   # default tenant
        set_REDIS_DB_settings("acme", url="redis://acme-redis:6379/0")

    Raises:
        TenantConfigError: bad URL, unknown keyword or wrong type (registry unchanged).
    """
    default_router.register(env_partition_name, *args, **kwargs)
    logger.debug("Redis connection reset.")


def get_REDIS_DB() -> redis.Redis:
    """Return the active tenant's concrete ``redis.Redis`` client."""
    return default_router.client()


async def get_async_redis_db() -> redis.asyncio.Redis:
    """Return the active tenant's ``redis.asyncio.Redis`` for the running event loop.

    Clients are kept per (tenant, event loop) and closed when their loop shuts down,
    so repeated ``asyncio.run()`` calls and loops in several threads all work.
    """
    return default_router.async_client()


async def set_async_redis_db_settings(
    env_partition_name: str | None = "", *args: Any, **kwargs: Any
) -> None:
    """Override the async side of tenant ``env_partition_name`` (registering it if new).

    ``args``/``kwargs`` go to ``redis.asyncio.Redis``. Identical settings change
    nothing; otherwise the tenant's previous clients stop taking new commands and their
    idle connections close at once, each on its own event loop.
    """
    default_router.register_async(env_partition_name, *args, **kwargs)
    logger.debug("Async Redis connection reset.")


def register_failover_url(env_partition_name: str | None, url: str) -> None:
    """Add a failover URL to tenant ``env_partition_name`` (``""``: the default tenant).

    Endpoints are tried in the order they were added, after the primary. Takes effect
    for the next connection the tenant opens; nothing running is interrupted.

    Example::

        set_REDIS_DB_settings("acme", url="redis://primary:6379/0")
        register_failover_url("acme", "redis://backup:6379/0")
    """
    default_router.add_failover(env_partition_name, url)


def tenant_status(env_partition_name: str | None = None) -> TenantStatus:
    """Endpoints and circuit states of a tenant (default: the active one); no I/O."""
    return default_router.status(env_partition_name)


def check_connection() -> bool:
    """``True`` if the active tenant's server answers PING, else ``False``.

    For a Cluster tenant every node is pinged and each one that does not answer is
    logged; the answer is ``True`` only if all do, and ``False`` when no node of the
    cluster can be reached at all.
    """
    try:
        client = get_REDIS_DB()
    except _UNREACHABLE as exc:  # a cluster client connects to learn its nodes
        return _unreachable(exc)
    return run_steps(_check_plan(_targets(client)), lambda node: _ping(client, node))


async def async_check_connection() -> bool:
    """Async version of :func:`check_connection`."""
    client = await get_async_redis_db()
    try:
        targets = await _async_targets(client)
    except _UNREACHABLE as exc:
        return _unreachable(exc)
    return await arun_steps(_check_plan(targets), lambda node: _aping(client, node))


def scan_keys(pattern: str, count: int = 1000) -> list[Any]:
    """All keys of the active tenant matching ``pattern``, by cursor SCAN (never KEYS).

    For a Cluster tenant each primary is scanned once, so every key appears once.
    """
    client = get_REDIS_DB()
    plan = _scan_plan(_targets(client, primaries=True), pattern, count)
    return run_steps(plan, lambda step: client.scan(**step[1], **_on(step[0])))


async def async_scan_keys(pattern: str, count: int = 1000) -> list[Any]:
    """Async version of :func:`scan_keys`."""
    client = await get_async_redis_db()
    plan = _scan_plan(await _async_targets(client, primaries=True), pattern, count)
    return await arun_steps(plan, lambda step: client.scan(**step[1], **_on(step[0])))


def print_redis_info() -> None:
    """Log the active tenant's INFO and its used-memory percentage (one INFO call).

    For a Cluster tenant: one INFO per node, each logged with its node's name.
    """
    client = get_REDIS_DB()
    run_steps(_info_plan(_targets(client)), lambda node: client.info(**_on(node)))


# -- the helpers' decisions, once; the drivers above only do the I/O ------------------
#
# Each plan is a generator that yields what to ask next (a cluster node, or None for
# a standalone client) and is sent the answer, as httpx's auth flows are: the sync
# and async helpers differ only in whether they await the call.

#: What getting a client or its nodes raises when no server can be reached.
_UNREACHABLE = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)


def _targets(client: Any, primaries: bool = False) -> list[Any]:
    """The nodes to ask one by one: a cluster's (primaries only for SCAN), else [None]."""
    if not is_cluster(client):
        return [None]
    return list(client.get_primaries() if primaries else client.get_nodes())


async def _async_targets(client: Any, primaries: bool = False) -> list[Any]:
    if is_cluster(client):
        await client.initialize()  # learns the nodes; a no-op once done
    return _targets(client, primaries)


def _on(node: Any) -> dict[str, Any]:
    """The keyword that sends a command to one cluster node (none for a plain client)."""
    return {} if node is None else {"target_nodes": node}


def _unreachable(exc: BaseException) -> bool:
    logger.warning("no node of the active tenant's cluster can be reached: %s", exc)
    return False


def _ping(client: Any, node: Any) -> BaseException | None:
    try:
        client.ping(**_on(node))
    except Exception as exc:
        return exc
    return None


async def _aping(client: Any, node: Any) -> BaseException | None:
    try:
        await client.ping(**_on(node))
    except Exception as exc:
        return exc
    return None


def _check_plan(nodes: list[Any]) -> Generator[Any, BaseException | None, bool]:
    """PING each node; healthy only if every one answers; log each that does not."""
    healthy = True
    for node in nodes:
        error = yield node
        if error is not None:
            if node is not None:
                logger.warning("cluster node %s does not answer PING: %s", node.name, error)
            healthy = False
    return healthy


def _scan_plan(
    nodes: list[Any], pattern: str, count: int
) -> Generator[tuple[Any, dict[str, Any]], Any, list[Any]]:
    """SCAN each node from cursor 0 until its cursor comes back to 0."""
    results: list[Any] = []
    for node in nodes:
        cursor = 0
        while True:
            reply = yield node, {"cursor": cursor, "match": pattern, "count": count}
            if node is not None:  # a cluster answers {node name: cursor}, keys
                cursors, keys = reply
                cursor = cursors[node.name]
            else:
                cursor, keys = reply
            results.extend(keys)
            if cursor == 0:
                break
    return results


def _info_plan(nodes: list[Any]) -> Generator[Any, Any, None]:
    """INFO each node and log it, named after its node in a cluster."""
    for node in nodes:
        info = yield node
        if node is not None and node.name in info:  # some cluster replies are keyed
            info = info[node.name]
        _log_info(info, "" if node is None else f"node {node.name}: ")


def _log_info(info: Any, prefix: str) -> None:
    logger.info("%s%s", prefix, info)
    used_memory, maxmemory = int(info["used_memory"]), int(info["maxmemory"])
    if maxmemory > 0:
        logger.info(
            "%sRedis currently consumes %s%% out of %s",
            prefix,
            round(100 * used_memory / maxmemory, 2),
            info.get("maxmemory_human", maxmemory),
        )


_enter, _exit = fast_paths(default_router)


class _DefaultTenant(TenantContext):
    """Make ``name`` the active tenant of the default router for a block or function.

    ``None``/``""`` select the default tenant. An unknown name raises
    ``UnknownTenantError`` when the block is entered (or the decorated function is
    called), never here. One object may be shared: ``ACME = tenant("acme")`` at module
    level is safe to enter from any number of threads and tasks at once.

    On a generator or async-generator function, the decorator runs every resumption as
    ``name`` and leaves the consumer's tenant alone between them. A bare
    ``with tenant(...)`` around a ``yield`` does not: the block stays open in the
    consumer while the generator is suspended (that is how context variables work).

    Example::

        with tenant("acme"):
            POPOTO_REDIS_DB.set("k", "v")

        @tenant("acme")
        def rows() -> Iterator[bytes]:
            yield from POPOTO_REDIS_DB.scan_iter("row:*")

    Raises:
        InvalidTenantNameError: when entered or used as a decorator, if ``name`` is
            neither a ``str`` nor ``None``.
    """

    __slots__ = ()
    # Shadows the base slot: the router is the same for every instance.
    _router = default_router
    __enter__ = _enter
    __exit__ = _exit

    def __init__(self, name: str | None = None) -> None:
        # Checked where it is used (entering, decorating), not here: construction is
        # on the path of every ``with tenant(...)`` and a type check costs ~5% of it.
        self.name = name
        self._token = None


#: ``tenant(name)`` hands out a free object of the same name again (see
#: :func:`~redis_tenancy._context.reusing`); the objects are ``TenantContext``s.
tenant: TenantFactory = reusing(_DefaultTenant, default_router)


def current_tenant() -> str:
    """The name of the default router's active tenant."""
    return default_router.current()
