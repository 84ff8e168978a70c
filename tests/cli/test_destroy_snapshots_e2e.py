"""A stack's snapshots outlive its destroy, and a restore builds the stack again from one:
through the real ``imctl`` command with real PostgreSQL, NATS and im-server processes.

One stack goes through the whole life (deploy, snapshots, refused deletes, destroy keeping the
snapshots, restore into the destroyed stack, deploy again, destroy deleting them), so the real
processes start as few times as the checks allow.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from cli.locks import StackLock
from cli.snapshots import manifest_digest
from cli.targets.local.procs import free_port
from im_server.client import Client
from tests.cli.test_snapshot_e2e import imctl, ok_json, run_json


@pytest.fixture
def home() -> Iterator[Path]:
    # Under /tmp with o+x: PostgreSQL runs as an unprivileged user and must reach its data.
    root = Path(tempfile.mkdtemp(prefix="imctl-destroyed-"))
    root.chmod(0o711)
    yield root
    for stack in (root / "stacks").glob("*"):
        if (stack / "config.json").exists():
            imctl(root, "destroy", "--yes", "--delete-snapshots", "-s", stack.name)
    subprocess.run(["rm", "-rf", str(root)], check=False)


def _stack(home: Path) -> Path:
    return home / "stacks" / "dev"


def _secrets(home: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((_stack(home) / "secrets.json").read_text())
    return doc


async def _messages(home: Path) -> int:
    port = json.loads((_stack(home) / "regions" / "local" / "ports.json").read_text())["pg"]
    dsn = f"postgresql://postgres:{_secrets(home)['pg_password']}@127.0.0.1:{port}/im"
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM messages"))
    finally:
        await conn.close()


async def _send(url: str, tok: str, start: int, stop: int) -> None:
    async with Client(url, tok) as c:
        await asyncio.gather(*(c.send({"i": i}, to="bob") for i in range(start, stop)))


def _ids(home: Path) -> list[str]:
    return [s["id"] for s in ok_json(home, "snapshot", "list")["snapshots"]]


@pytest.mark.slow
async def test_destroy_keeps_the_snapshots_and_restore_builds_the_stack_again(
    home: Path,
) -> None:
    port = free_port()
    url = ok_json(home, "deploy", "--replicas", "1", "--port", str(port))["endpoint"]
    tok = ok_json(home, "token", "--user", "alice")["token"]
    await _send(url, tok, 0, 5)
    first = ok_json(home, "snapshot", "create", "--note", "five")["id"]
    await _send(url, tok, 5, 8)
    second = ok_json(home, "snapshot", "create")["id"]

    # delete and prune ask first: without a TTY and --yes they exit 2 and delete nothing.
    for args in (("snapshot", "delete", second), ("snapshot", "prune", "--keep", "1")):
        r = imctl(home, *args, "-o", "json")
        assert r.returncode == 2 and "--yes" in r.stdout, (args, r.stdout, r.stderr)
        assert f"delete snapshot {first if 'prune' in args else second}" in r.stderr
    assert _ids(home) == [first, second]

    old_secret = _secrets(home)["jwt_secret"]
    r = imctl(home, "destroy", "--yes", "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "keep 2 snapshot(s)" in r.stderr  # the plan names them, with their size
    kept = json.loads(r.stdout)["snapshots"]
    assert kept["kept"] is True and kept["count"] == 2 and kept["size_bytes"] > 0
    assert {p.name for p in _stack(home).iterdir()} == {"snapshots", "backups", "destroyed.json"}

    # The stack is gone, its snapshots are not.
    gone = run_json(home, 6, "status")["error"]
    assert "destroyed" in gone["message"] and "imctl restore" in gone["hint"]
    assert _ids(home) == [first, second]
    assert ok_json(home, "snapshot", "show", first)["note"] == "five"

    restored = ok_json(home, "restore", first, "--yes")
    assert restored["stack_created"] is True and restored["jwt_secret"] == "new"
    assert restored["messages"] == 5 and restored["endpoint"] == url  # the shape it had
    assert await _messages(home) == 5
    assert _secrets(home)["jwt_secret"] != old_secret  # old tokens are refused, as it says
    assert ok_json(home, "status", "--check")["healthy"] is True
    assert _ids(home) == [first, second]

    assert ok_json(home, "snapshot", "delete", second, "--yes")["deleted"] == [second]

    # Destroyed again, then deployed empty: the kept snapshot is still listed.
    ok_json(home, "destroy", "--yes")
    again = ok_json(home, "deploy", "--replicas", "1", "--port", str(free_port()))
    assert again["created"] is True and await _messages(home) == 0
    assert _ids(home) == [first]
    assert not (_stack(home) / "destroyed.json").exists()  # built again: no longer destroyed

    r = imctl(home, "destroy", "--delete-snapshots", "--yes", "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "DELETE 1 snapshot(s)" in r.stderr
    assert json.loads(r.stdout)["snapshots"] == {
        "count": 1, "size_bytes": json.loads(r.stdout)["snapshots"]["size_bytes"],
        "kept": False, "dir": None,
    }  # fmt: skip
    assert not _stack(home).exists()


def _fake_snapshot(home: Path, stack: str, snapshot_id: str) -> None:
    """A sealed manifest whose dump is missing: found, then refused when checked."""
    path = home / "stacks" / stack / "snapshots" / snapshot_id
    path.mkdir(parents=True)
    manifest: dict[str, Any] = {
        "id": snapshot_id,
        "created_at": "2026-12-03T12:00:00.000+00:00",
        "messages": 3,
        "files": [{"name": "db.dump", "size": 1, "sha256": "0" * 64}],
    }
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_another_stacks_snapshot_is_restored_only_when_named(tmp_path: Path) -> None:
    sid = "20261203T120000Z-abc123"
    for stack in ("a", "b"):
        _fake_snapshot(tmp_path, stack, sid)
    # "fresh" was destroyed: a restore builds it in the shape it had (here, a free port).
    fresh = tmp_path / "stacks" / "fresh"
    fresh.mkdir()
    shape = {"stack": "fresh", "cloud": "local",
             "regions": [{"name": "local", "port": free_port(), "replicas": 1}]}  # fmt: skip
    (fresh / "destroyed.json").write_text(
        json.dumps({"destroyed_at": "2026-12-03T12:00:00+00:00", "config": shape})
    )
    # A snapshot id pasted with the wrong -s must not replace that stack's data, even with
    # --yes (nobody sees the plan): another stack's snapshot is taken only when named.
    for into in ("fresh", "live"):
        if into == "live":
            (tmp_path / "stacks" / "live").mkdir()
            (tmp_path / "stacks" / "live" / "config.json").write_text("{}")
        err = run_json(tmp_path, 2, "restore", sid, "-s", into, "--yes")["error"]
        assert err["code"] == "snapshot_of_another_stack", err
        assert "'a' and 'b'" in err["message"] and "--from-stack a" in err["hint"]
    # A mistyped stack is not found (exit 6), and leaves no journal behind.
    err = run_json(tmp_path, 6, "restore", sid, "-s", "fresj", "--yes")["error"]
    assert err["code"] == "stack_not_found"
    assert not (tmp_path / "journal" / "fresj.jsonl").exists()
    # Named, while stack a is busy: its lock keeps a's snapshots from going mid-restore.
    with StackLock(tmp_path, "a", "snapshot delete", "someone"):
        err = run_json(tmp_path, 11, "restore", sid, "-s", "fresh", "--from-stack", "a", "--yes")
    assert err["error"]["code"] == "locked" and "snapshot delete" in err["error"]["message"]
    # Named: its dump is missing, which stops the restore before the stack is made.
    r = imctl(tmp_path, "restore", sid, "-s", "fresh", "--from-stack", "a", "--yes", "-o", "json")
    assert r.returncode == 10, r.stdout + r.stderr
    assert json.loads(r.stdout)["error"]["code"] == "snapshot_corrupt"
    assert "JWT secret" in r.stderr  # the plan said the tokens would change
    err = run_json(tmp_path, 1, "restore", sid, "-s", "fresh", "--from-stack", "c", "--yes")
    assert err["error"]["code"] == "snapshot_not_found"
    assert run_json(tmp_path, 2, "restore", sid, "--from-stack", "../a", "--yes")
    assert {p.name for p in fresh.iterdir()} == {"destroyed.json"}  # nothing was created
