"""Popoto's Lua scripts per endpoint, and how a pipeline recovers from ``NoScriptError``.

Popoto's ``run_lua`` queues a bare ``EVALSHA`` on a pipeline once the script was
loaded *somewhere* in the process (``_LOADED_SHAS`` is one set). With tenants on
several servers, and failover inside a tenant, "somewhere" is the wrong server as
often as not, and the pipeline fails with ``NoScriptError``. Two parts fix it:

- :class:`ScriptRegistry` remembers which SHAs each endpoint has loaded (the
  redacted URL the router reports as active), so a pipeline command is preceded by
  one ``SCRIPT LOAD`` the first time per endpoint; a failover or a re-registration
  forgets the endpoints involved.
- The cache can still be wrong: a pipeline queued for the primary is retried by
  redis-py on the backup when the primary dies in flight, and a restarted server
  has lost its scripts. :func:`retry_commands` finds the ``EVALSHA`` replies that
  came back ``NoScriptError`` and turns those commands into ``EVAL`` with the script
  body, which the pipeline re-runs (and so loads) in one more round trip.

A namespaced tenant's client loads a script *wrapped* in the namespace's Lua prelude
(:mod:`redis_tenancy._nslua`, one wrapped text for every tenant), and its pipelines
queue ``EVALSHA`` already rewritten to the wrapped SHA. So for those the registry
records the wrapped SHA as loaded (:meth:`ScriptRegistry.wrapped_sha`), and recovery
re-runs the *wrapped* body (:meth:`ScriptRegistry.wrapped_text`), never the caller's
text, which would run outside the namespace.

Everything here is I/O-free; the pipeline class in ``_clients`` drives it.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from redis.exceptions import NoScriptError

from .._nslua import wrap

__all__ = ["ScriptRegistry", "retry_commands"]


class ScriptRegistry:
    """Script texts by SHA, and the SHAs each endpoint is known to have loaded.

    Shared by every tenant: it holds script texts and endpoint names, never a
    tenant's name or client.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sha_of: dict[str, str] = {}
        self._text_of: dict[str, str] = {}
        self._loaded: dict[str, frozenset[str]] = {}
        self._wrapped_text: dict[str, bytes] = {}

    def sha(self, text: str) -> str:
        """The SHA1 Redis gives ``text`` (UTF-8, as Popoto's scripts are sent)."""
        try:
            return self._sha_of[text]
        except KeyError:
            sha = hashlib.sha1(text.encode("utf-8")).hexdigest()
            with self._lock:
                self._sha_of[text] = sha
                self._text_of[sha] = text
            return sha

    def remember(self, scripts: Mapping[str, Any]) -> None:
        """Learn texts by SHA from elsewhere (scripts queued with redis-py's ``Script``)."""
        for sha, text in scripts.items():
            if sha not in self._text_of:
                body = text.decode("utf-8") if isinstance(text, bytes) else str(text)
                with self._lock:
                    self._text_of[sha] = body

    def text(self, sha: str) -> str | None:
        """The body of a script seen before, else ``None``."""
        return self._text_of.get(sha)

    def wrapped_sha(self, text: str) -> str:
        """The SHA of ``text`` as a namespaced client loads it (wrapped in the prelude).

        Asks :func:`~redis_tenancy._nslua.wrap` every time rather than caching here: it
        is a dict lookup there, and it re-registers a script the process-wide map
        forgot, which the namespaced pipeline needs to translate the caller's SHA.
        """
        wrapped = wrap(text)
        if wrapped.sha not in self._wrapped_text:
            with self._lock:
                self._wrapped_text[wrapped.sha] = wrapped.text
        return wrapped.sha

    def wrapped_text(self, sha: str) -> bytes | None:
        """The wrapped body whose SHA is ``sha``, for a script seen before, else ``None``.

        Texts learned from redis-py ``Script`` objects were never wrapped here: they are
        wrapped on the first miss (recovery is rare, the loop is short).
        """
        found = self._wrapped_text.get(sha)
        if found is None:
            for text in list(self._text_of.values()):
                self.wrapped_sha(text)
            found = self._wrapped_text.get(sha)
        return found

    def loaded(self, endpoint: str, sha: str) -> bool:
        """Whether ``endpoint`` is believed to have ``sha`` loaded."""
        return sha in self._loaded.get(endpoint, ())

    def mark(self, endpoint: str, *shas: str) -> None:
        """Record that ``endpoint`` has loaded ``shas``."""
        with self._lock:
            self._loaded[endpoint] = self._loaded.get(endpoint, frozenset()).union(shas)

    def forget(self, *endpoints: str | None) -> None:
        """Drop everything known about ``endpoints`` (after a failover or replacement)."""
        with self._lock:
            for endpoint in endpoints:
                if endpoint is not None:
                    self._loaded.pop(endpoint, None)

    def shas(self) -> list[str]:
        """The SHAs of every script seen."""
        return sorted(self._text_of)

    def endpoints(self) -> list[str]:
        """Endpoints with at least one script believed loaded."""
        return sorted(self._loaded)


def retry_commands(
    text_of: Callable[[str], str | bytes | None],
    stack: Sequence[tuple[Sequence[Any], Mapping[str, Any]]],
    results: Sequence[Any],
) -> list[tuple[int, tuple[Any, ...]]]:
    """Which pipeline commands to re-run, and as what.

    ``stack`` is the pipeline's command stack as it was sent and ``results`` its
    replies (errors in place). Every ``EVALSHA`` answered with ``NoScriptError`` whose
    body ``text_of(sha)`` knows becomes ``(index, ("EVAL", body, numkeys, *keys_and_args))``
    (``ScriptRegistry.text`` for plain pipelines, ``ScriptRegistry.wrapped_text`` for
    namespaced ones, whose stack holds wrapped SHAs and prefixed arguments). Only
    those commands ran "not at all"; everything else in the pipeline (and, in a
    ``MULTI``, the rest of the transaction) did run, so re-running only these keeps
    every other command from running twice.
    """
    retry = []
    for index, result in enumerate(results):
        if not isinstance(result, NoScriptError) or index >= len(stack):
            continue
        args = stack[index][0]
        if len(args) < 3 or str(args[0]).upper() != "EVALSHA":
            continue
        sha = args[1].decode() if isinstance(args[1], bytes) else str(args[1])
        body = text_of(sha)
        if body is not None:
            retry.append((index, ("EVAL", body, *args[2:])))
    return retry
