"""What the sync and async namespaced clients share: reply fixing, lookups, wrapping.

**Reply fixing.** Key names in replies are un-prefixed on the *raw* reply, before
redis-py's response callback parses it. The client passes the fix as a private
execute-command option (:data:`FIX_OPTION`); redis-py hands options to the response
callback, and the namespaced client's callbacks dict wraps the callbacks of the few
commands whose replies carry keys so they apply the fix first. That dict is derived
once per base callbacks dict and shared by every namespaced client built on it
(:func:`derived_callbacks`), so 10 000 tenants do not hold 10 000 copies.

**Lookups.** A command missing from the table is looked up once per server in
``COMMAND INFO`` (:func:`learned_for`, :func:`learn`); the result, exact key specs
or a refusal, is cached per server address.

**Wrapping.** :func:`clone_state` builds the attribute dict of a namespaced client that
shares a base client's pool: a shallow copy of the base client's instance state (so
nothing of redis-py's private layout is named here), minus what must not be shared.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable, MutableMapping
from typing import Any, Final

from redis.client import CaseInsensitiveDict

from ._errors import NamespaceError, TenantConfigError
from ._keyfinder import CommandSpec, parse_command_info
from ._keyspecs import COMMANDS
from ._namespace import Emulate, KeyOutside, Namespace, spec_from_command_info

__all__ = [
    "FIX_OPTION",
    "RAW",
    "NamespacedCallbacks",
    "check_no_client_cache",
    "clone_state",
    "derived_callbacks",
    "emulation_result",
    "learn",
    "learned_for",
    "namespace_state",
    "refuse_in_pipeline",
]

#: The execute-command option that carries a reply fix to the wrapped callback.
FIX_OPTION: Final = "_redis_tenancy_namespace_fix"


def RAW(raw: Any) -> Any:
    """The fix that asks for the raw reply, unparsed (emulations and lookups use it)."""
    return raw


class NamespacedCallbacks(CaseInsensitiveDict):
    """A response-callbacks dict whose key-carrying entries apply the namespace's fix.

    A subclass of redis-py's ``CaseInsensitiveDict`` so lookups behave as in the base
    client; a distinct class so a namespaced client wrapping another namespaced client
    reuses it instead of wrapping twice.
    """


def _names_to_wrap() -> set[str]:
    names = {"SCAN", "UNLINK", "DEL", "COMMAND", "COMMAND INFO"}
    for name, spec in COMMANDS.items():
        if spec.reply is None:
            continue
        words = name.upper().split("|")
        names.add(" ".join(words))
        names.add(words[0])
    return names


_WRAP: Final = frozenset(_names_to_wrap())


def _wrap_callback(name: str, original: Callable[..., Any] | None) -> Callable[..., Any]:
    def callback(response: Any, **options: Any) -> Any:
        fix = options.pop(FIX_OPTION, None)
        if fix is RAW:
            return response
        if fix is not None:
            try:
                response = fix(response)
            except KeyOutside:
                raise NamespaceError(
                    name,
                    "its reply carried a key outside the namespace (not returned)",
                    refused=False,
                ) from None
        if original is None:
            return response
        return original(response, **options)

    return callback


_derived_lock = threading.Lock()
_derived: dict[int, tuple[Any, NamespacedCallbacks]] = {}


def _build(base: MutableMapping[Any, Any]) -> NamespacedCallbacks:
    derived = NamespacedCallbacks(dict(base))
    for name in _WRAP:
        original = dict.get(derived, name)  # the key is upper case already
        derived[name] = _wrap_callback(name, original)
    return derived


def derived_callbacks(base: MutableMapping[Any, Any]) -> NamespacedCallbacks:
    """The namespaced twin of a client's response-callbacks dict, built once per dict.

    Cached by identity while ``base`` lives (a weak reference; redis-py's callbacks
    dict is a ``dict`` subclass, which supports them). Later changes to ``base``
    (``set_response_callback`` on the base client) are not seen: set callbacks before
    wrapping, or on the namespaced client itself.
    """
    if isinstance(base, NamespacedCallbacks):
        return base
    key = id(base)
    found = _derived.get(key)
    if found is not None and found[0]() is base:
        return found[1]
    derived = _build(base)

    def forget(_ref: object, key: int = key) -> None:
        _derived.pop(key, None)

    try:
        ref = weakref.ref(base, forget)
    except TypeError:
        return derived  # a plain dict cannot be weakly referenced: not cached
    with _derived_lock:
        _derived[key] = (ref, derived)
    return derived


# -- unknown commands --------------------------------------------------------------------

_learned_lock = threading.Lock()
_learned: dict[Hashable, dict[str, CommandSpec]] = {}


def _server_key(pool: Any) -> Hashable:
    kwargs = getattr(pool, "connection_kwargs", None)
    if isinstance(kwargs, dict):
        address = (kwargs.get("host"), kwargs.get("port"), kwargs.get("path"))
        if any(part is not None for part in address):
            return address
    return ("pool", id(pool))


def learned_for(pool: Any) -> dict[str, CommandSpec]:
    """Commands looked up in the COMMAND INFO of the server behind ``pool`` (shared)."""
    key = _server_key(pool)
    found = _learned.get(key)
    if found is None:
        with _learned_lock:
            found = _learned.setdefault(key, {})
    return found


def learn(learned: dict[str, CommandSpec], name: str, raw_info: Any) -> None:
    """Record what ``COMMAND INFO name`` answered (a raw reply) in ``learned``."""
    entries: list[CommandSpec] = []
    for entry in raw_info or ():
        if entry:
            entries.extend(parse_command_info(entry))
    learned.update(spec_from_command_info(name, entries))


# -- emulations and pipelines --------------------------------------------------------------


def emulation_result(
    callbacks: MutableMapping[Any, Any], plan: Emulate, result: Any, options: dict[str, Any]
) -> Any:
    """The emulated command's raw result through the response callback redis-py would
    have applied to the real command (``FLUSHDB`` -> ``True``, ...)."""
    options.pop("keys", None)
    options.pop(FIX_OPTION, None)
    callback = callbacks.get(plan.command)
    return result if callback is None else callback(result, **options)


def emulation_error(plan: Emulate) -> NamespaceError:
    return NamespaceError(
        plan.command, "SCAN returned a key outside the namespace (not returned)", refused=False
    )


def refuse_in_pipeline(plan: Emulate) -> NamespaceError:
    return NamespaceError(
        plan.command,
        "emulated with SCAN on a namespaced client, which a pipeline or transaction "
        "cannot do: call it on the client",
    )


# -- wrapping a shared client ----------------------------------------------------------------


def check_no_client_cache(pool: Any) -> None:
    """Client-side caching keys its cache by logical names while the server invalidates
    real ones, so a namespaced client refuses a pool that caches."""
    if getattr(pool, "cache", None) is not None:
        raise TenantConfigError(
            "a namespaced client cannot share a pool with client-side caching "
            "(CLIENT TRACKING invalidates the server's key names, not the tenant's)"
        )


def clone_state(client: Any, namespace: Namespace, connection_pool: Any | None) -> dict[str, Any]:
    """The instance state of a namespaced client sharing ``client``'s pool.

    A shallow copy of ``client.__dict__`` (redis-py's own attributes, whatever they are
    in this version), then: the derived callbacks, no dedicated connection (a
    single-connection base keeps its connection to itself), never closing the shared
    pool, and the namespace. Pinned by tests (``test_namespace_clients.py``).
    """
    state = dict(vars(client))
    if connection_pool is not None:
        state["connection_pool"] = connection_pool
    check_no_client_cache(state["connection_pool"])
    state["response_callbacks"] = derived_callbacks(client.response_callbacks)
    state["connection"] = None
    state["auto_close_connection_pool"] = False
    state.update(namespace_state(namespace))
    return state


def namespace_state(namespace: Namespace) -> dict[str, Any]:
    """The namespace attributes of a namespaced client: the namespace, and its prefix in
    both types for the inlined one-key fast path of ``execute_command``."""
    return {
        "namespace": namespace,
        "_ns_str": namespace.prefix,
        "_ns_bytes": namespace.prefix_bytes,
    }
