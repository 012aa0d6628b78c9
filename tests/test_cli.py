"""The command line and the demo it runs."""

from __future__ import annotations

import io
import subprocess
import sys

from redis_tenancy._cli import main
from redis_tenancy._demo import TENANTS, run_demo


def test_demo_shows_every_request_on_its_own_server() -> None:
    out = io.StringIO()
    assert run_demo(600, out=out) == 0
    text = out.getvalue()
    assert "0 misroutes" in text
    rows = [
        line.split() for line in text.splitlines() if line.split()[:1] in ([t] for t in TENANTS)
    ]
    assert [row[0] for row in rows] == list(TENANTS)
    assert sum(int(row[1]) for row in rows) == 600  # requests counted on the servers
    assert all(row[3] == "0" for row in rows)  # misrouted column
    assert all(row[4].startswith("127.0.0.1:") for row in rows)
    # Act two: acme's primary is killed under load and restarted.
    assert "(1 failover)" in text
    assert "(1 failback, cooldown 1.0s)" in text
    assert " succeeded, 0 failed" in text


def test_python_dash_m_demo_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "redis_tenancy", "demo", "--requests", "90"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "0 misroutes" in result.stdout


def test_version_and_bad_arguments(capsys: object) -> None:
    assert main(["version"]) == 0
    result = subprocess.run(
        [sys.executable, "-m", "redis_tenancy", "demo", "--requests", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--requests must be at least 1" in result.stderr
