"""The rules every task-queue integration follows, written once and free of I/O.

Celery, RQ and Dramatiq differ in where a message carries extra data (a header, job
meta, message options) and in how a job is stopped, but not in the decisions:

- **publishing**: a message records the tenant of the tenant block that is open
  where it is published, and nothing when no block is open. Outside every block the
  router's ContextVar is *unset* (reads return its default), so "no block open" is
  told apart from "the default tenant's block is open" even when both would use
  the same default tenant.
- **running**: :func:`decide` turns what the message carries into a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import Router

__all__ = ["KEY", "STRICT_REFUSAL", "Verdict", "decide", "publishing_tenant"]

#: The name under which every integration stores the publisher's tenant.
KEY = "redis_tenancy_tenant"

STRICT_REFUSAL = (
    "published outside any tenant block, and strict mode refuses to guess a tenant "
    "(publish it inside `with tenant(name):`, or mark it tenant_required=False)"
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a worker does about one execution.

    Attributes:
        activate: the tenant to make active; ``None`` leaves the context as it is.
        refusal: why the job must not run (``activate`` is then ``None``).
    """

    activate: str | None = None
    refusal: str | None = None


def decide(carried: object, *, inline: bool, required: bool, strict: bool, default: str) -> Verdict:
    """Decide the tenant of one execution from what its message carried.

    Args:
        carried: the stored tenant name, ``None`` when the message has none.
        inline: the job runs in its publisher's own context (Celery eager mode), so
            the publisher's tenant, if any, is already active.
        required: the job needs a tenant (``tenant_required`` was not set to False).
        strict: refuse jobs published outside any tenant instead of using ``default``.
        default: the router's default tenant name.
    """
    if isinstance(carried, str):
        return Verdict(activate=carried)
    if carried is not None:
        return Verdict(refusal=f"malformed {KEY} value of type {type(carried).__name__}")
    if inline or not required:
        return Verdict()
    if strict:
        return Verdict(refusal=STRICT_REFUSAL)
    return Verdict(activate=default)


_UNSET = object()


def publishing_tenant(router: Router) -> str | None:
    """The tenant a message published here should carry: the open block's, or ``None``."""
    # ContextVar.get(default) returns *its* argument when the variable is unset in
    # this context, even though the variable has a default of its own.
    if router.var.get(_UNSET) is _UNSET:
        return None
    return router.current()
