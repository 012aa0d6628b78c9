"""Bookkeeping of the attributes the integration replaced, so it can put them back.

Popoto has no client factory or settings hook: the only way in is to replace module
attributes (and one class attribute). Like OpenTelemetry's instrumentors, every
replacement is recorded with the exact object it replaced and restored from that
record. Popoto modules also copy names at import (``from ..redis_db import
get_REDIS_DB``); :meth:`PatchSet.sweep` rebinds those copies and :meth:`PatchSet.restore` turns them
back, in every module loaded at that moment, including modules imported after
``install()`` that copied a replacement.

Nothing here does I/O or knows about Redis.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType

__all__ = ["Patch", "PatchSet", "loaded_modules"]


@dataclass(frozen=True, slots=True)
class Patch:
    """``owner.name`` was ``original`` and is now ``replacement``."""

    owner: object
    name: str
    original: object
    replacement: object


def loaded_modules(package: str) -> Iterator[ModuleType]:
    """Each loaded module of ``package``, once (pytest may alias ``src.popoto`` to them)."""
    seen: set[int] = set()
    prefix = package + "."
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        name = namespace.get("__name__") if isinstance(namespace, dict) else None
        if not isinstance(name, str) or not (name == package or name.startswith(prefix)):
            continue
        if id(module) not in seen:
            seen.add(id(module))
            yield module


class PatchSet:
    """Replaced attributes, restorable in reverse order.

    Only objects passed with ``copies=True`` are looked for by :meth:`sweep`: functions
    and clients that Popoto modules import by name. Identity, never equality, decides,
    so a ``None`` or an equal-but-different object is never mistaken for an original.
    """

    def __init__(self) -> None:
        self._patches: list[Patch] = []
        self._by_original: dict[int, Patch] = {}
        self._by_replacement: dict[int, Patch] = {}

    def __len__(self) -> int:
        return len(self._patches)

    def replace(
        self, owner: object, name: str, replacement: object, *, copies: bool = False
    ) -> object:
        """Set ``owner.name = replacement`` and remember what was there; returns it.

        For a class the raw class attribute is remembered (a property, not its value).
        """
        namespace = vars(owner)
        if name not in namespace:
            raise AttributeError(f"{_describe(owner)} has no attribute {name!r} to replace")
        original = namespace[name]
        patch = Patch(owner, name, original, replacement)
        setattr(owner, name, replacement)
        self._patches.append(patch)
        if copies and original is not None:
            self._by_original[id(original)] = patch
            self._by_replacement[id(replacement)] = patch
        return original

    def original(self, owner: object, name: str) -> object:
        """What ``owner.name`` was before it was replaced."""
        for patch in self._patches:
            if patch.owner is owner and patch.name == name:
                return patch.original
        raise KeyError(f"{_describe(owner)}.{name} was not replaced")

    def sweep(self, modules: Iterable[ModuleType]) -> int:
        """In each module, rebind names that hold a replaced original. Returns how many."""
        done = 0
        for module in modules:
            for name, value in list(vars(module).items()):
                patch = self._by_original.get(id(value))
                if patch is None or patch.original is not value:
                    continue
                if patch.owner is module and patch.name == name:
                    continue  # the replacement itself, already recorded
                self.replace(module, name, patch.replacement)
                done += 1
        return done

    def restore(self, modules: Iterable[ModuleType] = ()) -> list[str]:
        """Put every original back, newest first, then empty the set.

        ``modules`` are searched afterwards for names still holding a replacement:
        modules imported after the replacement copied it by name, and they get the
        original too. An attribute that someone else changed since (a test's
        ``monkeypatch``, Popoto resetting its async cache to ``None``) is left as it is
        and named in the result.
        """
        skipped = []
        for patch in reversed(self._patches):
            current = vars(patch.owner).get(patch.name)
            if current is patch.replacement:
                setattr(patch.owner, patch.name, patch.original)
            else:
                skipped.append(f"{_describe(patch.owner)}.{patch.name}")
        for module in modules:
            for name, value in list(vars(module).items()):
                copied = self._by_replacement.get(id(value))
                if copied is not None and copied.replacement is value:
                    setattr(module, name, copied.original)
        self._patches.clear()
        self._by_original.clear()
        self._by_replacement.clear()
        return skipped


def _describe(owner: object) -> str:
    return str(getattr(owner, "__name__", type(owner).__name__))
