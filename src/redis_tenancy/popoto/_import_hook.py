"""Run a callback right after a named module has executed (``install()`` before ``import popoto``).

Python has no post-import hooks, so this is the usual construction (wrapt's
``register_post_import_hook`` works the same way): a finder at the front of
``sys.meta_path`` asks the other finders for the spec of a watched module and wraps
its loader; the wrapper lets the real loader execute the module, then calls the
callback before the importing code continues. ``popoto.redis_db`` is thereby patched
before any other Popoto module copies names out of it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

__all__ = ["PostImportHook"]

Callback = Callable[[ModuleType], None]


class _Loader(importlib.abc.Loader):
    """Delegates to the real loader; calls the callback once the module has run."""

    def __init__(self, loader: Any, callback: Callback) -> None:
        self._loader = loader
        self._callback = callback

    def __getattr__(self, name: str) -> Any:
        # get_source, get_data, is_package... for inspect, importlib.resources, tracebacks.
        return getattr(self._loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        create = getattr(self._loader, "create_module", None)
        return None if create is None else create(spec)

    def exec_module(self, module: ModuleType) -> None:
        # The module should look as if this wrapper had never existed.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        self._callback(module)


class PostImportHook(importlib.abc.MetaPathFinder):
    """A ``sys.meta_path`` finder that calls ``callbacks[name](module)`` after importing it."""

    def __init__(self, callbacks: Mapping[str, Callback]) -> None:
        self._callbacks = dict(callbacks)
        self._busy = threading.local()

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        callback = self._callbacks.get(fullname)
        if callback is None or getattr(self._busy, "name", None) == fullname:
            return None
        self._busy.name = fullname  # the other finders may call back into find_spec
        try:
            spec = _find_elsewhere(self, fullname, path, target)
        finally:
            self._busy.name = None
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _Loader(spec.loader, callback)
        return spec

    def enable(self) -> None:
        """Put the hook first on ``sys.meta_path`` (idempotent)."""
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def disable(self) -> None:
        """Take the hook off ``sys.meta_path`` (idempotent)."""
        while self in sys.meta_path:
            sys.meta_path.remove(self)


def _find_elsewhere(
    hook: object, fullname: str, path: Sequence[str] | None, target: ModuleType | None
) -> importlib.machinery.ModuleSpec | None:
    for finder in list(sys.meta_path):
        find = getattr(finder, "find_spec", None)
        if finder is hook or find is None:
            continue
        spec = find(fullname, path, target)
        if spec is not None:
            return spec  # type: ignore[no-any-return]
    return None
