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

Everything here is I/O-free; the pipeline class in ``_clients`` drives it.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from redis.exceptions import NoScriptError

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
    registry: ScriptRegistry,
    stack: Sequence[tuple[Sequence[Any], Mapping[str, Any]]],
    results: Sequence[Any],
) -> list[tuple[int, tuple[Any, ...]]]:
    """Which pipeline commands to re-run, and as what.

    ``stack`` is the pipeline's command stack as it was sent and ``results`` its
    replies (errors in place). Every ``EVALSHA`` answered with ``NoScriptError`` whose
    body is known becomes ``(index, ("EVAL", body, numkeys, *keys_and_args))``. Only
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
        body = registry.text(sha)
        if body is not None:
            retry.append((index, ("EVAL", body, *args[2:])))
    return retry
