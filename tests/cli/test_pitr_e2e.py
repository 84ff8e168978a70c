"""Point-in-time restore on the local target, through the real ``imctl`` command: real
PostgreSQL, pg_receivewal, pg_basebackup and im-server processes, the SDK as the client.

The tests share one stack (archiving sync, so kill -9 can be tried) and run in file order;
each uses its own users. Times come from the commits themselves
(``pg_xact_commit_timestamp``), not from the clock of the test.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest

from cli.targets.local.backups.layout import iso
from cli.targets.local.procs import free_port
from im_server.client import Client
from tests.cli.test_local_e2e import imctl_home
from tests.cli.test_snapshot_e2e import conv_state, database, imctl, ok_json, run_json, token

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    yield from imctl_home("imctl-pitr-")


@pytest.fixture(scope="module")
def endpoint(home: Path) -> str:
    doc = ok_json(home, "deploy", "--port", str(free_port()), "--archiving", "sync")
    url: str = doc["endpoint"]
    return url


async def send(url: str, tok: str, to: str, n: int) -> list[int]:
    async with Client(url, tok) as c:
        return [(await c.send({"i": i}, to=to)).seq for i in range(n)]


async def commit_times(home: Path, conv: str) -> list[datetime]:
    async with database(home) as db:
        rows = await db.fetch(
            "SELECT pg_xact_commit_timestamp(xmin) AS t FROM messages WHERE conv = $1 ORDER BY seq",
            conv,
        )
    return [r["t"] for r in rows]


def live_data(home: Path) -> Path:
    return home / "stacks" / "dev" / "regions" / "local" / "pg" / "data"


def chain_dirs(home: Path) -> list[Path]:
    return sorted((home / "stacks" / "dev" / "backups" / "chains").iterdir())


def test_deploy_archives_and_status_shows_the_window(home: Path, endpoint: str) -> None:
    doc = ok_json(home, "backup", "status", "--check")
    assert doc["archiving"] == "sync" and doc["healthy"], doc["problems"]
    assert doc["window"]["first"] and doc["window"]["up_to_now"]
    assert doc["archiver"]["streaming"] and doc["archiver"]["sync_state"] == "sync"
    assert doc["last_base_backup"]["size_bytes"] > 0
    status = ok_json(home, "status", "--check")
    assert status["backup"]["window"] == doc["window"]


async def test_the_window_reaches_the_newest_commit_in_any_time_zone(
    home: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pg_waldump prints commit times in its local zone; read as UTC they would be lost and
    the window would end at the base backup."""
    await send(endpoint, token(home, "pitr-tz"), "pitr-tz2", 1)
    newest = (await commit_times(home, "d:pitr-tz:pitr-tz2"))[-1]
    monkeypatch.setenv("TZ", "Europe/Berlin")
    chain = ok_json(home, "backup", "status")["chains"][-1]
    assert datetime.fromisoformat(chain["last"]) == newest


async def test_restore_to_a_time_after_the_newest_commit(home: Path, endpoint: str) -> None:
    """Past the newest archived commit a commit is made and awaited in the archive first, so
    replay stops at the time and not at whatever the archive holds by then."""
    tok = token(home, "pitr-now")
    acked = await send(endpoint, tok, "pitr-now2", 2)
    target = datetime.now(UTC)  # after the acks, so after the commits
    doc = ok_json(home, "restore", "--to-time", iso(target), "--yes")
    assert doc["checks"]["live_compared"]
    assert datetime.fromisoformat(doc["recovered_to"]) <= target
    assert (await conv_state(home, "d:pitr-now:pitr-now2"))[0] == acked


async def test_refused_before_anything_changes(home: Path, endpoint: str) -> None:
    inode = live_data(home).stat().st_ino
    first = datetime.fromisoformat(ok_json(home, "backup", "status")["window"]["first"])
    before = iso(first - timedelta(minutes=5))
    doc = run_json(home, 10, "restore", "--to-time", before, "--yes")
    assert doc["error"]["code"] == "outside_window"
    assert iso(first)[:19] in doc["error"]["message"]  # the window is in the message
    future = iso(datetime.now(UTC) + timedelta(hours=1))
    assert run_json(home, 10, "restore", "--to-time", future, "--yes")["error"]["code"] == (
        "outside_window"
    )
    naive = imctl(home, "restore", "--to-time", "2026-12-03T14:04:59", "--yes")
    assert naive.returncode == 2 and "no time zone" in naive.stderr
    both = imctl(home, "restore", "20260101T000000Z-abcdef", "--to-time", "latest", "--yes")
    assert both.returncode == 2 and "not both" in both.stderr
    assert live_data(home).stat().st_ino == inode
    assert not (live_data(home).parent / "restoring").exists()


async def test_restore_between_two_commits_and_the_seq_continues(home: Path, endpoint: str) -> None:
    tok = token(home, "pitr-a")
    # Each send awaits its ack: five commits, each with a later time than the one before.
    await send(endpoint, tok, "pitr-b", 5)
    conv = "d:pitr-a:pitr-b"
    times = await commit_times(home, conv)
    assert len(times) == 5
    target = times[2] + (times[3] - times[2]) / 2
    assert times[2] < target < times[3]
    chains_before = len(chain_dirs(home))
    doc = ok_json(home, "restore", "--to-time", iso(target), "--yes")
    assert doc["to_time"].startswith(iso(target)[:23]) and doc["target"] == "new"
    assert doc["checks"]["live_compared"] and doc["checks"]["dense_seqs"]
    assert datetime.fromisoformat(doc["recovered_to"]) <= target
    seqs, last = await conv_state(home, conv)
    assert (seqs, last) == ([1, 2, 3], 3)
    assert await send(endpoint, tok, "pitr-b", 1) == [4]  # the next ack continues the seq
    assert doc["previous_data"] and Path(doc["previous_data"]).is_dir()
    # The recovered timeline archives into a chain of its own; the old one stays restorable.
    status = ok_json(home, "backup", "status", "--check")
    assert len(status["chains"]) == chains_before + 1
    assert status["chains"][-1]["reason"] == "restore"
    assert status["chains"][-1]["timeline"] == status["chains"][-2]["timeline"] + 1


async def test_damaged_wal_segment_is_refused_and_nothing_changes(
    home: Path, endpoint: str
) -> None:
    tok = token(home, "pitr-c")
    await send(endpoint, tok, "pitr-d", 3)
    async with database(home) as db:
        await db.execute("SELECT pg_switch_wal()")
    await send(endpoint, tok, "pitr-d", 1)
    async with database(home) as db:
        await db.execute("SELECT pg_switch_wal()")
    await send(endpoint, tok, "pitr-d", 1)
    wal = chain_dirs(home)[-1] / "wal"
    complete = sorted(p for p in wal.iterdir() if len(p.name) == 24)
    # The segment between the two switches holds one message, and newer WAL follows it: a
    # byte flipped inside that message's record breaks the record's CRC.
    victim = next(p for p in reversed(complete) if b"pitr-c" in p.read_bytes())
    original = victim.read_bytes()
    try:
        damaged = bytearray(original)
        at = original.index(b"pitr-c")
        damaged[at : at + 6] = b"XXXXXX"
        victim.write_bytes(bytes(damaged))
        inode = live_data(home).stat().st_ino
        doc = run_json(home, 10, "restore", "--to-time", "latest", "--yes")
        assert doc["error"]["code"] == "backup_corrupt"
        assert victim.name in doc["error"]["message"]
        assert live_data(home).stat().st_ino == inode
        assert (await conv_state(home, "d:pitr-c:pitr-d"))[1] == 5
    finally:
        victim.write_bytes(original)


def test_damaged_base_backup_is_refused(home: Path, endpoint: str) -> None:
    base_dir = chain_dirs(home)[-1] / "base"
    tar = next(p for p in base_dir.iterdir() if p.is_dir()) / "base.tar"
    original = tar.read_bytes()
    try:
        damaged = bytearray(original)
        mid = len(damaged) // 2
        damaged[mid : mid + 64] = bytes(64)
        if damaged == original:  # zeros already: flip instead
            damaged[mid] ^= 0xFF
        tar.write_bytes(bytes(damaged))
        doc = run_json(home, 10, "restore", "--to-time", "latest", "--yes")
        assert doc["error"]["code"] == "backup_corrupt"
        assert "pg_verifybackup" in doc["error"]["message"]
    finally:
        tar.write_bytes(original)


async def test_kill9_then_latest_loses_no_acked_message(home: Path, endpoint: str) -> None:
    """--archiving sync: every acked commit is in the archive before its ack, so a restore
    from the archive alone, after PostgreSQL is killed, has every acked message."""
    tok = token(home, "pitr-e")
    acked = await send(endpoint, tok, "pitr-f", 25)
    pid = int((live_data(home) / "postmaster.pid").read_text().split()[0])
    os.kill(pid, 9)
    doc = ok_json(home, "restore", "--to-time", "latest", "--yes")
    assert not doc["checks"]["live_compared"]  # the live database was down
    seqs, _last = await conv_state(home, "d:pitr-e:pitr-f")
    assert seqs == acked == list(range(1, 26))


def test_deploy_replaces_an_archiver_without_its_pid_file(home: Path, endpoint: str) -> None:
    pid_file = home / "stacks" / "dev" / "backups" / "archiver.pid"
    stray = json.loads(pid_file.read_text())["pid"]
    pid_file.unlink()
    doc = run_json(home, 10, "backup", "status", "--check")
    assert [p["code"] for p in doc["problems"]] == ["archiving_stopped"]
    actions = ok_json(home, "deploy")["actions"]
    assert any(f"pid {stray}" in a and "without a pid file" in a for a in actions), actions
    assert not psutil.pid_exists(stray) or psutil.Process(stray).status() == "zombie"
    assert ok_json(home, "backup", "status", "--check")["healthy"]


def test_archiving_off_then_on_starts_a_new_chain(home: Path, endpoint: str) -> None:
    """Off drops the archiver's slot, so the primary may recycle WAL the old chain never got:
    turned on again, archiving starts a chain of its own instead of a broken continuation."""
    chains = len(ok_json(home, "backup", "status")["chains"])
    ok_json(home, "deploy", "--archiving", "off")
    assert ok_json(home, "status", "--check")["backup"]["archiving"] == "off"
    ok_json(home, "deploy", "--archiving", "sync")
    doc = ok_json(home, "backup", "status", "--check")
    assert len(doc["chains"]) == chains + 1
    assert doc["chains"][-1]["reason"] == "archiving resumed without its slot"


def test_destroy_keeps_backups_unless_asked(home: Path, endpoint: str) -> None:
    backups = home / "stacks" / "dev" / "backups"
    doc = ok_json(home, "destroy", "--yes")
    assert doc["backups"]["kept"] and backups.is_dir()
    assert not (home / "stacks" / "dev" / "regions").exists()
    doc = ok_json(home, "destroy", "--yes", "--delete-snapshots")
    assert not backups.exists()
    shutil.rmtree(home / "stacks" / "dev", ignore_errors=True)
