"""The namespace engine without a server: key positions, plans, reply rules, the table.

Server-side truth (``COMMAND GETKEYS``, ACLs) is checked in test_namespace_commands.py;
these pin the decisions themselves, including the edge cases a server would only show
by accident (a key named like a keyword, a ``numkeys`` that is not quite an integer).
"""

from __future__ import annotations

from typing import Any

import pytest

from redis_tenancy._errors import NamespaceError, PopotoException
from redis_tenancy._keyfinder import (
    CommandSpec,
    KeysNotExact,
    KeySpec,
    key_positions,
    parse_command_info,
)
from redis_tenancy._keyspecs import COMMANDS, SOURCES
from redis_tenancy._namespace import (
    Emulate,
    Lookup,
    Namespace,
    Send,
    fast_kind,
    spec_from_command_info,
)
from redis_tenancy._nslua import PRELUDE, lua_spec_table, unwrap_text, wrap, wrapped_sha
from redis_tenancy._nsreplies import REPLY_RULES, KeyOutside, unprefix_message

NS = Namespace("acme:")


def _send(args: tuple[Any, ...]) -> Send:
    plan = NS.plan(args)
    assert isinstance(plan, Send)
    return plan


def _positions(name: str, *args: Any) -> list[int]:
    return key_positions(COMMANDS[name].keys, [name.split("|")[-1].upper(), *args])


# -- key positions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("get", ("k",), [1]),
        ("mset", ("a", "1", "b", "2"), [1, 3]),
        ("blpop", ("a", "b", "0"), [1, 2]),
        ("zunionstore", ("dst", "2", "a", "b", "WEIGHTS", "1", "2"), [1, 3, 4]),
        ("eval", ("script", "0", "arg"), []),
        ("eval", ("script", "2", "a", "b", "arg"), [2 + 1, 2 + 2]),
        ("lmpop", ("2", "a", "b", "LEFT"), [2, 3]),
        ("xread", ("COUNT", "1", "STREAMS", "a", "b", "0", "0"), [4, 5]),
        # A key named like the keyword: the search stops at the first STREAMS.
        ("xread", ("STREAMS", "STREAMS", "0"), [2]),
        # XREADGROUP searches from argv 4: a consumer named STREAMS is not the keyword.
        ("xreadgroup", ("GROUP", "g", "STREAMS", "STREAMS", "k", ">"), [5]),
        ("georadius", ("geo", "1", "2", "3", "km", "STORE", "dst"), [1, 7]),
        ("georadius", ("geo", "1", "2", "3", "km", "STOREDIST", "dst"), [1, 7]),
        ("object|encoding", ("k",), [2]),
        ("xgroup|create", ("stream", "g", "$"), [2]),
        ("msetex", ("2", "a", "1", "b", "2", "EX", "9"), [2, 4]),  # keynum, step 2
        ("get", (), []),  # missing argument: nothing to prefix, the server says arity
    ],
)
def test_key_positions(name: str, args: tuple[Any, ...], expected: list[int]) -> None:
    if name in ("object|encoding", "xgroup|create"):
        argv = [name.split("|")[0].upper(), name.split("|")[1].upper(), *args]
        assert key_positions(COMMANDS[name].keys, argv) == expected
    else:
        assert _positions(name, *args) == expected


@pytest.mark.parametrize("numkeys", ["01", " 1", "+1", "1.0", "one", -1, "-1", True])
def test_key_positions_numkeys_must_be_what_the_server_parses(numkeys: Any) -> None:
    with pytest.raises(KeysNotExact):
        _positions("eval", "script", numkeys, "a", "b")


def test_key_positions_backwards_keyword_search() -> None:
    # MIGRATE's KEYS keyword is searched backwards from the end (the table refuses
    # MIGRATE; the search itself must still match the server's).
    spec = COMMANDS["migrate"].keys
    argv = ["MIGRATE", "h", "p", "", "0", "5", "KEYS", "a", "b"]
    assert key_positions(spec, argv) == [3, 7, 8]


# -- plans -------------------------------------------------------------------------------


def test_plan_prefixes_keys_channels_and_escapes_patterns() -> None:
    glob = Namespace("a*[b]?\\:")
    assert glob.pattern("x*") == "a\\*\\[b\\]\\?\\\\:x*"
    assert glob.pattern(b"x*") == b"a\\*\\[b\\]\\?\\\\:x*"
    assert glob.key("k") == "a*[b]?\\:k"
    assert _send(("PUBLISH", "ch", "m")).args == ("PUBLISH", "acme:ch", "m")
    assert _send(("SCAN", 0)).args == ("SCAN", 0, "MATCH", "acme:*")
    assert _send(("SCAN", 0, "match", "u*", "COUNT", 5)).args == (
        "SCAN",
        0,
        "match",
        "acme:u*",
        "COUNT",
        5,
    )
    assert _send(("HSCAN", "h", 0, "MATCH", "f*")).args == ("HSCAN", "acme:h", 0, "MATCH", "f*")
    assert _send(("PUBSUB CHANNELS",)).args == ("PUBSUB CHANNELS", "acme:*")
    assert _send(("PUBSUB NUMSUB", "a", "b")).args == ("PUBSUB NUMSUB", "acme:a", "acme:b")
    assert _send(("CLUSTER KEYSLOT", "k")).args == ("CLUSTER KEYSLOT", "acme:k")


def test_plan_keeps_bytes_and_str_types_and_rejects_non_values() -> None:
    assert _send((b"GET", b"k")).args == (b"GET", b"acme:k")
    mixed = _send(("MGET", "a", b"b", 3, 1.5)).args
    assert mixed == ("MGET", "acme:a", b"acme:b", b"acme:3", b"acme:1.5")
    with pytest.raises(NamespaceError, match="bool"):
        NS.plan(("LPUSH", True, "x"))


def test_plan_fast_path_agrees_with_the_full_plan() -> None:
    checked = 0
    for name, spec in COMMANDS.items():
        kind = fast_kind(spec)
        if kind is None:
            continue
        args = (name.upper(), "k1", "v1", "k2", "v2")
        fast = NS.fast(args)
        assert fast is not None, name
        assert fast == _send(args).args, name
        checked += 1
    assert checked > 130
    assert NS.fast(("GET",)) is None  # too short: the full plan lets the server reply
    assert NS.fast(("SORT", "k")) is None


def test_plan_command_name_forms() -> None:
    # The head as redis-py passes it is kept (its response callback is looked up by it).
    assert _send(("OBJECT ENCODING", "k")).args == ("OBJECT ENCODING", "acme:k")
    assert _send(("OBJECT", "ENCODING", "k")).args == ("OBJECT", "ENCODING", "acme:k")
    assert _send(("object", "encoding", "k")).args == ("object", "encoding", "acme:k")
    # A key hidden in the head is split out and prefixed too.
    assert _send(("GET k",)).args == ("GET", "acme:k")
    assert _send(("OBJECT ENCODING k",)).args == ("OBJECT ENCODING", "acme:k")
    # A reply fix needs the callback under the canonical name.
    assert _send(("scan  ", 0)).args[0] in ("scan  ", "SCAN")
    assert _send((b"SCAN", 0)).args[0] == "SCAN"


def test_plan_sort_patterns() -> None:
    args = ("SORT", "l", "BY", "w_*", "LIMIT", 0, 10, "GET", "#", "GET", "o_*->n", "DESC", "ALPHA")
    assert _send((*args, "STORE", "d")).args == (
        "SORT",
        "acme:l",
        "BY",
        "acme:w_*",
        "LIMIT",
        0,
        10,
        "GET",
        "#",
        "GET",
        "acme:o_*->n",
        "DESC",
        "ALPHA",
        "STORE",
        "acme:d",
    )
    assert _send(("SORT_RO", "l", "by", "nosort")).args == (
        "SORT_RO",
        "acme:l",
        "by",
        "acme:nosort",
    )


def test_plan_eval_wraps_and_passes_the_prefix_as_first_argv() -> None:
    plan = _send(("EVAL", "return 1", 2, "a", "b", "x"))
    assert plan.args == ("EVAL", wrap("return 1").text, 2, "acme:a", "acme:b", b"acme:", "x")
    # Too few arguments for numkeys: nothing inserted, the server rejects it.
    assert _send(("EVAL", "return 1", 3, "a")).args[-1] == "acme:a"
    sha = wrap("return 1").caller_sha
    assert wrapped_sha(sha) == wrap("return 1").sha
    assert _send(("EVALSHA", sha, 0)).args == ("EVALSHA", wrap("return 1").sha, 0, b"acme:")
    unknown = _send(("EVALSHA", "f" * 40, 0))
    assert unknown.pending_sha == "f" * 40
    assert unknown.args[1] == "0" * 40  # never the caller's SHA


def test_plan_refusals_name_the_command_and_reason_never_a_key() -> None:
    for args, command in [
        (("FLUSHALL",), "FLUSHALL"),
        (("CLIENT", "KILL", "ID", "1"), "CLIENT KILL"),
        (("CONFIG GET", "*"), "CONFIG GET"),
        (("COPY", "secret-key", "b", "DB", "2"), "COPY"),
        (("SUBSCRIBE", "ch"), "SUBSCRIBE"),
        (("EVAL", "return 1", "x", "secret-key"), "EVAL"),
    ]:
        with pytest.raises(NamespaceError) as caught:
            NS.plan(args)
        error = caught.value
        assert isinstance(error, PopotoException)
        assert error.command == command
        assert str(error).startswith(f"{command} refused on a namespaced client: ")
        assert "secret-key" not in str(error)


def test_plan_emulations_and_lookups() -> None:
    keys = NS.plan(("KEYS", "u*"))
    assert isinstance(keys, Emulate)
    assert next(keys.steps) == ("SCAN", 0, "MATCH", "acme:u*", "COUNT", 1000)
    assert keys.steps.send([b"7", [b"acme:u1", b"acme:u2"]])[1] == b"7"
    with pytest.raises(StopIteration) as done:
        keys.steps.send([b"0", [b"acme:u1", b"acme:u3"]])
    assert done.value.value == [b"u1", b"u2", b"u3"]

    flush = NS.plan(("FLUSHDB", "SYNC"))
    assert isinstance(flush, Emulate)
    next(flush.steps)
    assert flush.steps.send([b"0", [b"acme:a", b"acme:b"]]) == ("DEL", b"acme:a", b"acme:b")
    flush = NS.plan(("FLUSHDB",))
    assert isinstance(flush, Emulate)
    next(flush.steps)
    with pytest.raises(KeyOutside):  # checked before anything is deleted
        flush.steps.send([b"0", [b"acme:a", b"other:b"]])

    assert NS.plan(("MODULE.CMD", "k")) == Lookup("module.cmd")
    assert NS.plan(("CLIENT", "NEWSUB")) == Lookup("client|newsub")


def test_spec_from_command_info_refuses_what_is_not_exact() -> None:
    exact = CommandSpec("m.get", 2, (), (KeySpec(1, None, 0, "range", 0, 1, 0),))
    loose = CommandSpec("m.scan", -1, (), (KeySpec(0, None, 0, "unknown", 0, 0, 0),))
    keyless = CommandSpec("m.ping", 1, ())
    learned = spec_from_command_info("m.get", [exact, loose, keyless])
    assert learned["m.get"].refused is None
    assert "exactly" in str(learned["m.scan"].refused)
    assert "no key specification" in str(learned["m.ping"].refused)
    assert "unknown to the server" in str(spec_from_command_info("nope", [])["nope"].refused)


def test_parse_command_info_resp2_resp3_and_redis6() -> None:
    resp2 = [
        b"get",
        2,
        [b"readonly", b"fast"],
        1,
        1,
        1,
        [b"@read"],
        [],
        [
            [
                b"flags",
                [b"RO", b"access"],
                b"begin_search",
                [b"type", b"index", b"spec", [b"index", 1]],
                b"find_keys",
                [b"type", b"range", b"spec", [b"lastkey", 0, b"keystep", 1, b"limit", 0]],
            ]
        ],
        [],
    ]
    (spec,) = parse_command_info(resp2)
    assert spec.keys == (KeySpec(1, None, 0, "range", 0, 1, 0, ("RO", "access")),)
    resp3 = list(resp2)
    resp3[8] = [
        {
            "flags": ["RO"],
            "begin_search": {"type": "keyword", "spec": {"keyword": "STREAMS", "startfrom": 1}},
            "find_keys": {"type": "range", "spec": {"lastkey": -1, "keystep": 1, "limit": 2}},
        }
    ]
    (spec3,) = parse_command_info(resp3)
    assert spec3.keys[0].keyword == "STREAMS"
    redis6 = [b"mset", -3, [b"write"], 1, -1, 2, [b"@write"]]
    (spec6,) = parse_command_info(redis6)
    assert key_positions(spec6.keys, ["MSET", "a", "1", "b", "2"]) == [1, 3]
    movable6 = [b"zunionstore", -4, [b"write", b"movablekeys"], 0, 0, 0, [b"@write"]]
    assert not parse_command_info(movable6)[0].exact


# -- replies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "raw", "expected"),
    [
        ("scan", [b"0", [b"acme:a"]], [b"0", [b"a"]]),
        ("scan", ["5", ["acme:a", "acme:b"]], ["5", ["a", "b"]]),
        ("first", [b"acme:l", b"x"], [b"l", b"x"]),
        ("first", None, None),
        ("first", [b"acme:z", [[b"m", 1.0]]], [b"z", [[b"m", 1.0]]]),
        ("keylist", [b"acme:a"], [b"a"]),
        ("pairs", [b"acme:c", 1, b"acme:d", 0], [b"c", 1, b"d", 0]),
        ("pairs", {b"acme:c": 1}, {b"c": 1}),
        ("streams", [[b"acme:s", []]], [[b"s", []]]),
        ("streams", {"acme:s": []}, {"s": []}),
        ("firsts", [[b"acme:k", [b"RW"]]], [[b"k", [b"RW"]]]),
    ],
)
def test_reply_rules(rule: str, raw: Any, expected: Any) -> None:
    assert REPLY_RULES[rule](NS, raw) == expected


@pytest.mark.parametrize(
    ("rule", "raw"),
    [("scan", [b"0", [b"other:a"]]), ("first", [b"acm", b"x"]), ("keylist", ["acmex"])],
)
def test_reply_rules_refuse_keys_outside(rule: str, raw: Any) -> None:
    with pytest.raises(KeyOutside):
        REPLY_RULES[rule](NS, raw)


def test_pubsub_messages_unprefixed() -> None:
    assert unprefix_message(NS, [b"message", b"acme:c", b"d"]) == [b"message", b"c", b"d"]
    assert unprefix_message(NS, [b"pmessage", b"acme:c*", b"acme:c1", b"d"]) == [
        b"pmessage",
        b"c*",
        b"c1",
        b"d",
    ]
    assert unprefix_message(NS, ["unsubscribe", None, 0]) == ["unsubscribe", None, 0]
    assert unprefix_message(NS, [b"pong", b""]) == [b"pong", b""]
    glob = Namespace("a?:")
    assert unprefix_message(glob, [b"psubscribe", b"a\\?:x*", 1]) == [b"psubscribe", b"x*", 1]
    with pytest.raises(NamespaceError, match="outside the namespace"):
        unprefix_message(NS, [b"message", b"other:c", b"d"])


# -- the table and the Lua prelude -------------------------------------------------------------


def test_table_is_generated_from_both_servers_and_classifies_every_command() -> None:
    assert SOURCES[0].startswith("Redis 7.")
    assert SOURCES[1].startswith("Valkey 9.")
    for name, spec in COMMANDS.items():
        if spec.container:
            continue
        decided = (
            spec.refused is not None or spec.handler is not None or spec.keys or spec.transforms
        )
        keyless_ok = not spec.keys and not spec.transforms and spec.refused is None
        assert decided or keyless_ok, name
        assert spec.refused is not None or spec.handler is not None or spec.exact, name
    # The list of commands that cannot be confined.
    for name in (
        "select",
        "swapdb",
        "move",
        "migrate",
        "flushall",
        "randomkey",
        "script|flush",
        "script|kill",
        "function|load",
        "function|delete",
        "function|flush",
        "function|restore",
        "monitor",
        "config|set",
        "config|get",
        "debug",
        "acl|setuser",
        "shutdown",
        "client|tracking",
    ):
        assert COMMANDS[name].refused, name
    assert COMMANDS["copy"].handler == "copy"  # refused only with DB


def test_lua_table_and_prelude() -> None:
    table = lua_spec_table()
    assert ";get=K1/r0.1.0;" in table
    assert ";xread=" in table
    assert "KSTREAMS@1/r-1.1.2" in table
    assert ";flushall=X" in table
    assert ";subscribe=" not in table  # noscript: absent, refused inside scripts
    assert "\n" not in PRELUDE
    assert PRELUDE.endswith(" ")
    wrapped = wrap(b"#!lua flags=no-writes\nreturn 1").text
    assert wrapped == b"#!lua flags=no-writes\n" + PRELUDE.encode() + b"return 1"
    assert unwrap_text(wrapped) == b"#!lua flags=no-writes\nreturn 1"
    assert unwrap_text(wrapped.decode()) == "#!lua flags=no-writes\nreturn 1"


def test_docs_list_every_refused_command() -> None:
    """docs/NAMESPACES.md's table of refused commands is the generated table's."""
    import re
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "NAMESPACES.md").read_text()
    section = text.split("## Refused commands", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    documented = {name for line in table for name in re.findall(r"`([A-Z][A-Z0-9 _-]*)`", line)}
    refused = {n.replace("|", " ").upper() for n, spec in COMMANDS.items() if spec.refused}
    assert documented == refused
