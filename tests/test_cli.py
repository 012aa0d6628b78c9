"""The command line and the demo it runs."""

from __future__ import annotations

import io
import json
import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from redis_tenancy._cli import main
from redis_tenancy._demo import TENANTS, run_demo
from redis_tenancy._embedded import RedisServer, free_port

from .conftest import SECRET, Servers, direct


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


# -- the operator commands against real servers ---------------------------------------------


def write_config(path: Path, tables: dict[str, dict[str, object]]) -> Path:
    lines = []
    for name, table in tables.items():
        lines.append(f"[tenants.{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def config(servers: Servers, tmp_path: Path) -> Path:
    """acme on b, globex on c, locked on the password-protected server."""
    return write_config(
        tmp_path / "tenants.toml",
        {
            "acme": {"url": servers.b.url},
            "globex": {"url": servers.c.url},
            "locked": {"url": servers.auth.url, "socket_timeout": 2},
        },
    )


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``main()`` in-process. A generous default timeout: a busy machine must not turn
    a healthy tenant into a timeout (a ``--timeout`` after the subcommand wins)."""
    code = main(["--timeout", "30", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def pings(server: RedisServer) -> int:
    """PING commands the server has run since its stats were last reset."""
    with direct(server) as client:
        stats = client.info("commandstats")
    return int(stats.get("cmdstat_ping", {}).get("calls", 0))


def reset_stats(*servers: RedisServer) -> None:
    for server in servers:
        with direct(server) as client:
            client.config_resetstat()


def test_cli_check_pings_every_tenant_in_parallel_and_exits_0(
    servers: Servers, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reset_stats(servers.a, servers.b, servers.c, servers.auth)
    code, out, err = run_cli(capsys, "--config", str(config), "check")
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:4]}
    assert rows["acme"][1] == f"redis://{servers.b.address}/0"
    assert rows["locked"][1] == f"redis://:***@{servers.auth.address}/0"
    assert all(row[-1] == "ok" for row in rows.values())
    assert out.splitlines()[-1] == "3 tenants: 3 ok, 0 failed"
    assert SECRET not in out + err
    assert err == ""  # no progress bar when stderr is not a terminal
    # Each tenant's PING reached its own server, and nothing reached the default's.
    assert [pings(s) for s in (servers.a, servers.b, servers.c, servers.auth)] == [0, 1, 1, 1]


def test_cli_check_reports_down_and_hung_tenants_and_exits_1(
    servers: Servers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hung = RedisServer().start()
    try:
        hung.signal(signal.SIGSTOP)  # accepts connections, never answers
        config = write_config(
            tmp_path / "t.toml",
            {
                "acme": {"url": servers.b.url},
                "down": {"url": f"redis://127.0.0.1:{free_port()}/0"},
                "hung": {"url": hung.url},
            },
        )
        # Only the hung tenant gets the short deadline: it can never answer in time,
        # while a busy machine must not turn the healthy one into a timeout.
        code, out, err = run_cli(
            capsys, "check", "hung", "--config", str(config), "--timeout", "0.5"
        )
        assert code == 1, err
        assert out.splitlines()[1].endswith("timeout: no answer in 0.5s")
    finally:
        hung.stop()
    code, out, err = run_cli(
        capsys, "check", "acme", "down", "--config", str(config), "--json", "--timeout", "30"
    )
    assert code == 1, err
    report = json.loads(out)
    states = {t["tenant"]: (t["state"], t["error"]) for t in report["tenants"]}
    assert report["ok"] is False
    assert states["acme"] == ("ok", None)
    assert states["down"][0] == "failed"
    assert "Connection refused" in states["down"][1]


def test_cli_status_shows_the_failed_over_tenant_on_its_backup(
    servers: Servers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    config = write_config(
        tmp_path / "t.toml", {"ha": {"url": dead, "failover_urls": [servers.b.url]}}
    )
    reset_stats(servers.b)
    code, out, err = run_cli(capsys, "status", "--config", str(config), "--json")
    assert code == 0, err
    (ha,) = json.loads(out)["tenants"]
    assert ha["state"] == "ok"
    assert ha["active"] == f"redis://{servers.b.address}/0"
    assert [(e["circuit"], e["active"]) for e in ha["endpoints"]] == [
        ("open", False),
        ("closed", True),
    ]
    assert pings(servers.b) == 1
    code, out, _ = run_cli(capsys, "status", "--config", str(config))
    assert code == 0
    assert "*" in next(line for line in out.splitlines() if servers.b.address in line)


def test_cli_info_and_keys_read_the_right_tenant_with_scan(
    servers: Servers, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with direct(servers.b) as client:
        client.mset({f"user:{n}": n for n in range(25)} | {f"other:{n}": n for n in range(5)})
    with direct(servers.c) as client:
        client.set("user:globex", 1)
    reset_stats(servers.b)
    code, out, err = run_cli(
        capsys, "keys", "acme", "--config", str(config), "--pattern", "user:*", "--count", "7"
    )
    assert code == 0, err
    assert sorted(out.split()) == sorted(f"user:{n}" for n in range(25))
    code, out, _ = run_cli(capsys, "keys", "acme", "--config", str(config), "--limit", "3")
    assert (code, len(out.split())) == (0, 3)
    with direct(servers.b) as client:
        stats = client.info("commandstats")
    assert "cmdstat_scan" in stats
    assert "cmdstat_keys" not in stats  # SCAN, never KEYS
    code, out, _ = run_cli(capsys, "info", "acme", "--config", str(config), "--section", "keyspace")
    assert code == 0
    assert out.startswith("db0:keys=30,expires=0,")
    code, out, _ = run_cli(capsys, "info", "globex", "--config", str(config), "--json")
    assert code == 0
    assert json.loads(out)["tcp_port"] == servers.c.port


def test_cli_config_validate_show_and_errors_never_show_secrets(
    servers: Servers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path / "t.toml",
        {
            "locked": {
                "url": f"redis://:{SECRET}@{servers.auth.address}/0",
                "failover_urls": [f"redis://user:{SECRET}@{servers.b.address}/1"],
            },
            "keyed": {"host": "127.0.0.1", "port": servers.auth.port, "password": SECRET},
        },
    )
    assert run_cli(capsys, "config", "validate", "--config", str(config))[:2] == (
        0,
        f"{config}: 2 tenants, valid\n",
    )
    code, out, err = run_cli(capsys, "--config", str(config), "config", "show")
    assert code == 0, err
    assert f'url = "redis://:***@{servers.auth.address}/0"' in out
    assert f'failover_urls = ["redis://user:***@{servers.b.address}/1"]' in out
    assert 'password = "***"' in out
    code, out, err = run_cli(capsys, "--config", str(config), "config", "show", "--json")
    assert json.loads(out)["tenants"]["keyed"]["settings"]["password"] == "***"
    code, out, err = run_cli(capsys, "--config", str(config), "check")
    assert code == 0, err  # the password from the file works
    assert SECRET not in "".join(capsys.readouterr()) + out + err

    bad = tmp_path / "bad.toml"
    bad.write_text(
        f'[tenants.acme]\nurl = "redis://:{SECRET}@127.0.0.1:1/0"\nsocket_timeout = "x"\n'
    )
    code, out, err = run_cli(capsys, "config", "validate", "--config", str(bad))
    assert code == 2
    assert str(bad) in err
    assert "'acme'" in err
    assert "socket_timeout" in err
    assert SECRET not in out + err
    assert "Traceback" not in err
    code, _, err = run_cli(capsys, "info", "nobody", "--config", str(config))
    assert code == 2
    assert "unknown tenant 'nobody'" in err
    code, _, err = run_cli(capsys, "check")
    assert code == 2
    assert "no tenants configured" in err


def test_cli_usage_line_names_the_program_as_invoked_and_reads_the_env_config(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, "REDIS_TENANCY_CONFIG": str(config)}
    script = Path(sys.executable).with_name("redis-tenancy")
    result = subprocess.run(
        [str(script), "check", "--timeout", "30"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")  # piped: no progress bar
    assert result.stdout.splitlines()[-1] == "3 tenants: 3 ok, 0 failed"
    result = subprocess.run(
        [sys.executable, "-m", "redis_tenancy", "check", "--concurrency", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("usage: python -m redis_tenancy check ")
    monkeypatch.setattr(sys, "argv", [str(script), "check"])
    code, _, err = run_cli(capsys, "check", "--concurrency", "0")
    assert code == 2
    assert err.startswith("usage: redis-tenancy check ")
    assert "argument --concurrency: must be at least 1, got 0" in err


def test_cli_progress_bar_is_drawn_on_a_terminal_only(servers: Servers, config: Path) -> None:
    with direct(servers.b) as client:
        client.mset({f"k:{n}": n for n in range(50)})
    for argv, label in (
        (["check"], "checking ["),
        (["keys", "acme", "--count", "10"], "scanning: "),
    ):
        primary, secondary = pty.openpty()
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "redis_tenancy",
                    "--config",
                    str(config),
                    *argv,
                    "--timeout",
                    "30",
                ],
                stdout=subprocess.PIPE,
                stderr=secondary,
                text=True,
            )
            os.close(secondary)
            terminal = read_all(primary)
            out, _ = proc.communicate(timeout=60)
        finally:
            os.close(primary)
        assert proc.returncode == 0
        assert label in terminal
        assert "\r" in terminal
        assert "\r" not in out  # the results stay clean
        if argv[0] == "keys":
            assert len(out.split()) == 50


def read_all(fd: int) -> str:
    """Everything written to a pty until its last writer closes it."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def test_cli_example_tenants_file_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "tenants.toml"
    code, out, err = run_cli(capsys, "config", "validate", "--config", str(example))
    assert (code, err) == (0, "")
    assert out == f"{example}: 2 tenants, valid\n"
