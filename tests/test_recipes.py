"""Every recipe in docs/recipes/ runs, and its data lands on each tenant's own server.

A recipe page's ``python`` blocks, joined in order, are a program; it is run as
``python recipe.py`` in a fresh interpreter, the way a reader would run it. A block
whose first line is ``# file: NAME.py`` is a module of that program instead (RQ, for
one, runs only functions it can import), written beside it. The
recipes get servers of their own (``REDIS_URL`` for the default tenant,
``ACME_REDIS_URL``, ``GLOBEX_REDIS_URL``, ``BROKER_URL``, ``RESULTS_URL``), each
recipe its own database numbers, so all of them start at once and run side by side;
then each test reads the servers directly.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
import redis

from redis_tenancy._embedded import RedisServer

DOCS = Path(__file__).resolve().parent.parent / "docs" / "recipes"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
RECIPES = sorted(p.stem for p in DOCS.glob("*.md") if p.stem != "README")


@dataclass
class RecipeServers:
    default: RedisServer
    acme: RedisServer
    globex: RedisServer
    broker: RedisServer

    def read(self, which: str, db: int) -> dict[str, Any]:
        """Every key of one server's database, with its value (lists, sets, strings)."""
        server: RedisServer = getattr(self, which)
        with redis.Redis(host=server.host, port=server.port, db=db, decode_responses=True) as c:
            found: dict[str, Any] = {}
            for key in c.scan_iter(count=1000):
                kind = c.type(key)
                found[key] = (
                    c.lrange(key, 0, -1)
                    if kind == "list"
                    else sorted(c.smembers(key))
                    if kind == "set"
                    else c.get(key)
                )
            return found


@dataclass
class Run:
    process: subprocess.Popen[str]
    output: IO[str]
    db: int

    def finish(self) -> tuple[int, str]:
        self.process.wait(timeout=180)
        self.output.seek(0)
        return self.process.returncode, self.output.read()


MODULE = re.compile(r"# file: (\w+\.py)\n")


def program(name: str) -> tuple[str, dict[str, str]]:
    """The recipe's main program and its modules (file name -> source)."""
    blocks = BLOCK.findall((DOCS / f"{name}.md").read_text())
    assert blocks, f"{name}.md has no python block"
    modules = {m.group(1): block for block in blocks if (m := MODULE.match(block))}
    main = [block for block in blocks if not MODULE.match(block)]
    return "\n\n".join(main), modules


@pytest.fixture(scope="module")
def recipe_servers() -> Iterator[RecipeServers]:
    started: list[RedisServer] = []
    try:
        for _ in range(4):
            started.append(RedisServer().start())
        yield RecipeServers(*started)
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def runs(
    recipe_servers: RecipeServers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Run]]:
    """Start every recipe at once (database ``n`` each, broker ``2n`` and ``2n+1``)."""
    folder = tmp_path_factory.mktemp("recipes")
    base = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_TENANCY")}
    base.pop("ENV", None)
    started = {}
    for n, name in enumerate(RECIPES):
        main, modules = program(name)
        home = folder / name
        home.mkdir()
        for filename, source in modules.items():
            (home / filename).write_text(source)
        script = home / f"recipe_{name}.py"  # not celery.py: it would shadow celery
        script.write_text(main)
        s = recipe_servers
        env = {
            **base,
            "REDIS_URL": f"redis://{s.default.address}/{n}",
            "ACME_REDIS_URL": f"redis://{s.acme.address}/{n}",
            "GLOBEX_REDIS_URL": f"redis://{s.globex.address}/{n}",
            "BROKER_URL": f"redis://{s.broker.address}/{2 * n}",
            "RESULTS_URL": f"redis://{s.broker.address}/{2 * n + 1}",
        }
        output = (home / "output.txt").open("w+")
        process = subprocess.Popen(
            [sys.executable, str(script)],
            cwd=home,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started[name] = Run(process, output, n)
    try:
        yield started
    finally:
        for run in started.values():
            if run.process.poll() is None:
                run.process.kill()
                run.process.wait()
            run.output.close()


def sets(*items: str) -> list[str]:
    return sorted(items)


#: For each recipe: what must be on acme's and globex's servers, and in its output.
EXPECTED: dict[str, tuple[dict[str, Any], dict[str, Any], Callable[[str], bool]]] = {
    "celery": (
        {"orders": sets("o-1", "o-2", "o-3", "nightly")},
        {"orders": sets("g-0", "g-1", "g-2", "nightly")},
        lambda out: "acme orders: [b'nightly', b'o-1', b'o-2', b'o-3']" in out,
    ),
    "django": (
        {"cart": ["apple", "pear"]},
        {"cart": ["fig"]},
        lambda out: "acme: 2 items" in out and "apple\npear\n" in out,
    ),
    "dramatiq": (
        {"resized": sets("logo.png for acme", "a.png for acme", "b.png for acme")},
        {"resized": ["banner.png for globex"]},
        lambda out: "[b'a.png for acme', b'b.png for acme', b'logo.png for acme']" in out,
    ),
    "fastapi": (
        {"visits": "2", "last-visit": "acme"},
        {"visits": "1", "last-visit": "globex", "hits": "1"},
        lambda out: "acme: 2 visits\nglobex: 1\n" in out,
    ),
    "flask": (
        {"notes": ["buy milk", "call bob"]},
        {"notes": ["ship it"]},
        lambda out: "acme: 2 notes\n" in out and "buy milk\ncall bob\n" in out,
    ),
    "observability": (
        {"logins": "1"},
        {"logins": "1", "greeting": "hello"},
        lambda out: (
            "INFO [acme] login\nINFO [globex] login\nINFO [-] no tenant here\n" in out
            and "SET globex redis://127.0.0.1:" in out
            and "redis_tenancy_tenants_registered 3.0" in out
        ),
    ),
    "rq": (
        {"sent": ["ann@acme.test", "bob@acme.test"]},
        {"sent": ["cy@globex.test"]},
        lambda out: "acme sent: [b'ann@acme.test', b'bob@acme.test']" in out,
    ),
    "threads": (
        {"thumbnails": sets("a.png", "b.png", "e.png")},
        {"thumbnails": sets("c.png", "d.png")},
        lambda out: "acme thumbnails: [b'a.png', b'b.png', b'e.png']" in out,
    ),
}


def test_every_recipe_page_has_a_check() -> None:
    assert sorted(EXPECTED) == RECIPES


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_runs_and_its_data_lands_on_each_tenants_server(
    name: str, runs: dict[str, Run], recipe_servers: RecipeServers
) -> None:
    run = runs[name]
    code, output = run.finish()
    assert code == 0, output
    acme, globex, printed = EXPECTED[name]
    assert recipe_servers.read("acme", run.db) == acme
    assert recipe_servers.read("globex", run.db) == globex
    assert recipe_servers.read("default", run.db) == {}  # nothing fell back to the default
    assert printed(output), output
