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
from collections.abc import Callable, Generator, Hashable, MutableMapping
from typing import Any, ClassVar, Final, TypeVar

from redis.client import CaseInsensitiveDict
from redis.exceptions import NoScriptError

from ._errors import NamespaceError, TenantConfigError
from ._keyfinder import CommandSpec, parse_command_info
from ._keyspecs import COMMANDS
from ._namespace import (
    Emulate,
    KeyOutside,
    Lookup,
    Namespace,
    Plan,
    Send,
    spec_from_command_info,
)
from ._nslua import wrapped_sha
from ._nsreplies import unprefix_message

__all__ = [
    "FIX_OPTION",
    "NO_SCRIPT",
    "RAW",
    "NamespacedCallbacks",
    "NamespacedClientParts",
    "NamespacedPubSubParts",
    "as_namespace",
    "check_no_client_cache",
    "clone_state",
    "derived_callbacks",
    "emulation_result",
    "learn",
    "learned_for",
    "namespace_state",
    "planning",
    "pubsub_args",
    "pubsub_handler",
    "refuse_in_pipeline",
    "resolve_pending",
    "send_args",
]

#: The execute-command option that carries a reply fix to the wrapped callback.
FIX_OPTION: Final = "_redis_tenancy_namespace_fix"
#: The queued-command option that carries the caller's SHA of a script not loaded yet.
PENDING_OPTION: Final = "_redis_tenancy_namespace_pending_sha"
#: The server's own words for a missing script, for a SHA this process never loaded.
NO_SCRIPT: Final = "No matching script. Please use EVAL."


def as_namespace(namespace: Namespace | str | bytes) -> Namespace:
    return namespace if isinstance(namespace, Namespace) else Namespace(namespace)


def planning(namespace: Namespace, pool: Any, args: tuple[Any, ...]) -> Generator[str, Any, Plan]:
    """Plan ``args``; a command missing from the table is looked up once per server.

    A generator, so the sync and async clients share it: it yields the name of a
    command whose ``COMMAND INFO`` reply it needs (the driver runs it on a pooled
    connection and sends the reply back) and returns the plan.
    """
    plan = namespace.plan(args)
    if isinstance(plan, Lookup):
        learned = learned_for(pool)
        if plan.name not in learned:
            learn(learned, plan.name, (yield plan.name))
        plan = namespace.plan(args, learned)
    return plan


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


def send_args(plan: Plan, options: dict[str, Any], *, queued: bool) -> tuple[Any, ...]:
    """The arguments a pipeline sends for ``plan`` (options updated in place).

    An EVALSHA of a SHA this process has not loaded yet is resolved after the pipeline
    loads its scripts (:func:`resolve_pending`) when queued, refused when run at once.
    """
    if isinstance(plan, Emulate):
        raise refuse_in_pipeline(plan)
    assert isinstance(plan, Send)
    if plan.pending_sha is not None:
        if not queued:
            raise NoScriptError(NO_SCRIPT)
        options[PENDING_OPTION] = plan.pending_sha
    if plan.fix is not None:
        options[FIX_OPTION] = plan.fix
    return plan.args


def resolve_pending(stack: list[Any], *, final: bool) -> None:
    """Give queued EVALSHAs of scripts loaded since they were queued their wrapped SHA;
    with ``final``, drop the marks of those still unknown (the server will say
    NOSCRIPT)."""
    for i, (args, options) in enumerate(stack):
        caller = options.get(PENDING_OPTION)
        if caller is None:
            continue
        mapped = wrapped_sha(caller)
        if mapped is not None or final:
            options.pop(PENDING_OPTION)
        if mapped is not None:
            stack[i] = ((args[0], mapped, *args[2:]), options)


# -- pub/sub -------------------------------------------------------------------------------


def pubsub_handler(
    namespace: Namespace,
    push_handler_func: Any,
    unprefix: Callable[[Namespace, Any], Any] = unprefix_message,
) -> Any:
    """The user's handler, called with the message's names un-prefixed: a push handler
    (raw messages) by default, a channel handler with ``unprefix_parsed_message``."""
    if push_handler_func is None:
        return None

    def handler(message: Any) -> Any:
        return push_handler_func(unprefix(namespace, message))

    return handler


def pubsub_args(namespace: Namespace, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A pub/sub command's arguments in the namespace (anything else is refused)."""
    plan = namespace.plan(args, None, pubsub=True)
    if not isinstance(plan, Send):
        raise NamespaceError(str(args[0]).upper(), "not a pub/sub command")
    return plan.args


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


# -- the client classes' shared half -------------------------------------------------------


_Client = TypeVar("_Client", bound="NamespacedClientParts")


class NamespacedClientParts:
    """What ``NamespacedRedis`` and ``AsyncNamespacedRedis`` share beyond their command
    paths: construction, :meth:`wrap`, and the objects built on the client. Mixed in
    before the redis-py class; each names its pipeline and pub/sub classes."""

    namespace: Namespace
    _ns_str: str
    _ns_bytes: bytes
    connection_pool: Any
    response_callbacks: Any
    _pipeline_class: ClassVar[Callable[..., Any]]
    _pubsub_class: ClassVar[Callable[..., Any]]
    #: Attributes :meth:`wrap` sets on top of the base client's state.
    _wrapped_state: ClassVar[dict[str, Any]] = {}

    def __init__(self, *args: Any, namespace: Namespace | str | bytes, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_no_client_cache(self.connection_pool)
        self.__dict__.update(namespace_state(as_namespace(namespace)))
        self.response_callbacks = derived_callbacks(self.response_callbacks)

    @classmethod
    def wrap(
        cls: type[_Client],
        client: Any,
        namespace: Namespace | str | bytes,
        *,
        connection_pool: Any = None,
    ) -> _Client:
        """A namespaced client over ``client``'s connection pool, for one tenant.

        Cheap (a few microseconds, a few hundred bytes): it shares ``client``'s pool
        (or ``connection_pool``, any object with the public ConnectionPool methods) and
        a callbacks dict derived once per base client. Closing it never closes the
        shared pool.
        """
        obj = cls.__new__(cls)
        obj.__dict__.update(clone_state(client, as_namespace(namespace), connection_pool))
        obj.__dict__.update(cls._wrapped_state)
        return obj

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.namespace.prefix!r} ({self.connection_pool!r})>"

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        return self._pipeline_class(
            self.connection_pool, self.response_callbacks, transaction, shard_hint, self.namespace
        )

    def pubsub(self, **kwargs: Any) -> Any:
        return self._pubsub_class(self.connection_pool, namespace=self.namespace, **kwargs)

    def client(self) -> Any:
        return type(self)(
            connection_pool=self.connection_pool,
            single_connection_client=True,
            namespace=self.namespace,
        )

    def monitor(self) -> Any:
        raise NamespaceError(
            "MONITOR", "streams the commands of every client (other tenants' included)"
        )


class NamespacedPubSubParts:
    """The construction both namespaced ``PubSub`` classes share (mixed in before the
    redis-py class): the namespace, and the user's push handler seeing logical names."""

    namespace: Namespace

    def __init__(
        self,
        connection_pool: Any,
        *,
        namespace: Namespace,
        push_handler_func: Any = None,
        **kwargs: Any,
    ) -> None:
        self.namespace = namespace
        handler = pubsub_handler(namespace, push_handler_func)
        super().__init__(connection_pool, push_handler_func=handler, **kwargs)  # type: ignore[call-arg]
