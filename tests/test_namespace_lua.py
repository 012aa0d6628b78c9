"""Lua in a tenant's logical keyspace: data-derived key names, Popoto's scripts, SHAs.

Scripts run through a namespaced client logged in as the ACL user confined to
``~acme:*`` (the oracle: a key outside the namespace is a NOPERM, and ``ACL LOG``
records it). Popoto's own scripts (popoto 1.10.1, which reads key names out of hashes,
sets, sorted sets and ARGV) run twice: un-namespaced in database 1 (the reference)
and namespaced in database 0; the tenant's keyspace must equal the reference key for
key, value for value, with the canaries of the same names untouched.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
import redis
import redis.asyncio
from popoto.extraction.decision_log import PENDING_WRITE_LUA
from popoto.fields.decaying_sorted_field import DECAY_SCORE_LUA
from popoto.fields.indexed_field_mixin import INDEX_SWAP_LUA
from popoto.fields.tag_field import TAG_SWAP_LUA
from popoto.fields.validity_field import SUPERSEDE_LUA

from redis_tenancy._namespace import Namespace
from redis_tenancy._nsclient import NamespacedRedis
from redis_tenancy._nsclient_async import AsyncNamespacedRedis
from redis_tenancy._nslua import PRELUDE, wrap

from .namespace_harness import (
    CANARY,
    PREFIX,
    NsServer,
    canary_dumps,
    command,
    confined_async_base,
    confined_base,
    start_server,
)


@pytest.fixture(scope="module")
def ns_server() -> Iterator[NsServer]:
    ns = start_server()
    try:
        yield ns
    finally:
        ns.admin.close()
        ns.server.stop()


@pytest.fixture
def acme(ns_server: NsServer) -> Iterator[NamespacedRedis]:
    command(ns_server.admin, "FLUSHALL")
    command(ns_server.admin, "ACL", "LOG", "RESET")
    client = NamespacedRedis.wrap(confined_base(ns_server), Namespace(PREFIX))
    yield client
    log = command(ns_server.admin, "ACL", "LOG")
    client.close()
    assert not log, f"ACL LOG: {log}"


def _run(mode: str, make: Callable[[], Any]) -> Any:
    """Run ``make()`` (sync) or ``asyncio.run(make())`` (async): one test body, two modes."""
    if mode == "sync":
        return make()
    return asyncio.run(make())


# -- scripts that compute key names from data -----------------------------------------------

_FROM_HASH = """
local target = redis.call('HGET', KEYS[1], 'pointer')
redis.call('SET', target, ARGV[1])
return {target, redis.call('GET', target)}
"""
_FROM_SET = """
local out = {}
for _, k in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  out[#out + 1] = redis.call('INCR', k)
end
table.sort(out)
return out
"""
_FROM_ARGV = "redis.call('SET', ARGV[1], ARGV[2]) return redis.call('GET', ARGV[1])"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_lua_key_names_from_a_hash_a_set_and_argv_stay_in_the_namespace(
    ns_server: NsServer, mode: str
) -> None:
    admin = ns_server.admin
    command(admin, "FLUSHALL")
    command(admin, "ACL", "LOG", "RESET")
    for name in ("target", "c1", "c2", "from-argv"):  # canaries under the logical names
        admin.set(name, CANARY)

    def check(results: list[Any]) -> None:
        assert results[0] == [b"target", b"v"]
        assert results[1] == [1, 1]
        assert results[2] == b"w"
        assert admin.get(PREFIX + "target") == b"v"
        assert admin.get(PREFIX + "c1") == b"1"
        assert admin.get(PREFIX + "from-argv") == b"w"
        for name in ("target", "c1", "c2", "from-argv"):
            assert admin.get(name) == CANARY
        assert not command(admin, "ACL", "LOG")

    def sync() -> list[Any]:
        client = NamespacedRedis.wrap(confined_base(ns_server), PREFIX)
        client.hset("ptrs", "pointer", "target")
        client.sadd("names", "c1", "c2")
        out = [
            client.eval(_FROM_HASH, 1, "ptrs", "v"),
            client.register_script(_FROM_SET)(keys=["names"]),
            client.eval(_FROM_ARGV, 0, "from-argv", "w"),
        ]
        client.close()
        return out

    async def run_async() -> list[Any]:
        base = confined_async_base(ns_server)
        client = AsyncNamespacedRedis.wrap(base, PREFIX)
        await client.hset("ptrs", "pointer", "target")
        await client.sadd("names", "c1", "c2")
        out = [
            await client.eval(_FROM_HASH, 1, "ptrs", "v"),
            await client.register_script(_FROM_SET)(keys=["names"]),
            await client.eval(_FROM_ARGV, 0, "from-argv", "w"),
        ]
        await base.aclose()
        return out

    check(_run(mode, sync if mode == "sync" else run_async))


def test_lua_script_sees_logical_keys_and_unchanged_argv(acme: NamespacedRedis) -> None:
    reply = acme.eval("return {KEYS[1], KEYS[2], #ARGV, ARGV[1], ARGV[2]}", 2, "a", "b", "x", "y")
    assert reply == [b"a", b"b", 2, b"x", b"y"]


def test_lua_replies_that_carry_key_names_are_unprefixed(acme: NamespacedRedis) -> None:
    acme.rpush("l", "x")
    acme.zadd("z", {"m": 1})
    acme.xadd("s", {"f": "v"}, id="1-0")
    acme.set("k1", 1)
    script = """
    local out = {}
    out[1] = redis.call('LMPOP', 1, 'l', 'LEFT')[1]
    out[2] = redis.call('ZMPOP', 1, 'z', 'MIN')[1]
    out[3] = redis.call('XREAD', 'STREAMS', 's', '0')[1][1]
    local scanned = redis.call('SCAN', 0, 'COUNT', 1000)[2]
    table.sort(scanned)
    out[4] = table.concat(scanned, ',')
    out[5] = redis.call('KEYS', 'k*')[1]
    out[6] = redis.call('DBSIZE')
    return out
    """
    if not _has_mpop(acme):  # Redis 6.2: no LMPOP/ZMPOP, so l and z stay
        script = script.replace("redis.call('LMPOP', 1, 'l', 'LEFT')", "({'l'})")
        script = script.replace("redis.call('ZMPOP', 1, 'z', 'MIN')", "({'z'})")
        assert acme.eval(script, 0) == [b"l", b"z", b"s", b"k1,l,s,z", b"k1", 4]
        return
    assert acme.eval(script, 0) == [b"l", b"z", b"s", b"k1,s", b"k1", 2]


def _has_mpop(client: NamespacedRedis) -> bool:
    """LMPOP/ZMPOP arrived in Redis 7.0 (on 6.2 the scripts above skip them)."""
    return int(str(client.info("server")["redis_version"]).split(".")[0]) >= 7


def test_lua_xread_map_reply_under_resp3_is_unprefixed(acme: NamespacedRedis) -> None:
    acme.xadd("s1", {"f": "v"}, id="1-0")
    script = """
    redis.setresp(3)
    local reply = redis.call('XREAD', 'STREAMS', 's1', '0')
    local names = {}
    for name, _ in pairs(reply.map) do names[#names + 1] = name end
    return names
    """
    assert acme.eval(script, 0) == [b"s1"]


def test_lua_refused_command_raises_and_pcall_returns_the_error(acme: NamespacedRedis) -> None:
    with pytest.raises(redis.ResponseError, match="FLUSHALL refused on a namespaced client"):
        acme.eval("return redis.call('FLUSHALL')", 0)
    reply = acme.eval(
        "local r = redis.pcall('SWAPDB', 0, 1) return {r.err ~= nil, r.err}",
        0,
    )
    assert reply[0] == 1
    assert b"SWAPDB refused on a namespaced client" in reply[1]
    with pytest.raises(redis.ResponseError, match="not available in a namespaced script"):
        acme.eval("return redis.call('NOSUCHCMD', 'x')", 0)


def test_lua_error_line_numbers_are_the_callers(acme: NamespacedRedis) -> None:
    with pytest.raises(redis.ResponseError) as caught:
        acme.eval("local a = 1\nlocal b = 2\nreturn nil + a", 0)
    assert ":3:" in str(caught.value)


def test_lua_shebang_flags_are_kept(acme: NamespacedRedis, ns_server: NsServer) -> None:
    acme.set("k", "v")
    script = "#!lua flags=no-writes\nreturn redis.call('GET', KEYS[1])"
    if ns_server.version < (7, 0):
        with pytest.raises(redis.ResponseError):  # Redis 6.2 has no shebang syntax
            acme.eval(script, 1, "k")
        return
    assert acme.eval(script, 1, "k") == b"v"
    assert wrap(script).text.startswith(b"#!lua flags=no-writes\n" + PRELUDE.encode())
    with pytest.raises(redis.ResponseError):
        acme.eval("#!lua flags=no-writes\nreturn redis.call('SET', KEYS[1], 'x')", 1, "k")


# -- SHAs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_lua_script_objects_and_shas_work_unchanged(ns_server: NsServer, mode: str) -> None:
    admin = ns_server.admin
    command(admin, "FLUSHALL")
    command(admin, "SCRIPT", "FLUSH")
    text = "return redis.call('INCR', KEYS[1]) + 0 * #ARGV"
    caller_sha = hashlib.sha1(text.encode()).hexdigest()
    wrapped_sha = wrap(text).sha
    # A text this process has never wrapped: its first use is inside a pipeline, whose
    # EVALSHA is resolved only after the pipeline loads its scripts.
    fresh = f"-- {uuid.uuid4()}\nreturn redis.call('INCR', KEYS[1])"

    def sync() -> list[Any]:
        client = NamespacedRedis.wrap(confined_base(ns_server), PREFIX)
        script = client.register_script(text)
        out = [script.sha, script(keys=["n"]), client.script_load(text)]
        out.append(client.script_exists(caller_sha, "f" * 40))
        out.append(client.evalsha(caller_sha, 1, "n"))
        command(admin, "SCRIPT", "FLUSH")  # the server forgets; the Script reloads
        out.append(script(keys=["n"]))
        with client.pipeline() as pipe:  # redis-py's pipeline Script flow
            command(admin, "SCRIPT", "FLUSH")
            script(keys=["n"], client=pipe)
            pipe.evalsha(client.script_load(text), 1, "n")  # Popoto's run_lua path
            out.append(pipe.execute())
        with client.pipeline() as pipe:
            client.register_script(fresh)(keys=["n"], client=pipe)
            out.append(pipe.execute())
        client.close()
        return out

    async def run_async() -> list[Any]:
        base = confined_async_base(ns_server)
        client = AsyncNamespacedRedis.wrap(base, PREFIX)
        script = client.register_script(text)
        out = [script.sha, await script(keys=["n"]), await client.script_load(text)]
        out.append(await client.script_exists(caller_sha, "f" * 40))
        out.append(await client.evalsha(caller_sha, 1, "n"))
        command(admin, "SCRIPT", "FLUSH")
        out.append(await script(keys=["n"]))
        async with client.pipeline() as pipe:
            command(admin, "SCRIPT", "FLUSH")
            await script(keys=["n"], client=pipe)
            pipe.evalsha(await client.script_load(text), 1, "n")
            out.append(await pipe.execute())
        async with client.pipeline() as pipe:
            await client.register_script(fresh)(keys=["n"], client=pipe)
            out.append(await pipe.execute())
        await base.aclose()
        return out

    out = _run(mode, sync if mode == "sync" else run_async)
    assert out[0] == caller_sha  # the caller's SHA, as redis-py computes it
    assert out[1] == 1
    assert out[2] == caller_sha  # SCRIPT LOAD answers the caller's SHA
    assert out[3] == [True, False]
    assert out[4] == 2
    assert out[5] == 3
    assert out[6] == [4, 5]
    assert out[7] == [6]
    assert admin.get(PREFIX + "n") == b"6"
    # The server holds the wrapped script only, under its own SHA.
    assert command(admin, "SCRIPT", "EXISTS", caller_sha, wrapped_sha) == [False, True]


def test_lua_evalsha_of_an_unknown_sha_is_noscript_and_never_sent(acme: NamespacedRedis) -> None:
    text = "return 'unwrapped'"
    sha = hashlib.sha1(text.encode()).hexdigest()
    acme.execute_command("SCRIPT", "EXISTS", sha)  # warm the connection
    # Loaded by someone else, un-namespaced, under the caller's SHA: never run.
    unknown = "return 'loaded elsewhere ' .. #KEYS"
    other_sha = hashlib.sha1(unknown.encode()).hexdigest()
    plain = redis.Redis(connection_pool=acme.connection_pool)
    assert command(plain, "SCRIPT", "LOAD", unknown).decode() == other_sha
    with pytest.raises(redis.exceptions.NoScriptError):
        acme.evalsha(other_sha, 0)
    assert acme.script_exists(other_sha) == [False]


def test_lua_one_wrapped_script_serves_every_tenant(ns_server: NsServer) -> None:
    command(ns_server.admin, "FLUSHALL")
    command(ns_server.admin, "SCRIPT", "FLUSH")
    base = redis.Redis(host=ns_server.server.host, port=ns_server.server.port)
    text = "return redis.call('SET', KEYS[1], ARGV[1])"
    for tenant in ("t1:", "t2:", "t3:"):
        NamespacedRedis.wrap(base, tenant).register_script(text)(keys=["k"], args=[tenant])
    assert [base.get(f"t{i}:k") for i in (1, 2, 3)] == [b"t1:", b"t2:", b"t3:"]
    memory = ns_server.admin.info("memory")
    assert memory.get("number_of_cached_scripts", 1) == 1
    base.close()


# -- Popoto's scripts: namespaced vs un-namespaced reference ---------------------------------


def _snapshot(client: redis.Redis, prefix: bytes = b"") -> dict[bytes, Any]:
    """Every key under ``prefix`` (names without it) with its type and value."""
    out: dict[bytes, Any] = {}
    pattern = prefix.replace(b"*", rb"\*") + b"*"
    for key in client.scan_iter(match=pattern, count=1000):
        kind = client.type(key)
        value: Any
        if kind == b"string":
            value = client.get(key)
        elif kind == b"hash":
            value = client.hgetall(key)
        elif kind == b"set":
            value = sorted(client.smembers(key))
        elif kind == b"zset":
            value = client.zrange(key, 0, -1, withscores=True)
        else:
            value = client.lrange(key, 0, -1)
        out[key[len(prefix) :]] = (kind, value)
    return out


Scenario = Callable[[Any], list[Any]]


def _index_swap(c: Any) -> list[Any]:
    script = c.register_script(INDEX_SWAP_LUA)
    keys = ["Model:1", "idx:color:red", "$IdxPtr:Model:1:color", "Model:1:color:ptr"]
    args = ["color", "Model:1", "red-bytes", "0", "", "_color_ptr"]
    out = [script(keys=keys, args=args)]
    keys[1] = "idx:color:blue"  # re-save with a new value: the old set is read from GET
    args[2] = "blue-bytes"
    out.append(script(keys=keys, args=args))
    c.sadd("idx:color:green", "Model:9")
    keys[1], args[3] = "idx:color:green", "1"  # unique: conflict on another member
    try:
        out.append(script(keys=keys, args=args))
    except redis.ResponseError as exc:
        out.append(str(exc))
    return out


def _tag_swap(c: Any) -> list[Any]:
    script = c.register_script(TAG_SWAP_LUA)
    base = ["Doc:1", "$TagPtr:Doc:1:tags", "Doc:1:tags:ptr"]
    out = [script(keys=[*base, "tag:a", "tag:b"], args=["tags", "Doc:1", "ab"])]
    out.append(script(keys=[*base, "tag:b", "tag:c"], args=["tags", "Doc:1", "bc"]))
    return out


def _supersede(c: Any) -> list[Any]:
    script = c.register_script(SUPERSEDE_LUA)
    keys = ["Fact:vf", "Fact:ia", "Fact:ig", "Fact:ptr", "Fact:fwd", "Fact:rev"]
    c.hset("Fact:1", "v", "1")
    c.hset("Fact:2", "v", "2")
    out = [script(keys=keys, args=["Fact:1", "100", "100", "100", "open"])]
    # Close Fact:1 (found through the pointer key) by Fact:2; EXISTS ARGV[1] names a key.
    out.append(script(keys=keys, args=["Fact:2", "200", "200", "200", "supersede", "200"]))
    try:  # a successor that does not exist in this keyspace
        out.append(script(keys=keys, args=["Fact:3", "300", "300", "300", "supersede", "300"]))
    except redis.ResponseError as exc:
        out.append(str(exc))
    return out


def _decay(c: Any) -> list[Any]:
    script = c.register_script(DECAY_SCORE_LUA)
    c.zadd("Mem:updated", {"Mem:a": 1_000_000, "Mem:b": 1_086_400})
    c.hset("Mem:a", "importance", msgpack.packb(5.0))
    c.hset("Mem:b", "importance", msgpack.packb(2.0))
    # The members are key names; the script reads each member's hash for its score.
    return [script(keys=["Mem:updated"], args=["1172800", "0.5", "10", "importance"])]


def _pending_write(c: Any) -> list[Any]:
    script = c.register_script(PENDING_WRITE_LUA)
    keys = ["Decision:1", "Decision:counts", "idx:a", "idx:b", "idx:c", "idx:d"]
    state = msgpack.packb("pending")
    out = [script(keys=keys, args=[state, "state", state, "reason_code", msgpack.packb("r")])]
    done = msgpack.packb("done")
    c.hset("Decision:counts", mapping={"state:pending": 1, "reason:r": 1})
    out.append(script(keys=keys, args=[done, "state", done]))
    return out


POPOTO = {
    "index_swap": _index_swap,
    "tag_swap": _tag_swap,
    "supersede": _supersede,
    "decay_score": _decay,
    "decision_log_pending_write": _pending_write,
}


@pytest.mark.parametrize("scenario", sorted(POPOTO))
def test_lua_popoto_scripts_match_the_unnamespaced_reference(
    ns_server: NsServer, scenario: str
) -> None:
    admin = ns_server.admin
    command(admin, "FLUSHALL")
    command(admin, "ACL", "LOG", "RESET")
    reference = redis.Redis(host=ns_server.server.host, port=ns_server.server.port, db=1)
    expected_replies = POPOTO[scenario](reference)
    expected = _snapshot(reference)
    # Canaries under the very names the scripts use, in the tenant's database.
    for name, (kind, _value) in expected.items():
        if kind == b"string":
            admin.set(name, CANARY)
        else:
            admin.hset(b"canary:" + name, "v", CANARY)
    admin.set("Fact:3", CANARY)  # exists un-namespaced: must not satisfy EXISTS ARGV[1]
    canaries = canary_dumps(admin)

    client = NamespacedRedis.wrap(confined_base(ns_server), PREFIX)
    replies = POPOTO[scenario](client)
    client.close()

    assert replies == expected_replies
    assert _snapshot(admin, PREFIX.encode()) == expected
    assert canary_dumps(admin) == canaries
    assert not command(admin, "ACL", "LOG")
    reference.close()


def test_lua_wrapped_text_is_one_prelude_line(acme: NamespacedRedis) -> None:
    assert "\n" not in PRELUDE
    assert wrap("return 42").text == PRELUDE.encode() + b"return 42"
    assert acme.script_load("return 42") == hashlib.sha1(b"return 42").hexdigest()
    assert acme.eval("return 42", 0) == 42
