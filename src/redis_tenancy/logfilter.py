"""A logging filter that stamps each record with the active tenant: ``record.tenant``.

Attach it to a *handler* (a filter on a logger only sees records logged on that very
logger, not those propagating from its children), then use ``%(tenant)s`` in the
format::

    handler = logging.StreamHandler()
    handler.addFilter(TenantLogFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s [%(tenant)s] %(message)s"))

The filter runs in the thread or task that logs, where the tenant is active; with a
``QueueHandler``, attach it to the ``QueueHandler`` so the stamp is taken before the
record crosses to the listener thread.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import default_router

if TYPE_CHECKING:
    from . import Router

__all__ = ["TenantLogFilter"]

_UNSET = object()


class TenantLogFilter(logging.Filter):
    """Set ``record.tenant`` to the active tenant's name; never drops a record.

    Args:
        router: whose active tenant is meant; default the module-level router.
        placeholder: the value when no tenant is selected (strict mode outside any
            block) or the active one has the empty name (the default tenant, unless
            ``ENV`` names it).

    A record that already has a ``tenant`` attribute (``extra={"tenant": ...}``) keeps it.
    """

    def __init__(self, router: Router | None = None, *, placeholder: str = "-") -> None:
        super().__init__()
        self.router = router if router is not None else default_router
        self.placeholder = placeholder

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "tenant"):
            record.tenant = self._name() or self.placeholder
        return True

    def _name(self) -> str:
        router = self.router
        # In strict mode outside any block current() raises, and the error logs
        # itself: from inside a log call that would recurse. Ask only when it answers.
        if router.require_tenant and router.var.get(_UNSET) is _UNSET:
            return ""
        return router.current()
