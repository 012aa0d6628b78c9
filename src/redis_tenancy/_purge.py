"""Purge: count or delete every key of a namespace, one SCAN cursor per primary.

Popoto documents the tenant prefix as the way "to mark keys in redis db, so they can be
separated and deleted"; this module does the deleting, on a server that other tenants
share. Four rules make that safe:

- the prefix is glob-escaped in ``SCAN MATCH`` (:mod:`redis_tenancy._glob`), so ``acm?:``
  never matches ``acmX:``;
- every name SCAN returns is checked client-side with ``startswith`` before it can join
  an ``UNLINK`` batch, so even a server whose MATCH over-matched could not make us delete
  a name outside the prefix (such names are counted in :attr:`PurgeResult.foreign`);
- a rate limit (keys per second and/or a pause) spaces the batches out, and ``UNLINK``
  frees values in the background, so a big tenant's purge does not stall the others;
- a tenant without a namespace may only be purged when its database is its own
  (:func:`check_own_database`), and never db 0 without ``force=True``.

The decisions (escaping, checking, batching, grouping by hash slot, the next pause
from an injected clock, progress) live in :func:`purge_flow`, a generator that yields
the I/O it needs (:class:`Scan`, :class:`Unlink`, :class:`Sleep`) and receives the
replies. :func:`purge` and :func:`async_purge` are the thin drivers that do that I/O
with a sync or asyncio client, standalone or Cluster.

Example::

    result = purge(raw_client, "acme:", dry_run=True)
    print(f"{result.matched} keys")
    purge(raw_client, "acme:", policy=PurgePolicy(max_keys_per_second=50_000))

The client must be a plain (un-namespaced) redis-py client: the names it returns are the
server's real names, and the prefix is matched against them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.client import NEVER_DECODE
from redis.crc import key_slot

from ._errors import PopotoException, TenantConfigError
from ._glob import prefix_pattern

__all__ = [
    "DEFAULT_PURGE_POLICY",
    "PurgePolicy",
    "PurgeRefusedError",
    "PurgeResult",
    "Scan",
    "Sleep",
    "Unlink",
    "async_purge",
    "check_own_database",
    "next_pause",
    "purge",
    "purge_flow",
]

Key = bytes | str
N = TypeVar("N")
ProgressCallback = Callable[["PurgeResult"], object]
Clock = Callable[[], float]
SyncClient = redis.Redis | redis.cluster.RedisCluster
AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster


class PurgeRefusedError(PopotoException):
    """A purge that could delete keys that are not the tenant's, refused before any I/O.

    Raised for a tenant without a namespace whose server and database another
    registered tenant uses too, for db 0 without ``force=True``, and for an empty
    prefix (a whole database) unless the caller said so with ``whole_db=True``.
    """


@dataclass(frozen=True, slots=True)
class PurgePolicy:
    """How hard a purge may push the server.

    Attributes:
        scan_count: ``SCAN ... COUNT``: buckets the server visits per call, matching
            or not. Large means few round trips, but each call blocks the server for
            about 0.3-1 µs per visited name (docs/PURGE.md): 2 000 keeps a call near
            a millisecond, far below a 10 ms slowlog threshold.
        batch_size: names per ``UNLINK`` (a Cluster batch is one ``UNLINK`` per hash
            slot, pipelined per node).
        max_keys_per_second: deletions per second, averaged from the start; ``None``
            for no limit. A dry run deletes nothing and is never slowed down.
        pause: seconds to wait after every ``UNLINK`` batch, on top of the rate limit.
    """

    scan_count: int = 2_000
    batch_size: int = 1_000
    max_keys_per_second: float | None = None
    pause: float = 0.0

    def __post_init__(self) -> None:
        for name in ("scan_count", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TenantConfigError(f"PurgePolicy.{name} must be an int >= 1, got {value!r}")
        rate = self.max_keys_per_second
        if rate is not None and not _positive_finite(rate):
            raise TenantConfigError(
                f"PurgePolicy.max_keys_per_second must be a number > 0 or None, got {rate!r}"
            )
        if not (_positive_finite(self.pause) or self.pause == 0):
            raise TenantConfigError(
                f"PurgePolicy.pause must be a number of seconds >= 0, got {self.pause!r}"
            )


def _positive_finite(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


#: What :func:`purge` uses when no policy is given: no rate limit, big SCAN calls.
DEFAULT_PURGE_POLICY = PurgePolicy()


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """Totals of a purge: the final result, and each progress report so far.

    Attributes:
        prefix: the prefix purged (``""`` for a whole database).
        dry_run: ``True`` when nothing was deleted on purpose.
        scanned: names SCAN returned (after the server's MATCH).
        matched: of those, names that start with the prefix. SCAN may return a name
            twice while the server rehashes, so this can exceed the distinct count.
        deleted: names ``UNLINK`` removed (a name that expired or was deleted by
            someone else between SCAN and UNLINK is matched but not deleted).
        foreign: names SCAN returned that do not start with the prefix; never deleted.
            Always 0 unless the server's MATCH is wrong.
        seconds: time since the purge started (monotonic clock).
        done: ``False`` in progress reports, ``True`` in the final result.
    """

    prefix: str
    dry_run: bool
    scanned: int = 0
    matched: int = 0
    deleted: int = 0
    foreign: int = 0
    seconds: float = 0.0
    done: bool = False


# ------------------------------------------------------------------ I/O the flow asks for


@dataclass(frozen=True, slots=True)
class Scan(Generic[N]):
    """Run ``SCAN cursor MATCH match COUNT count`` on ``node``; reply ``(cursor, names)``."""

    node: N
    cursor: int
    match: str
    count: int


@dataclass(frozen=True, slots=True)
class Unlink(Generic[N]):
    """Run ``UNLINK *group`` for each group (one hash slot each on a Cluster), on the
    node the names live on; reply the total number of names removed."""

    node: N
    groups: tuple[tuple[Key, ...], ...]


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` (the rate limit); reply ``None``."""

    seconds: float


Action = Scan[N] | Unlink[N] | Sleep


# --------------------------------------------------------------------------- decisions


@dataclass(slots=True)
class _Totals:
    prefix: str
    dry_run: bool
    started: float
    scanned: int = 0
    matched: int = 0
    deleted: int = 0
    foreign: int = 0

    def snapshot(self, now: float, done: bool = False) -> PurgeResult:
        return PurgeResult(
            prefix=self.prefix,
            dry_run=self.dry_run,
            scanned=self.scanned,
            matched=self.matched,
            deleted=self.deleted,
            foreign=self.foreign,
            seconds=now - self.started,
            done=done,
        )


@dataclass(frozen=True, slots=True)
class _Prefix:
    """The prefix as the server's names will come back: str or bytes."""

    text: str
    raw: bytes = field(init=False)
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw", self.text.encode(self.encoding))

    def inside(self, names: Sequence[Key]) -> list[Key]:
        """The names that really start with the prefix (the defence in depth)."""
        text, raw = self.text, self.raw
        return [n for n in names if n.startswith(raw if isinstance(n, bytes) else text)]  # type: ignore[arg-type]

    def slot_groups(self, names: Sequence[Key]) -> tuple[tuple[Key, ...], ...]:
        """``names`` grouped by hash slot, order kept: a Cluster UNLINK is one slot."""
        groups: dict[int, list[Key]] = {}
        for name in names:
            raw = name if isinstance(name, bytes) else name.encode(self.encoding)
            groups.setdefault(key_slot(raw), []).append(name)
        return tuple(tuple(group) for group in groups.values())


def next_pause(policy: PurgePolicy, started: float, now: float, deleted: int) -> float:
    """Seconds to wait before the next UNLINK so the average stays within the policy.

    The rate is averaged from ``started``: a batch that took longer than its share
    earns no wait, and a slow stretch is not "made up" by a burst beyond the rate.
    """
    wait = policy.pause
    rate = policy.max_keys_per_second
    if rate is not None:
        wait = max(wait, started + deleted / rate - now)
    return max(wait, 0.0)


def purge_flow(
    prefix: str,
    nodes: Sequence[N],
    *,
    dry_run: bool,
    policy: PurgePolicy = DEFAULT_PURGE_POLICY,
    clock: Clock = time.monotonic,
    progress: ProgressCallback | None = None,
    encoding: str = "utf-8",
    by_slot: bool = False,
) -> Generator[Action[N], Any, PurgeResult]:
    """The purge, I/O-free: yields :class:`Scan`/:class:`Unlink`/:class:`Sleep`, gets replies.

    One cursor per node, in order. Each SCAN reply is checked name by name against the
    prefix; names inside join the node's pending batch, which is unlinked whenever it
    reaches ``policy.batch_size`` and when the node's cursor ends. After each UNLINK the
    rate limit may ask for a :class:`Sleep`. ``progress`` (if given) receives the
    running :class:`PurgeResult` after every SCAN and UNLINK, and the final one.

    Parameters:
        prefix: the namespace's prefix as stored on the server (``""``: everything).
        nodes: opaque handles, echoed in the actions (``[None]`` for one server).
        dry_run: count only; never yields :class:`Unlink` or :class:`Sleep`.
        clock: a monotonic clock (injected so tests can fake time).
        encoding: how the client encodes str arguments; bytes names are compared
            with the prefix encoded this way.
        by_slot: split each batch into one group per hash slot (Cluster).
    """
    wanted = _Prefix(prefix, encoding)
    match = prefix_pattern(prefix)
    totals = _Totals(prefix, dry_run, clock())

    def report() -> None:
        if progress is not None:
            progress(totals.snapshot(clock()))

    for node in nodes:
        cursor = 0
        pending: list[Key] = []
        while True:
            cursor, names = yield Scan(node, cursor, match, policy.scan_count)
            inside = wanted.inside(names)
            totals.scanned += len(names)
            totals.matched += len(inside)
            totals.foreign += len(names) - len(inside)
            report()
            if not dry_run:
                pending.extend(inside)
                while len(pending) >= policy.batch_size or (cursor == 0 and pending):
                    batch = pending[: policy.batch_size]
                    del pending[: policy.batch_size]
                    groups = wanted.slot_groups(batch) if by_slot else (tuple(batch),)
                    totals.deleted += int((yield Unlink(node, groups)))
                    report()
                    wait = next_pause(policy, totals.started, clock(), totals.deleted)
                    if wait > 0:
                        yield Sleep(wait)
            if cursor == 0:
                break
    result = totals.snapshot(clock(), done=True)
    if progress is not None:
        progress(result)
    return result


def _check_prefix(prefix: object, whole_db: bool) -> str:
    if not isinstance(prefix, str):
        raise TenantConfigError(
            f"a purge prefix must be a str, got {type(prefix).__name__}; "
            "decode a bytes prefix with the client's encoding first"
        )
    if prefix == "" and not whole_db:
        raise PurgeRefusedError(
            "an empty purge prefix means every key of the database: "
            "pass whole_db=True if that is what you mean (after check_own_database())"
        )
    return prefix


# ---------------------------------------------------------- who may purge a whole db

Address = tuple[str, int, int]
"""``(host, port, db)`` of a tenant's server; a Cluster tenant is db 0."""


def _host_key(host: str) -> str:
    """One spelling per host: loopback names all mean the same machine (so two of
    them are treated as the same server: the conservative answer)."""
    text = host.strip().strip("[]").lower().rstrip(".")
    if text == "localhost":
        return "loopback"
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text
    return "loopback" if address.is_loopback else address.compressed


def check_own_database(
    name: str, address: Address, others: Iterable[Address], *, force: bool = False
) -> None:
    """Refuse to purge a tenant without a namespace unless its database is its own.

    Purging such a tenant deletes every key of its database, so it is allowed only when
    no other registered tenant (``others``: their ``(host, port, db)``) uses the same
    server and database, and db 0 (the only db of a Cluster, and where shared and
    managed servers put everything) only with ``force=True``. Host spellings of the
    loopback (``localhost``, ``127.0.0.1``, ``::1``) count as one host; names that
    resolve to the same server through DNS are not detected (no I/O here).

    Raises:
        PurgeRefusedError: naming the tenant, its address and the reason.
    """
    host, port, db = address
    where = f"{host}:{port}/{db}"
    mine = (_host_key(host), port, db)
    sharing = sum(1 for h, p, d in others if (_host_key(h), p, d) == mine)
    if sharing:
        tenants = (
            "another registered tenant uses"
            if sharing == 1
            else (f"{sharing} other registered tenants use")
        )
        raise PurgeRefusedError(
            f"refusing to purge tenant {name!r}: it has no namespace and {tenants} "
            f"its database {where}, so a purge would delete their keys too; "
            "give the tenant a namespace or a database of its own"
        )
    if db == 0 and not force:
        raise PurgeRefusedError(
            f"refusing to purge tenant {name!r}: it has no namespace and its database is "
            f"db 0 of {where}, which every client uses unless told otherwise; "
            "pass force=True if every key of that database is the tenant's"
        )


# ------------------------------------------------------------------------------ drivers


def _cursor(reply: Any) -> int:
    # RedisCluster answers a node-targeted SCAN with {node_name: cursor}.
    if isinstance(reply, dict):
        (reply,) = reply.values()
    return int(reply)


def _start(
    client: Any,
    cluster: bool,
    prefix: str,
    dry_run: bool,
    policy: PurgePolicy,
    progress: ProgressCallback | None,
    whole_db: bool,
) -> Generator[Action[Any], Any, PurgeResult]:
    """The flow for ``client``: every primary of a Cluster (in slot-map order), else
    the one server (node ``None``)."""
    return purge_flow(
        _check_prefix(prefix, whole_db),
        list(client.get_primaries()) if cluster else [None],
        dry_run=dry_run,
        policy=policy,
        clock=time.monotonic,
        progress=progress,
        encoding=str(client.get_encoder().encoding),
        by_slot=cluster,
    )


def _check_client(client: object, plain: type, cluster: type, function: str) -> object:
    """A purge needs the real client: a proxy or a namespaced client would route or
    rewrite the names, and an async client given to the sync driver would fail obscurely."""
    if not isinstance(client, plain | cluster):
        raise TenantConfigError(
            f"{function}() needs a {plain.__module__}.{plain.__qualname__} or "
            f"{cluster.__module__}.{cluster.__qualname__}, got {type(client).__qualname__}"
        )
    return client


def _scan_args(action: Scan[Any]) -> dict[str, Any]:
    # Names come back as bytes even from a decode_responses=True client: a name that is
    # not valid in the client's encoding must still be purged, not crash the decoder.
    args: dict[str, Any] = {
        "cursor": action.cursor,
        "match": action.match,
        "count": action.count,
        NEVER_DECODE: [],
    }
    if action.node is not None:
        args["target_nodes"] = action.node
    return args


def purge(
    client: SyncClient,
    prefix: str,
    *,
    dry_run: bool = False,
    policy: PurgePolicy = DEFAULT_PURGE_POLICY,
    progress: ProgressCallback | None = None,
    whole_db: bool = False,
) -> PurgeResult:
    """Count (``dry_run=True``) or delete every key whose name starts with ``prefix``.

    ``client`` is a plain ``redis.Redis`` or ``redis.cluster.RedisCluster`` (every
    primary is scanned with its own cursor), with or without ``decode_responses``:
    names are read as bytes either way, so names the client could not decode are
    purged too.
    ``prefix=""`` purges the whole database and needs ``whole_db=True``. ``progress``
    receives the running totals after every round trip. See :func:`purge_flow` for
    the steps and :class:`PurgeResult` for what comes back.

    Example::

        purge(redis.Redis(), "acme:", progress=lambda r: print(r.deleted, end="\\r"))
    """
    raw: Any = _check_client(client, redis.Redis, redis.cluster.RedisCluster, "purge")
    cluster = isinstance(client, redis.cluster.RedisCluster)
    flow = _start(raw, cluster, prefix, dry_run, policy, progress, whole_db)
    reply: Any = None
    while True:
        try:
            action = flow.send(reply)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        if isinstance(action, Scan):
            cursor, names = raw.scan(**_scan_args(action))
            reply = (_cursor(cursor), names)
        elif isinstance(action, Unlink) and len(action.groups) == 1:
            reply = raw.unlink(*action.groups[0])
        elif isinstance(action, Unlink):
            pipe = raw.pipeline()
            for group in action.groups:
                pipe.execute_command("UNLINK", *group)  # pipe.unlink takes one name
            reply = sum(pipe.execute())
        else:
            time.sleep(action.seconds)
            reply = None


async def async_purge(
    client: AsyncClient,
    prefix: str,
    *,
    dry_run: bool = False,
    policy: PurgePolicy = DEFAULT_PURGE_POLICY,
    progress: ProgressCallback | None = None,
    whole_db: bool = False,
) -> PurgeResult:
    """Async version of :func:`purge` for ``redis.asyncio.Redis`` / ``RedisCluster``.

    ``progress`` is called (not awaited) from the event loop.
    """
    raw: Any = _check_client(
        client, redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster, "async_purge"
    )
    cluster = isinstance(client, redis.asyncio.cluster.RedisCluster)
    if cluster:
        await raw.initialize()  # a fresh async cluster client knows no nodes yet
    flow = _start(raw, cluster, prefix, dry_run, policy, progress, whole_db)
    reply: Any = None
    while True:
        try:
            action = flow.send(reply)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        if isinstance(action, Scan):
            cursor, names = await raw.scan(**_scan_args(action))
            reply = (_cursor(cursor), names)
        elif isinstance(action, Unlink) and len(action.groups) == 1:
            reply = await raw.unlink(*action.groups[0])
        elif isinstance(action, Unlink):
            pipe = raw.pipeline()
            for group in action.groups:
                pipe.execute_command("UNLINK", *group)  # pipe.unlink takes one name
            reply = sum(await pipe.execute())
        else:
            await asyncio.sleep(action.seconds)
            reply = None
