"""Purge: the I/O-free flow with a fake clock, then the drivers on real servers.

The real-server tests purge a tenant of 20 000 keys (prefix ``acm?:``, a few of them
hashes, lists and names that are not UTF-8) from a server that also holds 300 000
foreign keys, 100 000 of which an unescaped ``MATCH acm?:*`` would take (``acmX:``),
on a standalone server and on a 3-primary Cluster, sync and async. The foreign keys
are loaded once per module; each test reloads the tenant's keys and first checks that
the foreign ones are all there, so a test that deleted one cannot hide it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.crc import key_slot

from redis_tenancy import PopotoException, TenantConfigError, _purge
from redis_tenancy._embedded import RedisServer
from redis_tenancy._glob import glob_escape, prefix_pattern
from redis_tenancy._purge import (
    PurgePolicy,
    PurgeRefusedError,
    PurgeResult,
    Scan,
    Sleep,
    Unlink,
    async_purge,
    check_own_database,
    purge,
    purge_flow,
)

from .conftest import Servers, direct
from .topologies import Cluster, start_cluster

PREFIX = "acm?:"
TENANT_KEYS = 20_000
FOREIGN_KEYS = 300_000

# --------------------------------------------------------------------- I/O-free flow


@dataclass
class FakeClock:
    """Time that moves only when told: by the UNLINKs' cost and by the flow's sleeps."""

    now: float = 1000.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def drive(
    flow: Any,
    scans: dict[Any, list[tuple[int, list[Any]]]],
    clock: FakeClock | None = None,
    unlink_cost: float = 0.0,
) -> tuple[PurgeResult, list[Any]]:
    """Run ``flow`` against scripted SCAN replies (per node); UNLINK removes everything
    it is given. Returns the result and every action the flow asked for."""
    actions: list[Any] = []
    reply: Any = None
    while True:
        try:
            action = flow.send(reply)
        except StopIteration as stop:
            return stop.value, actions
        actions.append(action)
        if isinstance(action, Scan):
            reply = scans[action.node].pop(0)
        elif isinstance(action, Unlink):
            reply = sum(len(group) for group in action.groups)
            if clock is not None:
                clock.now += unlink_cost
        else:
            assert clock is not None
            clock.sleep(action.seconds)
            reply = None


def unlinked(actions: list[Any]) -> list[Any]:
    return [name for a in actions if isinstance(a, Unlink) for g in a.groups for name in g]


@pytest.mark.parametrize(
    ("prefix", "escaped"),
    [
        ("acme:", "acme:"),
        ("acm?:", "acm\\?:"),
        ("a[b]*:", "a\\[b\\]\\*:"),
        ("back\\slash:", "back\\\\slash:"),
        ("{t}:", "{t}:"),
        ("^-!:", "^-!:"),
    ],
)
def test_glob_escape_escapes_exactly_the_special_characters(prefix: str, escaped: str) -> None:
    assert glob_escape(prefix) == escaped
    assert prefix_pattern(prefix) == escaped + "*"


def test_purge_flow_sends_the_escaped_match_and_policy_count() -> None:
    flow = purge_flow("a[b]*:", [None], dry_run=True, policy=PurgePolicy(scan_count=123))
    first = next(flow)
    assert first == Scan(None, 0, "a\\[b\\]\\*:*", 123)


@pytest.mark.parametrize("kind", ["str", "bytes"])
def test_purge_flow_never_unlinks_a_name_outside_the_prefix(kind: str) -> None:
    def names(*texts: str) -> list[Any]:
        return [t.encode() for t in texts] if kind == "bytes" else list(texts)

    # What a server whose MATCH over-matched (or ignored the escape) could answer.
    scans = {
        None: [
            (7, names("acm?:1", "acmX:1", "acm?:2", "xacm?:3")),
            (0, names("ACM?:4", "acm?5", "acm?:6", "acm:7")),
        ]
    }
    result, actions = drive(purge_flow("acm?:", [None], dry_run=False), scans)
    assert unlinked(actions) == names("acm?:1", "acm?:2", "acm?:6")
    assert (result.scanned, result.matched, result.deleted, result.foreign) == (8, 3, 3, 5)


def test_purge_flow_compares_bytes_with_the_prefix_in_the_clients_encoding() -> None:
    prefix = "tenant-é:"
    name = prefix.encode("latin-1") + b"\xff"
    scans = {None: [(0, [name, prefix.encode("utf-8") + b"x"])]}
    _, actions = drive(purge_flow(prefix, [None], dry_run=False, encoding="latin-1"), scans)
    assert unlinked(actions) == [name]


def test_purge_flow_batches_across_scans_and_flushes_at_the_end_of_each_cursor() -> None:
    scans = {
        "n1": [(5, ["p:1", "p:2"]), (6, ["p:3", "p:4", "p:5", "p:6"]), (0, ["p:7"])],
        "n2": [(0, ["p:8"])],
    }
    policy = PurgePolicy(batch_size=3)
    result, actions = drive(purge_flow("p:", ["n1", "n2"], dry_run=False, policy=policy), scans)
    batches = [(a.node, [n for g in a.groups for n in g]) for a in actions if isinstance(a, Unlink)]
    assert batches == [
        ("n1", ["p:1", "p:2", "p:3"]),
        ("n1", ["p:4", "p:5", "p:6"]),
        ("n1", ["p:7"]),
        ("n2", ["p:8"]),
    ]
    scans_sent = [(a.node, a.cursor) for a in actions if isinstance(a, Scan)]
    assert scans_sent == [("n1", 0), ("n1", 5), ("n1", 6), ("n2", 0)]
    assert result.deleted == 8
    assert result.done


def test_purge_flow_dry_run_counts_and_never_unlinks_or_sleeps() -> None:
    scans = {None: [(3, ["p:1", "q:1"]), (0, ["p:2"])]}
    policy = PurgePolicy(max_keys_per_second=1, pause=5)
    result, actions = drive(purge_flow("p:", [None], dry_run=True, policy=policy), scans)
    assert all(isinstance(a, Scan) for a in actions)
    assert (result.dry_run, result.matched, result.deleted, result.foreign) == (True, 2, 0, 1)


def test_purge_flow_groups_cluster_batches_by_hash_slot() -> None:
    names = ["p:a", "p:b", "p:{t}1", "p:c", "p:{t}2"]
    scans = {"node": [(0, names)]}
    _, actions = drive(purge_flow("p:", ["node"], dry_run=False, by_slot=True), scans)
    (action,) = [a for a in actions if isinstance(a, Unlink)]
    for group in action.groups:
        assert len({key_slot(str(n).encode()) for n in group}) == 1
    assert sorted(n for g in action.groups for n in g) == sorted(names)
    assert action.groups[[g[0] for g in action.groups].index("p:{t}1")] == ("p:{t}1", "p:{t}2")


def test_purge_flow_rate_limit_spaces_batches_by_the_injected_clock() -> None:
    clock = FakeClock()
    scans = {None: [(0, [f"p:{i}" for i in range(50)])]}
    policy = PurgePolicy(batch_size=10, max_keys_per_second=100)
    flow = purge_flow("p:", [None], dry_run=False, policy=policy, clock=clock)
    result, actions = drive(flow, scans, clock, unlink_cost=0.04)
    # Each batch of 10 is due 0.1 s after the previous one; it took 0.04 s itself.
    assert [round(s, 6) for s in clock.slept] == [0.06] * 5
    assert [type(a) for a in actions[1:]] == [Unlink, Sleep] * 5
    assert result.seconds == pytest.approx(0.5)
    assert result.deleted / result.seconds == pytest.approx(100)


def test_purge_flow_rate_limit_asks_no_pause_when_batches_are_slower_than_the_rate() -> None:
    clock = FakeClock()
    scans = {None: [(0, [f"p:{i}" for i in range(30)])]}
    policy = PurgePolicy(batch_size=10, max_keys_per_second=100)
    drive(purge_flow("p:", [None], dry_run=False, policy=policy, clock=clock), scans, clock, 0.5)
    assert clock.slept == []


def test_purge_flow_fixed_pause_applies_after_every_batch() -> None:
    clock = FakeClock()
    scans = {None: [(0, [f"p:{i}" for i in range(25)])]}
    policy = PurgePolicy(batch_size=10, pause=0.25)
    drive(purge_flow("p:", [None], dry_run=False, policy=policy, clock=clock), scans, clock)
    assert clock.slept == [0.25, 0.25, 0.25]


def test_purge_flow_reports_running_totals_then_the_result() -> None:
    clock = FakeClock()
    seen: list[PurgeResult] = []
    scans = {None: [(1, ["p:1", "p:2", "x:1"]), (0, ["p:3"])]}
    flow = purge_flow(
        "p:",
        [None],
        dry_run=False,
        policy=PurgePolicy(batch_size=2),
        clock=clock,
        progress=seen.append,
    )
    result, _ = drive(flow, scans, clock, unlink_cost=1.0)
    assert [(r.scanned, r.matched, r.deleted, r.done) for r in seen] == [
        (3, 2, 0, False),  # first SCAN
        (3, 2, 2, False),  # first UNLINK
        (4, 3, 2, False),  # second SCAN
        (4, 3, 3, False),  # last UNLINK
        (4, 3, 3, True),  # the result
    ]
    assert seen[-1] == result
    assert [r.seconds for r in seen] == [0.0, 1.0, 1.0, 2.0, 2.0]


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"scan_count": 0}, "scan_count"),
        ({"scan_count": True}, "scan_count"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"max_keys_per_second": 0}, "max_keys_per_second"),
        ({"max_keys_per_second": float("inf")}, "max_keys_per_second"),
        ({"max_keys_per_second": "fast"}, "max_keys_per_second"),
        ({"pause": -1}, "pause"),
        ({"pause": float("nan")}, "pause"),
    ],
)
def test_purge_policy_rejects_bad_values(kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(TenantConfigError, match=problem):
        PurgePolicy(**kwargs)


# ------------------------------------------------------------ the whole-database rule


@pytest.mark.parametrize(
    "other",
    [("127.0.0.1", 6379, 3), ("localhost", 6379, 3), ("::1", 6379, 3), ("[::1]", 6379, 3)],
)
def test_check_own_database_refuses_a_database_another_tenant_uses(
    other: tuple[str, int, int],
) -> None:
    with pytest.raises(PurgeRefusedError, match=r"'acme'.*another registered tenant.*6379/3"):
        check_own_database("acme", ("127.0.0.1", 6379, 3), [("10.0.0.9", 6379, 3), other])
    # Sharing is never forced: the other tenant's keys are not the caller's to delete.
    with pytest.raises(PurgeRefusedError):
        check_own_database("acme", ("127.0.0.1", 6379, 3), [other], force=True)


def test_check_own_database_refuses_db_0_unless_forced() -> None:
    with pytest.raises(PurgeRefusedError, match=r"db 0.*force=True") as caught:
        check_own_database("acme", ("redis.example", 6379, 0), [])
    assert isinstance(caught.value, PopotoException)
    check_own_database("acme", ("redis.example", 6379, 0), [], force=True)


def test_check_own_database_allows_a_database_of_its_own() -> None:
    others = [("127.0.0.1", 6379, 4), ("127.0.0.1", 6380, 3), ("REDIS.example.", 6379, 2)]
    check_own_database("acme", ("127.0.0.1", 6379, 3), others)
    with pytest.raises(PurgeRefusedError):
        check_own_database("acme", ("redis.example", 6379, 2), others)


def test_purge_refuses_an_empty_prefix_without_whole_db(servers: Servers) -> None:
    client = direct(servers.a)
    client.set("keep", "1")
    with pytest.raises(PurgeRefusedError, match="whole_db=True"):
        purge(client, "")
    with pytest.raises(TenantConfigError, match="must be a str"):
        purge(client, b"acme:")  # type: ignore[arg-type]
    assert client.get("keep") == "1"


async def test_purge_refuses_what_is_not_a_plain_client(servers: Servers) -> None:
    async_client = redis.asyncio.Redis(host=servers.a.host, port=servers.a.port)
    with pytest.raises(TenantConfigError, match=r"purge\(\) needs a redis.client.Redis"):
        purge(async_client, "acme:")  # type: ignore[arg-type]
    with pytest.raises(TenantConfigError, match=r"async_purge\(\) needs a redis.asyncio"):
        await async_purge(direct(servers.a), "acme:")  # type: ignore[arg-type]
    await async_client.aclose()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_purge_whole_db_empties_only_that_database(servers: Servers, mode: str) -> None:
    own, other = direct(servers.a, db=5), direct(servers.a, db=6)
    own.mset({f"k{i}": "v" for i in range(2500)})
    other.set("k1", "stays")
    check_own_database("t", (servers.a.host, servers.a.port, 5), [(servers.a.host, 6, 6)])
    if mode == "sync":
        result = purge(own, "", whole_db=True)
    else:
        async with redis.asyncio.Redis(host=servers.a.host, port=servers.a.port, db=5) as client:
            result = await async_purge(client, "", whole_db=True)
    # Emptying the table may shrink it mid-scan, and SCAN may then repeat a name:
    # matched can exceed 2500, deleted cannot.
    assert (result.deleted, result.foreign) == (2500, 0)
    assert result.matched >= 2500
    assert own.dbsize() == 0
    assert other.get("k1") == "stays"


# -------------------------------------------------------------------- real servers


def _tag(i: int, tags: int | None) -> str:
    return "" if tags is None else f"{{{i % tags}}}"


def tenant_names(tags: int | None = None) -> list[bytes]:
    """The tenant's string keys (10 hashes and lists come on top, see ``load_tenant``).

    On a Cluster ``tags`` hash tags put the names in that many slots: spread over every
    primary, yet cheap to load and count a slot at a time.
    """
    count = TENANT_KEYS - 110
    names = [f"{PREFIX}user:{_tag(i, tags)}{i}".encode() for i in range(count)]
    names += [f"{PREFIX}bin:{_tag(i, tags)}".encode() + b"\xff\xfe%d" % i for i in range(100)]
    return names


def tenant_all_names(tags: int | None = None) -> list[bytes]:
    extra = [f"{PREFIX}{kind}:{{{i}}}".encode() for kind in ("hash", "list") for i in range(5)]
    return [*tenant_names(tags), *extra]


def foreign_names(tags: int | None = None) -> list[str]:
    """300 000 names; the first 100 000 are what an unescaped ``acm?:*`` also matches."""
    names = [f"acmX:{_tag(i, tags)}{i}" for i in range(100_000)]
    for other in ("acm:", "xacm?:", "ACM?:", "acm?"):
        names += [f"{other}{_tag(i, tags)}{i}" for i in range(50_000)]
    return names


def per_slot(client: Any, names: Sequence[str | bytes], command: str) -> list[Any]:
    """``command`` once per hash slot of ``names`` (a Cluster refuses multi-slot MSET and
    EXISTS), pipelined per node, sent straight to each slot's node."""
    by_slot: dict[int, list[str | bytes]] = {}
    for name in names:
        raw = name if isinstance(name, bytes) else name.encode()
        by_slot.setdefault(key_slot(raw), []).append(name)
    pipes: dict[str, Any] = {}
    for slot, group in by_slot.items():
        node = client.nodes_manager.get_node_from_slot(slot)
        if node.name not in pipes:
            pipes[node.name] = redis.Redis(host=node.host, port=node.port).pipeline(False)
        args = [a for name in group for a in (name, "v")] if command == "MSET" else group
        pipes[node.name].execute_command(command, *args)
    replies: list[Any] = []
    for pipe in pipes.values():
        replies += pipe.execute()
        pipe.reset()
    return replies


def load(client: Any, names: Sequence[str | bytes]) -> None:
    """SET every name fast: MSETs pipelined (per slot on a Cluster)."""
    if isinstance(client, redis.cluster.RedisCluster):
        per_slot(client, names, "MSET")
        return
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(names), 2000):
        pipe.mset(dict.fromkeys(names[start : start + 2000], "v"))
    pipe.execute()


def tags_of(client: Any) -> int | None:
    return 200 if isinstance(client, redis.cluster.RedisCluster) else None


def load_tenant(client: Any) -> None:
    load(client, tenant_names(tags_of(client)))
    for i in range(5):
        client.hset(f"{PREFIX}hash:{{{i}}}", mapping={f"f{j}": j for j in range(100)})
        client.rpush(f"{PREFIX}list:{{{i}}}", *range(100))


def dbsize(client: Any) -> int:
    """Keys in the database (summed over the primaries of a Cluster)."""
    if isinstance(client, redis.cluster.RedisCluster):
        return int(client.dbsize(target_nodes=client.get_primaries()))  # type: ignore[no-untyped-call]
    return int(client.dbsize())


def tenant_left(client: Any) -> int:
    """How many of the tenant's names exist (EXISTS: one call, or one per slot)."""
    names = tenant_all_names(tags_of(client))
    if isinstance(client, redis.cluster.RedisCluster):
        return sum(per_slot(client, names, "EXISTS"))
    return int(client.exists(*names))


@pytest.fixture(scope="module")
def standalone() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        with redis.Redis(host=server.host, port=server.port) as client:
            load(client, foreign_names())
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    started = start_cluster(3)
    try:
        node = started.nodes[0]
        with redis.cluster.RedisCluster(host=node.host, port=node.port) as client:
            load(client, foreign_names(tags=300))
        yield started
    finally:
        started.stop()


@pytest.fixture
def tenant_on_standalone(standalone: RedisServer) -> Iterator[redis.Redis]:
    """The module's server with every foreign key and a fresh copy of the tenant."""
    with redis.Redis(host=standalone.host, port=standalone.port) as client:
        load_tenant(client)
        # Nothing else writes here, so this proves every foreign key is still there.
        assert (dbsize(client), tenant_left(client)) == (FOREIGN_KEYS + TENANT_KEYS, TENANT_KEYS)
        yield client


@pytest.fixture
def tenant_on_cluster(cluster: Cluster) -> Iterator[redis.cluster.RedisCluster]:
    node = cluster.nodes[0]
    with redis.cluster.RedisCluster(host=node.host, port=node.port) as client:
        load_tenant(client)
        assert (dbsize(client), tenant_left(client)) == (FOREIGN_KEYS + TENANT_KEYS, TENANT_KEYS)
        yield client


async def run_purge(mode: str, target: Any, decode: bool = False, **kwargs: Any) -> PurgeResult:
    """``purge`` or ``async_purge`` through a new client to ``target``'s server or cluster."""
    cluster = isinstance(target, redis.cluster.RedisCluster)
    if cluster:
        node = target.get_default_node()
        host, port = node.host, node.port
    else:
        host = target.connection_pool.connection_kwargs["host"]
        port = target.connection_pool.connection_kwargs["port"]
    options: dict[str, Any] = {"host": host, "port": port, "decode_responses": decode}
    if mode == "sync":
        sync_client: Any = (
            redis.cluster.RedisCluster(**options) if cluster else redis.Redis(**options)
        )
        with sync_client:
            return purge(sync_client, PREFIX, **kwargs)
    async_client: Any = (
        redis.asyncio.cluster.RedisCluster(**options) if cluster else redis.asyncio.Redis(**options)
    )
    try:
        return await async_purge(async_client, PREFIX, **kwargs)
    finally:
        await async_client.aclose()


def assert_only_tenant_gone(client: Any) -> None:
    # Nobody adds names, the tenant's are all gone and 300 000 are left: what is left
    # is exactly the foreign keys.
    assert (tenant_left(client), dbsize(client)) == (0, FOREIGN_KEYS)


def assert_progress(seen: list[PurgeResult], result: PurgeResult) -> None:
    assert len(seen) > 10  # a report after every SCAN and every UNLINK
    assert seen[-1] == result
    assert [r.done for r in seen].count(True) == 1
    for before, after in itertools.pairwise(seen):
        assert before.scanned <= after.scanned
        assert before.deleted <= after.deleted <= after.matched
    assert any(0 < r.deleted < TENANT_KEYS for r in seen)


# Sync and async, each with one of the two reply decodings (the purge reads names as
# bytes either way); the cluster test takes the other pairs.
@pytest.mark.parametrize(("mode", "decode"), [("sync", False), ("async", True)])
async def test_purge_counts_then_removes_exactly_the_namespace(
    tenant_on_standalone: redis.Redis, mode: str, decode: bool
) -> None:
    counted = await run_purge(mode, tenant_on_standalone, decode, dry_run=True)
    assert (counted.dry_run, counted.matched, counted.deleted) == (True, TENANT_KEYS, 0)
    assert tenant_left(tenant_on_standalone) == TENANT_KEYS

    seen: list[PurgeResult] = []
    result = await run_purge(mode, tenant_on_standalone, decode, progress=seen.append)
    assert (result.scanned, result.matched, result.deleted) == (TENANT_KEYS,) * 3
    assert (result.foreign, result.done, result.dry_run) == (0, True, False)
    assert_only_tenant_gone(tenant_on_standalone)
    assert_progress(seen, result)


@pytest.mark.parametrize(("mode", "decode"), [("sync", True), ("async", False)])
async def test_purge_removes_exactly_the_namespace_on_a_cluster(
    tenant_on_cluster: redis.cluster.RedisCluster, mode: str, decode: bool
) -> None:
    # The tenant's names are in 200 slots on every primary: one cursor per primary, and
    # UNLINK batches that span many slots (split per slot, pipelined per node).
    nodes = {
        tenant_on_cluster.nodes_manager.get_node_from_slot(key_slot(n)).name
        for n in tenant_names(tags_of(tenant_on_cluster))
    }
    assert len(nodes) == 3
    seen: list[PurgeResult] = []
    result = await run_purge(mode, tenant_on_cluster, decode, progress=seen.append)
    assert (result.matched, result.deleted, result.foreign) == (TENANT_KEYS, TENANT_KEYS, 0)
    assert_only_tenant_gone(tenant_on_cluster)
    assert_progress(seen, result)


async def test_purge_startswith_check_holds_when_match_over_matches(
    tenant_on_standalone: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Break the escaping: the server now returns acmX: names too (100 000 of them).
    monkeypatch.setattr(_purge, "prefix_pattern", lambda prefix: prefix + "*")
    result = purge(tenant_on_standalone, PREFIX)
    assert (result.scanned, result.foreign) == (TENANT_KEYS + 100_000, 100_000)
    assert (result.matched, result.deleted) == (TENANT_KEYS, TENANT_KEYS)
    assert_only_tenant_gone(tenant_on_standalone)


class FakeTime:
    """Stands in for the ``time`` module inside ``_purge``: sleeping moves the clock."""

    def __init__(self) -> None:
        self.clock = FakeClock()

    def monotonic(self) -> float:
        return self.clock()

    def sleep(self, seconds: float) -> None:
        self.clock.sleep(seconds)


class FakeAsyncio:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    async def sleep(self, seconds: float) -> None:
        self.clock.sleep(seconds)
        await asyncio.sleep(0)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_purge_drivers_sleep_what_the_rate_limit_asks(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    fake = FakeTime()
    monkeypatch.setattr(_purge, "time", fake)
    monkeypatch.setattr(_purge, "asyncio", FakeAsyncio(fake.clock))
    client = direct(servers.b)
    # Foreign keys keep the table over 10 % full, so the server does not shrink (and
    # rehash) it mid-scan: SCAN then returns each name once and the batches are exact.
    client.mset({f"{PREFIX}{i}": "v" for i in range(5000)} | {f"x{i}": "v" for i in range(5000)})
    policy = PurgePolicy(batch_size=1000, max_keys_per_second=1000)
    result = await run_purge(mode, client, policy=policy)
    # I/O takes no fake time, so each batch of 1000 waits its full second.
    assert fake.clock.slept == [1.0] * 5
    assert (result.deleted, result.seconds) == (5000, 5.0)
    assert client.dbsize() == 5000
