"""Celery: a task runs with the tenant that was active where it was published.

``install(app)`` does three things:

- **publish**: every task message sent while a tenant block is active carries that
  tenant's name in a message header (``redis_tenancy_tenant``). The header is added
  by Celery's ``before_task_publish`` signal, so ``delay()``, ``apply_async()``,
  ``send_task()``, retries, chains, groups and chords all carry it; follow-up
  messages that the worker sends itself (the next step of a chain, a chord's
  callback) are published while the parent task's tenant is active, so they carry
  it too.
- **run**: the worker makes that tenant active before the task body runs
  (``task_prerun``) and resets it after everything the task triggers has been sent
  (``task_postrun``, which Celery runs in a ``finally``), so a worker process or
  thread never carries one task's tenant into the next.
- **refuse**: a message with no header (published outside any tenant block, or by
  a publisher without this integration) runs under the router's default tenant, or,
  in strict mode, fails before its body runs with ``NoActiveTenantError``; a header
  naming a tenant the worker does not know fails with ``UnknownTenantError``. That
  check lives in the app's base task class (``before_start``), which ``install``
  swaps for a subclass: signal handlers cannot stop a task (Celery logs and ignores
  their errors), a base class can. Hence ``install`` must run before tasks are
  declared, and a task declared with its own ``base=`` should derive from
  :class:`TenantTask`.

Tasks that legitimately run outside any tenant (a beat job fanning out over all
tenants) are declared with ``@app.task(tenant_required=False)``; Celery's own
``celery.*`` tasks are treated the same way. Eager execution (``task_always_eager``,
``apply()``) runs in the caller's context, so it keeps the caller's tenant.

Example::

    from celery import Celery
    from redis_tenancy.celery import install

    app = Celery("proj", broker="redis://127.0.0.1:6379/15")
    install(app)                     # or install(app, strict=True)

    @app.task
    def count_visit() -> None:
        POPOTO_REDIS_DB.incr("visits")   # the publisher's tenant

    with tenant("acme"):
        count_visit.delay()
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery import Celery, Task, signals  # type: ignore[import-untyped]

from . import NoActiveTenantError, PopotoException, TenantConfigError, default_router
from ._tasks import KEY, decide, publishing_tenant

if TYPE_CHECKING:
    from . import Router

__all__ = ["HEADER", "TenantTask", "install"]

#: The message header carrying the publisher's tenant.
HEADER = KEY
# Where prerun leaves its verdict for before_start and postrun (the request object
# lives exactly as long as one execution of the task).
_TOKEN = "redis_tenancy_token"
_REFUSAL = "redis_tenancy_refusal"


@dataclass(frozen=True, slots=True)
class _Installed:
    router: Router
    strict: bool


_installs: weakref.WeakKeyDictionary[Any, _Installed] = weakref.WeakKeyDictionary()
_lock = threading.Lock()
_publish_router: list[Router] = []


class TenantTask(Task):  # type: ignore[misc]  # celery ships no type information
    """Celery base task that refuses to run when its tenant cannot be established.

    ``install(app)`` makes the app's ``Task`` a subclass of this one; declare tasks
    with ``base=`` a subclass of it if you use your own base class. Set
    ``tenant_required = False`` (``@app.task(tenant_required=False)``) on tasks that
    may run outside any tenant.
    """

    abstract = True
    #: ``False``: a message without a tenant runs with no tenant activated.
    tenant_required = True

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        refusal = getattr(self.request, _REFUSAL, None)
        if refusal is not None:
            raise refusal
        super().before_start(task_id, args, kwargs)


def install(app: Celery, router: Router | None = None, *, strict: bool | None = None) -> None:
    """Carry the active tenant from publisher to worker for ``app``'s tasks.

    Call it where the app is created, before any task is declared (and so before
    the worker starts). Calling it again updates ``strict``.

    Args:
        app: the Celery app.
        router: whose tenants are meant; default the module-level router. One router
            per process: message headers are added process-wide.
        strict: refuse tasks published outside any tenant block. Default: the
            router's own strict mode (``REDIS_TENANCY_REQUIRE_TENANT``).

    Raises:
        TenantConfigError: ``app`` already has tasks built on a base class that is not
            a :class:`TenantTask`, or another router was installed before.
    """
    router = router if router is not None else default_router
    with _lock:
        if _publish_router and _publish_router[0] is not router:
            raise TenantConfigError(
                "redis_tenancy.celery.install(): another Router is already installed in this "
                "process (task headers are process-wide; use one router)"
            )
        if not issubclass(app.Task, TenantTask):
            if app.finalized:
                raise TenantConfigError(
                    "redis_tenancy.celery.install() must run before the app's tasks are "
                    "declared and used, or the app must be created with task_cls=TenantTask"
                )
            app.Task = type("Task", (TenantTask, app.Task), {"__module__": __name__})
        resolved = router.require_tenant if strict is None else strict
        _installs[app] = _Installed(router, resolved)
        if not _publish_router:
            _publish_router.append(router)
            signals.before_task_publish.connect(_on_publish, weak=False, dispatch_uid=HEADER)
            signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid=HEADER)
            signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid=HEADER)


def _on_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    # A retry re-publishes the message with its headers: keep the tenant it has.
    if headers is None or HEADER in headers:
        return
    name = publishing_tenant(_publish_router[0])
    if name is not None:
        headers[HEADER] = name


def _on_prerun(task: Any = None, **_: Any) -> None:
    installed = _installs.get(task.app) if task is not None else None
    if installed is None:
        return
    request = task.request
    required = getattr(task, "tenant_required", True) and not task.name.startswith("celery.")
    verdict = decide(
        request.get(HEADER),
        inline=bool(request.is_eager),
        required=required,
        strict=installed.strict,
        default=installed.router.default_name,
    )
    if verdict.refusal is not None:
        setattr(request, _REFUSAL, NoActiveTenantError(verdict.refusal))
        return
    if verdict.activate is None:
        return
    try:
        setattr(request, _TOKEN, installed.router.activate(verdict.activate))
    except PopotoException as exc:  # UnknownTenantError, InvalidTenantNameError
        setattr(request, _REFUSAL, exc)


def _on_postrun(task: Any = None, **_: Any) -> None:
    if task is None:
        return
    token = task.request.__dict__.pop(_TOKEN, None)
    if token is not None:
        token.var.reset(token)
