"""Helpers shared by the integration tests: two tenants on their own servers.

``acme`` lives on server ``b``, ``globex`` on ``c``, and the default tenant on ``a``
(as set by conftest's ``clean_state``), so where a key landed tells who wrote it.
"""

from __future__ import annotations

from redis_tenancy.redis_db import set_REDIS_DB_settings

from .conftest import Servers, direct

#: Which server letter holds each tenant's data ("" is the default tenant).
HOME = {"": "a", "acme": "b", "globex": "c"}


def register_tenants(servers: Servers) -> Servers:
    """Register acme on ``b`` and globex on ``c`` with the default router."""
    set_REDIS_DB_settings("acme", url=servers.b.url)
    set_REDIS_DB_settings("globex", url=servers.c.url)
    return servers


def landed(servers: Servers, key: str) -> dict[str, str]:
    """``{server letter: value}`` for every server of a, b, c that holds ``key``.

    A list's value is its items joined with commas, oldest first.
    """
    found = {}
    for letter in "abc":
        with direct(getattr(servers, letter)) as client:
            kind = client.type(key)
            if kind == "list":
                found[letter] = ",".join(client.lrange(key, 0, -1))
            elif kind == "string":
                found[letter] = str(client.get(key))
            elif kind != "none":
                raise AssertionError(f"{key} on {letter} is a {kind}")
    return found


def everywhere(servers: Servers, pattern: str) -> dict[str, dict[str, str]]:
    """``{key: {server letter: value}}`` for the keys matching ``pattern`` on a, b and c.

    Values as :func:`landed` shows them; three round trips per server, whatever the
    number of keys.
    """
    found: dict[str, dict[str, str]] = {}
    for letter in "abc":
        with direct(getattr(servers, letter)) as client:
            keys = sorted(client.scan_iter(match=pattern, count=1000))
            with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.type(key)
                kinds = pipe.execute()
            with client.pipeline(transaction=False) as pipe:
                for key, kind in zip(keys, kinds, strict=True):
                    pipe.lrange(key, 0, -1) if kind == "list" else pipe.get(key)
                values = pipe.execute()
        for key, value in zip(keys, values, strict=True):
            shown = ",".join(value) if isinstance(value, list) else str(value)
            found.setdefault(key, {})[letter] = shown
    return found


def count_keys(servers: Servers, pattern: str = "*") -> dict[str, int]:
    """``{server letter: number of keys matching pattern}`` over a, b and c."""
    counts = {}
    for letter in "abc":
        with direct(getattr(servers, letter)) as client:
            counts[letter] = sum(1 for _ in client.scan_iter(match=pattern, count=1000))
    return counts
