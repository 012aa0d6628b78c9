"""The integrations are optional: ``import redis_tenancy`` loads none of their frameworks.

Each integration module imports its own framework and nothing else's; the ASGI and
WSGI middlewares, the executor and the logging filter import no framework at all.
Checked in a fresh interpreter, where ``sys.modules`` shows exactly what was loaded.
(redis-py itself imports OpenTelemetry when it is installed; what ``import redis``
loads is the baseline.)
"""

from __future__ import annotations

import json

from .conftest import run_python

FRAMEWORKS = [
    "asgiref",
    "celery",
    "django",
    "dramatiq",
    "fastapi",
    "flask",
    "kombu",
    "opentelemetry",
    "prometheus_client",
    "rq",
    "starlette",
    "uvicorn",
    "werkzeug",
]

#: Each integration module and the frameworks it may bring in.
OWN = {
    "redis_tenancy.asgi": [],
    "redis_tenancy.wsgi": [],
    "redis_tenancy.executors": [],
    "redis_tenancy.logfilter": [],
    "redis_tenancy._cli": [],
    "redis_tenancy.django": ["django", "asgiref"],
    # kombu (Celery's transport layer) imports Django itself when Django is installed.
    "redis_tenancy.celery": ["celery", "kombu", "django"],
    "redis_tenancy.rq": ["rq"],
    "redis_tenancy.dramatiq": ["dramatiq"],
    "redis_tenancy.otel": [],  # the instrumentor is imported on first instrument()
    "redis_tenancy.prometheus": ["prometheus_client"],
}


def test_importing_redis_tenancy_or_an_integration_loads_no_other_framework() -> None:
    result = run_python(
        f"""
        import importlib, json, sys
        frameworks = {FRAMEWORKS!r}

        def loaded():
            return sorted({{m.split(".")[0] for m in sys.modules}} & set(frameworks))

        report = {{}}
        import redis  # a hard dependency: what it loads itself is not ours to judge
        baseline = set(loaded())
        import redis_tenancy
        report["redis_tenancy"] = sorted(set(loaded()) - baseline)
        for module in {list(OWN)!r}:
            before = set(loaded())
            importlib.import_module(module)
            report[module] = sorted(set(loaded()) - before)
            for name in list(sys.modules):  # forget them, so the next one starts clean
                if name.split(".")[0] in set(frameworks) - baseline:
                    del sys.modules[name]
        print(json.dumps(report))
        """
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report.pop("redis_tenancy") == []
    for module, frameworks in report.items():
        assert set(frameworks) <= set(OWN[module]), (module, frameworks)
    assert report["redis_tenancy.django"] == ["asgiref", "django"]
    assert {"celery", "kombu"} <= set(report["redis_tenancy.celery"])
