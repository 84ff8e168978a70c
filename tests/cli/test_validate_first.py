"""Every mutating verb validates all of its arguments and preconditions before it changes
anything: with an invalid argument, processes, pid files, the data and the config stay as they
were. (A forced drill towards a region that does not exist once killed the whole primary.)"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from cli.state import StackFiles
from cli.targets.local.procs import free_port
from cli.targets.local.target import LocalTarget
from im_server.client import Client
from tests.cli.test_local_e2e import imctl, imctl_home, ok_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    yield from imctl_home("imctl-vf-")


@pytest.fixture(scope="module")
def stack(home: Path) -> dict[str, Any]:
    port = free_port()
    doc = ok_json(home, "deploy", "--region", "a", "--standby-region", "b", "--port", str(port))
    tok = ok_json(home, "token", "--user", "alice")["token"]

    async def write() -> None:
        async with Client(doc["endpoint"], tok) as c:
            for i in range(5):
                await c.send({"n": i}, to="bob")

    asyncio.run(write())
    return doc


def _state(home: Path) -> dict[str, Any]:
    """What an operation must not change when it refuses: config, pid files (pid and start
    time of every process), and the content of the primary's database."""
    files = StackFiles(home / "stacks" / "dev")
    target = LocalTarget(files)
    cfg = files.load_config()
    pids = {
        str(p.relative_to(files.dir)): p.read_text()
        for p in sorted(files.dir.rglob("*.pid"))
        if "pg" not in p.parts
    }
    pg_pids = {r.cfg.name: r.pg().pid() for r in target.regions(cfg)}
    primary = next(r for r in target.regions(cfg) if r.cfg.role == "primary")

    async def digest() -> str:
        conn = await asyncpg.connect(primary.dsn())
        try:
            rows = await conn.fetch("SELECT conv, seq, sender, body FROM messages ORDER BY 1, 2")
        finally:
            await conn.close()
        return hashlib.sha256(json.dumps([list(r) for r in rows]).encode()).hexdigest()

    return {
        "config": files.config_path.read_text(),
        "pids": pids,
        "pg": pg_pids,
        "data": asyncio.run(digest()),
    }


INVALID: list[tuple[str, ...]] = [
    ("deploy", "--replicas", "0"),
    ("deploy", "--port", "80"),
    ("deploy", "--sync-policy", "maybe"),
    ("deploy", "--sync-degrade-after", "0"),
    ("deploy", "--region", "elsewhere"),
    ("scale", "--replicas", "0", "--yes"),
    ("scale", "--replicas", "3", "--region", "nowhere", "--yes"),
    ("destroy",),  # no --yes without a TTY: exit 2, nothing stopped
    ("snapshot", "delete", "no-such-snapshot", "--yes"),
    ("snapshot", "prune", "--keep", "-1", "--yes"),
    ("snapshot", "create", "--timeout", "-5"),
    ("restore", "no-such-snapshot", "--yes"),
    ("restore", "no-such-snapshot", "--target", "sideways", "--yes"),
    ("failover", "--to-region", "nowhere", "--yes"),
    ("failover", "--to-region", "nowhere", "--force", "--yes"),
    ("failover", "--to-region", "a", "--force", "--yes"),  # a is the primary
    ("standby", "rebuild", "--region", "nowhere", "--yes"),
    ("standby", "rebuild", "--region", "a", "--yes"),  # the primary
    ("drill", "failover", "--to-region", "nowhere", "--force", "--yes"),
    ("drill", "failover", "--to-region", "nowhere", "--yes"),
    ("drill", "failover", "--to-region", "a", "--force", "--yes"),
    ("drill", "failover", "--pairs", "0", "--yes"),
    ("drill", "clean", "--run", "not-a-run", "--yes"),
]


@pytest.mark.parametrize("args", INVALID, ids=[" ".join(a) for a in INVALID])
def test_an_invalid_argument_changes_nothing(
    stack: dict[str, Any], home: Path, args: tuple[str, ...]
) -> None:
    before = _state(home)
    r = imctl(home, *args, "-o", "json")
    err = json.loads(r.stdout)["error"]
    assert err["message"] and err["code"]
    # Usage, stack-not-found or precondition; a named snapshot that does not exist is exit 1.
    expected = (1,) if err["code"] == "snapshot_not_found" else (2, 6, 10)
    assert r.returncode in expected, (r.returncode, r.stdout, r.stderr)
    assert _state(home) == before, args


def test_the_stack_still_works_after_every_refusal(stack: dict[str, Any], home: Path) -> None:
    st = ok_json(home, "status")
    assert st["healthy"] and st["protected"], st["problems"]
