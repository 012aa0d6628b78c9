"""RQ: a job runs with the tenant that was active where it was enqueued.

One job class does both halves. :meth:`TenantJob.create` (which every
``Queue.enqueue*`` goes through) stores the open tenant block's name in the job's
``meta``; :meth:`TenantJob.perform` (what the worker calls to run the function)
makes it active around the function and resets it afterwards. A job enqueued
outside any tenant block runs under the router's default tenant, or, in strict mode,
fails without running (``NoActiveTenantError``); a job naming a tenant the worker
does not know fails with ``UnknownTenantError``. Dependent jobs (``depends_on``)
carry the tenant of the block they were enqueued in, like any other job.

Use the class on both sides, the queue and the worker::

    from rq import Queue, Worker
    from redis_tenancy.rq import TenantJob

    queue = Queue("default", connection=broker, job_class=TenantJob)
    with tenant("acme"):
        queue.enqueue(count_visit)
    Worker([queue], connection=broker, job_class=TenantJob).work()
    # command line: rq worker --job-class redis_tenancy.rq.TenantJob

Subclass to pick another router or strict mode (``router = ...``, ``strict = True``).
A job that may run without a tenant in strict mode is enqueued with
``meta={REQUIRED_KEY: False}``. The job's ``on_success``/``on_failure`` callbacks run
after ``perform`` returns, outside the tenant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rq.job import Job

from . import NoActiveTenantError, default_router
from ._tasks import KEY, decide, publishing_tenant

if TYPE_CHECKING:
    from . import Router

__all__ = ["META_KEY", "REQUIRED_KEY", "TenantJob"]

#: The ``job.meta`` key holding the enqueuing code's tenant.
META_KEY = KEY
#: ``meta={REQUIRED_KEY: False}`` lets a job enqueued outside any tenant run without one.
REQUIRED_KEY = "redis_tenancy_tenant_required"


class TenantJob(Job):
    """An RQ job that remembers its publisher's tenant and runs under it."""

    #: Whose tenants are meant; ``None`` is the module-level default router.
    router: ClassVar[Router | None] = None
    #: Refuse jobs enqueued outside any tenant; ``None`` follows the router's mode.
    strict: ClassVar[bool | None] = None

    @classmethod
    def tenancy_router(cls) -> Router:
        """The router this job class resolves tenants with."""
        return cls.router if cls.router is not None else default_router

    @classmethod
    def create(cls, *args: Any, **kwargs: Any) -> Any:
        """``Job.create`` that also stores the active tenant in ``meta``."""
        name = publishing_tenant(cls.tenancy_router())
        if name is not None:
            meta = dict(kwargs.get("meta") or {})
            meta.setdefault(META_KEY, name)
            kwargs["meta"] = meta
        return super().create(*args, **kwargs)

    def perform(self) -> Any:
        """Run the job's function with its tenant active (or refuse to run it)."""
        router = self.tenancy_router()
        verdict = decide(
            self.meta.get(META_KEY),
            inline=False,
            required=self.meta.get(REQUIRED_KEY, True) is not False,
            strict=router.require_tenant if self.strict is None else self.strict,
            default=router.default_name,
        )
        if verdict.refusal is not None:
            raise NoActiveTenantError(f"RQ job {self.id}: {verdict.refusal}")
        if verdict.activate is None:
            return super().perform()
        token = router.activate(verdict.activate)  # UnknownTenantError fails the job
        try:
            return super().perform()
        finally:
            token.var.reset(token)
