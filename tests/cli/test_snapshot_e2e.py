"""Snapshots and verified restore on the local target, through the real ``imctl`` command, real
PostgreSQL, NATS and im-server processes, and the Python SDK as the user's client.

The tests share one stack and run in file order; each uses its own users, so what one test
sends does not disturb another's counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from cli.targets.local.procs import free_port
from im_server.client import Ack, Client

pytestmark = pytest.mark.slow


def imctl(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMCTL_HOME": str(home), "CI": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def run_json(home: Path, code: int, *args: str) -> dict[str, Any]:
    r = imctl(home, *args, "-o", "json")
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def ok_json(home: Path, *args: str) -> dict[str, Any]:
    return run_json(home, 0, *args)


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    # Under /tmp with o+x: PostgreSQL runs as an unprivileged user and must reach its data.
    root = Path(tempfile.mkdtemp(prefix="imctl-snap-"))
    root.chmod(0o711)
    yield root
    if (root / "stacks" / "dev").exists():
        imctl(root, "destroy", "--yes")
    subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.fixture(scope="module")
def endpoint(home: Path) -> str:
    url: str = ok_json(home, "deploy", "--replicas", "2", "--port", str(free_port()))["endpoint"]
    return url


def token(home: Path, user: str) -> str:
    tok: str = ok_json(home, "token", "--user", user)["token"]
    return tok


@contextlib.asynccontextmanager
async def database(home: Path) -> AsyncIterator[asyncpg.Connection]:
    """A fresh session each time: a restore restarts PostgreSQL under the same port."""
    d = home / "stacks" / "dev"
    secret = json.loads((d / "secrets.json").read_text())["pg_password"]
    port = json.loads((d / "regions" / "local" / "ports.json").read_text())["pg"]
    conn = await asyncpg.connect(f"postgresql://postgres:{secret}@127.0.0.1:{port}/im")
    try:
        yield conn
    finally:
        await conn.close()


async def conv_state(home: Path, conv: str) -> tuple[list[int], int]:
    """(every seq in order, the conversation's last_seq)"""
    async with database(home) as db:
        rows = await db.fetch("SELECT seq FROM messages WHERE conv = $1 ORDER BY seq", conv)
        last = await db.fetchval("SELECT last_seq FROM conversations WHERE id = $1", conv)
    return [r["seq"] for r in rows], int(last)


async def send_many(url: str, tok: str, to: str, start: int, stop: int) -> list[Ack]:
    async with Client(url, tok) as c:
        return list(await asyncio.gather(*(c.send({"i": i}, to=to) for i in range(start, stop))))


def snapshot_dir(home: Path, snapshot_id: str) -> Path:
    return home / "stacks" / "dev" / "snapshots" / snapshot_id


def pg_dir(home: Path) -> Path:
    return home / "stacks" / "dev" / "regions" / "local" / "pg"


async def wait_for_frame(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        msg = await ws.receive()
        assert msg.type == aiohttp.WSMsgType.TEXT, f"closed before a {kind!r} frame: {msg}"
        frame: dict[str, Any] = json.loads(msg.data)
        if frame["type"] == kind:
            return frame


async def test_restore_serves_exactly_the_snapshot_and_connected_clients_follow(
    home: Path, endpoint: str
) -> None:
    alice = token(home, "alice")
    conv = (await send_many(endpoint, alice, "bob", 0, 500))[0].conv
    snap = ok_json(home, "snapshot", "create", "--note", "after 500")
    assert snap["messages"] == 500 and snap["size_bytes"] > 0
    shown = ok_json(home, "snapshot", "show", snap["id"])
    assert shown["location"] == str(snapshot_dir(home, snap["id"]))
    manifest = shown["manifest"]
    assert manifest["note"] == "after 500" and manifest["format"] == "pg_dump-custom"
    assert manifest["postgresql"]["server_version"].startswith("18")
    assert manifest["content"]["conversations"][conv]["count"] == 500
    assert [f["name"] for f in manifest["files"]] == ["db.dump"]
    await send_many(endpoint, alice, "bob", 500, 600)
    assert (await conv_state(home, conv))[1] == 600

    # Connected across the restore: a bare socket (to see the drain's reconnect frame) and an
    # SDK client (which reconnects by itself).
    async with aiohttp.ClientSession() as http, http.ws_connect(endpoint) as ws:
        await ws.send_json({"type": "hello", "v": 1, "token": token(home, "bob")})
        assert (await ws.receive_json(timeout=10))["type"] == "welcome"
        async with Client(endpoint, alice) as client:
            reconnect = asyncio.create_task(wait_for_frame(ws, "reconnect"))
            r = await asyncio.to_thread(imctl, home, "restore", snap["id"], "--yes", "-o", "json")
            assert r.returncode == 0, (r.stdout, r.stderr)
            doc = json.loads(r.stdout)
            assert (await asyncio.wait_for(reconnect, 5))["type"] == "reconnect"
            async with asyncio.timeout(30):
                # bounded polling: the SDK exposes its reconnect count, not an event for it
                while client.connects < 2 or not client.connected:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            history = await client.history(conv)
            assert [m.seq for m in history] == list(range(1, 501))
            # pipelined sends commit in any order: the bodies are a set, the seqs are dense
            assert sorted(m.body["i"] for m in history) == list(range(500))
            # seq continues from the snapshot: the next ack is its last_seq + 1
            assert (await client.send({"after": "restore"}, to="bob", timeout=15)).seq == 501

    assert doc["verified"] is True and doc["target"] == "new"
    assert doc["messages"] == 500 and doc["smoke"]["seq"] == 1
    assert Path(doc["previous_data"]).is_dir() and not (pg_dir(home) / "restoring").exists()
    seqs, last = await conv_state(home, conv)
    assert seqs == list(range(1, 502)) and last == 501
    async with database(home) as db:  # the smoke test's conversation is gone again
        smoke = "SELECT count(*) FROM conversations WHERE id LIKE 'd:imctl-smoke-%'"
        assert await db.fetchval(smoke) == 0
    listed = ok_json(home, "snapshot", "list")
    assert [p["path"] for p in listed["previous_data"]] == [doc["previous_data"]]


async def test_snapshot_under_load_is_consistent(home: Path, endpoint: str) -> None:
    peers = [f"sink{i}" for i in range(4)]
    acked: list[Ack] = []
    stop = asyncio.Event()
    warmed_up = asyncio.Event()

    async with Client(endpoint, token(home, "streamer")) as c:

        async def stream() -> None:
            i = 0
            while not stop.is_set():
                # 8 in flight at a time, over 4 conversations: commits land during the dump
                batch = [c.send({"i": i + k}, to=peers[(i + k) % 4]) for k in range(8)]
                acked.extend(await asyncio.gather(*batch))
                i += 8
                if len(acked) >= 200:
                    warmed_up.set()

        task = asyncio.create_task(stream())
        await asyncio.wait_for(warmed_up.wait(), 20)
        before = len(acked)
        r = await asyncio.to_thread(imctl, home, "snapshot", "create", "-o", "json")
        after = len(acked)
        stop.set()
        await asyncio.wait_for(task, 30)
    assert r.returncode == 0, r.stderr
    snap = json.loads(r.stdout)
    assert after > before, "no sends were acked while the snapshot ran"

    convs = ok_json(home, "snapshot", "show", snap["id"])["manifest"]["content"]["conversations"]
    ours = {a.conv for a in acked}
    for conv in ours:  # every conversation dense, and a prefix of what was acked
        d = convs[conv]
        assert d["count"] == d["max_seq"] == d["last_seq"], (conv, d)
        assert d["count"] <= max(a.seq for a in acked if a.conv == conv)
    assert before <= sum(convs[c]["count"] for c in ours) <= len(acked)

    deep = ok_json(home, "snapshot", "verify", snap["id"], "--deep")
    assert deep["ok"] is True and deep["problems"] == []
    assert deep["content"]["dense"] is True and deep["content"]["matches_manifest"] is True
    assert deep["content"]["messages"] == snap["messages"]


async def test_a_corrupted_snapshot_is_refused_and_the_stack_keeps_serving(
    home: Path, endpoint: str
) -> None:
    snap = ok_json(home, "snapshot", "create")
    largest = max(snapshot_dir(home, snap["id"]).iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(largest.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 16] = bytes(b ^ 0xFF for b in data[mid : mid + 16])
    largest.write_bytes(data)

    verify = run_json(home, 10, "snapshot", "verify", snap["id"])
    assert verify["ok"] is False and "sha256" in verify["problems"][0]
    assert run_json(home, 10, "snapshot", "verify", snap["id"], "--deep")["ok"] is False
    pg_pid = ok_json(home, "status")["regions"][0]["database"]["pid"]
    err = run_json(home, 10, "restore", snap["id"], "--yes")["error"]
    assert err["code"] == "snapshot_corrupt" and "nothing was changed" in err["message"]

    status = ok_json(home, "status", "--check")
    assert status["healthy"] is True and status["regions"][0]["database"]["pid"] == pg_pid
    assert not (pg_dir(home) / "restoring").exists()
    ack = (await send_many(endpoint, token(home, "carol"), "dave", 0, 1))[0]
    assert ack.seq == 1


async def test_in_place_restore_replaces_the_database(home: Path, endpoint: str) -> None:
    erin = token(home, "erin")
    conv = (await send_many(endpoint, erin, "frank", 0, 30))[0].conv
    snap = ok_json(home, "snapshot", "create")
    await send_many(endpoint, erin, "frank", 30, 40)
    kept_before = {p["path"] for p in ok_json(home, "snapshot", "list")["previous_data"]}

    doc = ok_json(home, "restore", snap["id"], "--target", "in-place", "--yes")
    assert doc["target"] == "in-place" and doc["previous_data"] is None
    assert (await conv_state(home, conv)) == (list(range(1, 31)), 30)
    assert (await send_many(endpoint, erin, "frank", 99, 100))[0].seq == 31
    # in place keeps nothing: no new previous-data directory
    assert {p["path"] for p in ok_json(home, "snapshot", "list")["previous_data"]} == kept_before


def test_unknown_ids_missing_confirmation_and_timeouts(home: Path, endpoint: str) -> None:
    for args in (
        ("snapshot", "show", "20990101T000000Z-000000"),
        ("snapshot", "verify", "nope"),
        ("snapshot", "delete", "../../secrets.json"),
        ("restore", "20990101T000000Z-000000", "--yes"),
    ):
        assert run_json(home, 1, *args)["error"]["code"] == "snapshot_not_found", args

    newest = ok_json(home, "snapshot", "list")["snapshots"][-1]["id"]
    pg_pid = ok_json(home, "status")["regions"][0]["database"]["pid"]
    for target in ("new", "in-place"):
        r = imctl(home, "restore", newest, "--target", target, "-o", "json")
        assert r.returncode == 2 and "--yes" in r.stdout, (target, r.stdout, r.stderr)
    assert ok_json(home, "status")["regions"][0]["database"]["pid"] == pg_pid

    existing = {s["id"] for s in ok_json(home, "snapshot", "list")["snapshots"]}
    assert run_json(home, 9, "snapshot", "create", "--timeout", "0.001")["error"]["code"] == (
        "timeout"
    )
    on_disk = {p.name for p in (home / "stacks" / "dev" / "snapshots").iterdir()}
    assert on_disk == existing  # the interrupted snapshot left nothing behind
    assert run_json(home, 2, "snapshot", "create", "--timeout", "0")["error"]["code"] == "usage"


def test_prune_keeps_the_newest_and_cleans_up(home: Path, endpoint: str) -> None:
    made = [ok_json(home, "snapshot", "create")["id"] for _ in range(2)]
    incomplete = snapshot_dir(home, "20000101T000000Z-abcdef")
    incomplete.mkdir()  # a create that died before its manifest
    (incomplete / "db.dump").write_bytes(b"partial")
    listed = ok_json(home, "snapshot", "list")
    assert incomplete.name in listed["incomplete"]
    assert incomplete.name not in {s["id"] for s in listed["snapshots"]}
    assert run_json(home, 1, "snapshot", "show", incomplete.name)["error"]["code"] == (
        "snapshot_not_found"
    )
    assert len(listed["snapshots"]) > 3 and len(listed["previous_data"]) == 1

    pruned = ok_json(home, "snapshot", "prune", "--keep", "2", "--previous-data", "--yes")
    assert pruned["kept"] == list(reversed(made))
    assert f"{incomplete.name} (incomplete)" in pruned["deleted"]
    assert len(pruned["previous_data_deleted"]) == 1 and pruned["freed_bytes"] > 0
    after = ok_json(home, "snapshot", "list")
    assert [s["id"] for s in after["snapshots"]] == made
    assert after["incomplete"] == [] and after["previous_data"] == []
    assert not list(pg_dir(home).glob("data.before-restore-*"))

    assert ok_json(home, "snapshot", "delete", made[0], "--yes")["deleted"] == [made[0]]
    assert [s["id"] for s in ok_json(home, "snapshot", "list")["snapshots"]] == [made[1]]
    history = ok_json(home, "history", "--limit", "50")
    ops = {e["op"] for e in history["operations"]}
    assert {"snapshot create", "snapshot prune", "snapshot delete", "restore"} <= ops
    assert ok_json(home, "status", "--check")["healthy"] is True


async def test_with_a_standby_region_in_place_restore_is_followed_by_the_standby(
    home: Path, endpoint: str
) -> None:
    stack = ("-s", "ha")
    doc = ok_json(
        home, "deploy", *stack, "--region", "east", "--standby-region", "west",
        "--replicas", "1", "--port", str(free_port()),
    )  # fmt: skip
    tok: str = ok_json(home, "token", *stack, "--user", "gina")["token"]
    conv = (await send_many(doc["endpoint"], tok, "hal", 0, 20))[0].conv
    snap = ok_json(home, "snapshot", "create", *stack)
    await send_many(doc["endpoint"], tok, "hal", 20, 25)

    # A new cluster would leave the streaming standby behind: refused, nothing changed.
    err = run_json(home, 10, "restore", snap["id"], *stack, "--yes")["error"]
    assert "in-place" in err["hint"]
    restored = ok_json(home, "restore", snap["id"], *stack, "--target", "in-place", "--yes")
    assert restored["messages"] == 20

    status = ok_json(home, "status", *stack, "--check")
    west = next(r for r in status["regions"] if r["name"] == "west")
    assert west["replication"]["streaming"] is True
    d = home / "stacks" / "ha"
    secret = json.loads((d / "secrets.json").read_text())["pg_password"]
    port = json.loads((d / "regions" / "west" / "ports.json").read_text())["pg"]
    dsn = f"postgresql://postgres:{secret}@127.0.0.1:{port}/im"
    count = None
    async with asyncio.timeout(15):
        # A synchronous commit is flushed on the standby, not necessarily replayed yet: poll.
        while count != 20:
            with contextlib.suppress(asyncpg.PostgresError, OSError):
                standby = await asyncpg.connect(dsn)
                try:
                    sql = "SELECT count(*) FROM messages WHERE conv = $1"
                    count = await standby.fetchval(sql, conv)
                finally:
                    await standby.close()
            if count != 20:
                await asyncio.sleep(0.1)
    ok_json(home, "destroy", *stack, "--yes")


def _rewrite_manifest(home: Path, snapshot_id: str, edit: Any, *, reseal: bool) -> None:
    """Edit a snapshot's manifest; ``reseal``: recompute its own checksum too, as someone
    who knows the format would (then only the content check can notice)."""
    from cli.snapshots import manifest_digest

    path = snapshot_dir(home, snapshot_id) / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    if reseal:
        manifest["manifest_sha256"] = manifest_digest(manifest)
    path.write_text(json.dumps(manifest, indent=1) + "\n")


async def _live_state(home: Path, conv: str) -> dict[str, Any]:
    """What a refused restore must leave exactly as it was."""
    (region,) = ok_json(home, "status")["regions"]
    async with database(home) as db:
        dbs = await db.fetch("SELECT datname FROM pg_database ORDER BY datname")
        total = await db.fetchval("SELECT count(*) FROM messages")
    return {
        "pg_pid": region["database"]["pid"],
        "node_pids": sorted(n["pid"] for n in region["nodes"]),
        "conv": await conv_state(home, conv),
        "messages": total,
        "databases": [r["datname"] for r in dbs],
        # data directories (a refused restore keeps its log, for the post-mortem)
        "pg_dirs": sorted(p.name for p in pg_dir(home).iterdir() if p.is_dir()),
    }


async def test_a_content_digest_that_does_not_match_is_refused_by_both_targets(
    home: Path, endpoint: str
) -> None:
    conv = (await send_many(endpoint, token(home, "ivan"), "judy", 0, 20))[0].conv
    snap = ok_json(home, "snapshot", "create")
    await send_many(endpoint, token(home, "ivan"), "judy", 20, 25)

    def wrong_digest(manifest: dict[str, Any]) -> None:
        manifest["content"]["conversations"][conv]["md5"] = "0" * 32

    _rewrite_manifest(home, snap["id"], wrong_digest, reseal=True)
    # Files and manifest are consistent: only restoring and comparing can tell.
    assert ok_json(home, "snapshot", "verify", snap["id"])["ok"] is True
    before = await _live_state(home, conv)
    assert before["conv"] == (list(range(1, 26)), 25)
    for target in ("new", "in-place"):
        err = run_json(home, 10, "restore", snap["id"], "--target", target, "--yes")["error"]
        assert err["code"] == "content_mismatch", (target, err)
        assert conv in err["message"] and "stays in service" in err["message"], err
        assert await _live_state(home, conv) == before, target
    assert ok_json(home, "status", "--check")["healthy"] is True


async def test_an_edited_manifest_fails_verify_and_restore(home: Path, endpoint: str) -> None:
    conv = (await send_many(endpoint, token(home, "kim"), "lee", 0, 5))[0].conv
    snap = ok_json(home, "snapshot", "create")
    dump = snapshot_dir(home, snap["id"]) / "db.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(data)

    def match_the_damaged_dump(manifest: dict[str, Any]) -> None:
        # The per-file checks now pass: only the manifest's own checksum is left to notice.
        manifest["files"][0]["sha256"] = hashlib.sha256(data).hexdigest()

    _rewrite_manifest(home, snap["id"], match_the_damaged_dump, reseal=False)
    verify = run_json(home, 10, "snapshot", "verify", snap["id"])
    assert verify["ok"] is False and verify["files"][0]["ok"] is True
    assert any("own checksum" in p for p in verify["problems"]), verify["problems"]
    before = await _live_state(home, conv)
    for target in ("new", "in-place"):
        err = run_json(home, 10, "restore", snap["id"], "--target", target, "--yes")["error"]
        assert err["code"] == "snapshot_corrupt" and "own checksum" in err["message"], err
        assert await _live_state(home, conv) == before, target
