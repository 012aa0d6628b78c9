"""The I/O-free parts of redis_tenancy.popoto: patch bookkeeping, scripts, per-tenant dicts."""

from __future__ import annotations

import types

import pytest
from redis.exceptions import NoScriptError, ResponseError

from redis_tenancy._namespace import NO_SHA
from redis_tenancy._nslua import wrap
from redis_tenancy.popoto._patches import PatchSet
from redis_tenancy.popoto._scripts import ScriptRegistry, retry_commands
from redis_tenancy.popoto._state import TenantKeyedDict

BODY = "return redis.call('GET', KEYS[1])"


def test_retry_commands_rewrites_only_evalsha_answered_noscript() -> None:
    registry = ScriptRegistry()
    sha = registry.sha(BODY)
    stack: list[tuple[tuple[object, ...], dict[str, object]]] = [
        (("SET", "k", "v"), {}),
        (("EVALSHA", sha, 1, "k"), {}),
        (("EVALSHA", "f" * 40, 0), {}),  # unknown body: left as the error it is
        (("EVALSHA", sha, 1, "k"), {}),
        (("GET", "k"), {}),
    ]
    results = [True, NoScriptError("NOSCRIPT"), NoScriptError("NOSCRIPT"), b"v", ResponseError()]
    assert retry_commands(registry.text, stack, results) == [(1, ("EVAL", BODY, 1, "k"))]


def test_retry_commands_of_a_namespaced_pipeline_rerun_the_wrapped_body_only() -> None:
    registry = ScriptRegistry()
    caller = registry.sha(BODY)
    wrapped = registry.wrapped_sha(BODY)
    assert wrapped == wrap(BODY).sha != caller
    # As a namespaced pipeline sent them: wrapped SHA, prefixed key, prefix as ARGV[1].
    stack: list[tuple[tuple[object, ...], dict[str, object]]] = [
        (("EVALSHA", wrapped, 1, "acme:k", b"acme:"), {}),
        (("EVALSHA", caller, 1, "acme:k", b"acme:"), {}),  # never sent so; not re-run bare
        (("EVALSHA", NO_SHA, 1, "acme:k", b"acme:"), {}),  # a SHA never wrapped here
    ]
    results = [NoScriptError("NOSCRIPT")] * 3
    assert retry_commands(registry.wrapped_text, stack, results) == [
        (0, ("EVAL", wrap(BODY).text, 1, "acme:k", b"acme:"))
    ]


def test_script_registry_finds_wrapped_bodies_of_scripts_learned_elsewhere() -> None:
    registry = ScriptRegistry()
    registry.remember({"abc": b"return 2"})  # from a redis-py Script, never wrapped here
    assert registry.wrapped_text(wrap("return 2").sha) == wrap("return 2").text
    assert registry.wrapped_text(registry.sha(BODY)) is None  # a caller SHA is not one


def test_script_registry_marks_and_forgets_per_endpoint() -> None:
    registry = ScriptRegistry()
    sha = registry.sha(BODY)
    assert sha == "d3c21d0c2b9ca22f82737626a27bcaf5d288f99f"  # what SCRIPT LOAD answers
    registry.mark("redis://a:1/0", sha)
    assert registry.loaded("redis://a:1/0", sha)
    assert not registry.loaded("redis://b:1/0", sha)
    registry.remember({"abc": b"return 1"})
    assert registry.text("abc") == "return 1"
    registry.forget("redis://a:1/0", None)
    assert not registry.loaded("redis://a:1/0", sha)
    assert registry.endpoints() == []


def test_patchset_restores_originals_and_copies_but_not_foreign_changes() -> None:
    owner = types.ModuleType("owner_mod")
    copier = types.ModuleType("copier_mod")
    late = types.ModuleType("late_mod")

    def original() -> str:
        return "original"

    def replacement() -> str:
        return "replacement"

    owner.fn = original  # type: ignore[attr-defined]
    owner.other = 1  # type: ignore[attr-defined]
    copier.alias = original  # type: ignore[attr-defined]
    patches = PatchSet()
    assert patches.replace(owner, "fn", replacement, copies=True) is original
    patches.replace(owner, "other", 2)
    assert patches.sweep([owner, copier]) == 1
    assert copier.alias is replacement
    late.alias = replacement  # type: ignore[attr-defined]  # imported while installed
    owner.other = 3  # type: ignore[attr-defined]  # someone else's change wins
    assert patches.restore([owner, copier, late]) == ["owner_mod.other"]
    assert owner.fn is original
    assert copier.alias is original
    assert late.alias is original
    assert owner.other == 3
    assert len(patches) == 0
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        patches.replace(owner, "missing", 1)


def test_tenant_keyed_dict_keeps_items_per_tenant_and_clears_all() -> None:
    active = ["acme"]
    cache = TenantKeyedDict(lambda: active[0])
    cache["Model"] = "acme's"
    active[0] = "globex"
    assert "Model" not in cache
    cache["Model"] = "globex's"
    assert cache.pop("Model") == "globex's"
    cache["Other"] = 1
    assert len(cache) == 1
    assert sorted(map(str, cache.values())) == ["1", "acme's"]  # every tenant's
    active[0] = "acme"
    assert cache["Model"] == "acme's"
    assert cache.tenants() == {"acme": {"Model": "acme's"}, "globex": {"Other": 1}}
    cache.clear()
    assert cache.tenants() == {"acme": {}, "globex": {}}
