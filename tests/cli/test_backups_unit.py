"""The continuous-backup rules that need no running database: WAL segment names, what counts as
a hole or a damaged archive, retention, the problems status reports, the restore time and the
synchronous standby list."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli.commands.restore import parse_time
from cli.errors import PreconditionFailed, UsageError
from cli.state import StackConfig
from cli.targets.local.backups.archiver import ARCHIVER_NAME, ArchiverView
from cli.targets.local.backups.archiving import Archiving
from cli.targets.local.backups.layout import BackupRoot, BaseInfo, ChainInfo, iso
from cli.targets.local.backups.wal import (
    ArchivedWal,
    Segment,
    WalScan,
    check_reads_through,
    lsn_int,
)
from cli.targets.local.backups.window import ChainWindow, problems
from im_server.health import _required
from im_server.syncpolicy import names_value, watched


def test_segment_names_round_trip_across_the_4gb_boundary() -> None:
    for name in (
        "000000010000000000000001",
        "0000000200000001000000FF",
        "00000001000000A3000000C4",
    ):
        assert Segment.parse(name).name == name
    last_of_first = Segment.parse("0000000100000000000000FF")
    assert Segment(1, last_of_first.number + 1).name == "000000010000000100000000"
    assert Segment.at(1, lsn_int("1/2000028")).name == "000000010000000100000002"
    with pytest.raises(ValueError):
        Segment.parse("00000001000000000000000G")


def test_archive_listing_and_holes(tmp_path: Path) -> None:
    for n in ("000000010000000000000002", "000000010000000000000003", "000000010000000000000005"):
        (tmp_path / n).write_bytes(b"")
    (tmp_path / "000000010000000000000006.partial").write_bytes(b"")
    (tmp_path / "000000010000000000000003.partial").write_bytes(b"")  # a finished leftover
    held = ArchivedWal.read(tmp_path)
    assert held.partial == Segment.parse("000000010000000000000006")
    assert held.first_gap(Segment.parse("000000010000000000000002")) == Segment.parse(
        "000000010000000000000004"
    )
    (tmp_path / "000000010000000000000004").write_bytes(b"")
    assert ArchivedWal.read(tmp_path).first_gap(Segment.parse("000000010000000000000002")) is None


def test_an_archive_that_stops_short_is_refused() -> None:
    held = ArchivedWal([Segment(1, 2), Segment(1, 3)], Segment(1, 4))
    stopped = WalScan(None, None, 3, Segment(1, 3).start_lsn + 100, Segment(1, 3))
    with pytest.raises(PreconditionFailed) as err:
        check_reads_through(stopped, held, "chain x")
    assert err.value.code == "backup_corrupt" and "000000010000000000000003" in err.value.message
    # Stopping inside the segment being written is how every archive ends.
    check_reads_through(
        WalScan(None, None, 3, Segment(1, 4).start_lsn + 9, Segment(1, 4)), held, "x"
    )


def _base(root: BackupRoot, chain_id: str, base_id: str, finished: datetime, tl: int = 1) -> None:
    chain = root.chains_dir / chain_id
    if not (chain / "chain.json").exists():
        chain.mkdir(parents=True)
        info = ChainInfo(chain_id, iso(finished), "1", tl, "test", "m")
        (chain / "chain.json").write_text(json.dumps(asdict(info)))
    (chain / "base" / base_id).mkdir(parents=True)
    info_b = BaseInfo(base_id, iso(finished), iso(finished), "0/2000028", "0/2000100", tl, 1, 0.1)
    (chain / "base" / f"{base_id}.json").write_text(json.dumps(asdict(info_b)))


def test_retention_keeps_what_the_window_needs(tmp_path: Path) -> None:
    root = BackupRoot(tmp_path)
    now = datetime.now(UTC)
    _base(root, "20260101T000000Z-aaaa", "20260101T000000Z", now - timedelta(days=10))
    _base(root, "20260102T000000Z-bbbb", "20260102T000000Z", now - timedelta(days=9))
    _base(root, "20260102T000000Z-bbbb", "20260103T000000Z", now - timedelta(days=3))
    _base(root, "20260102T000000Z-bbbb", "20260104T000000Z", now - timedelta(hours=1))
    cfg = StackConfig("dev", "local", [], backup_keep_days=7)
    archiving = Archiving.__new__(Archiving)
    archiving.cfg, archiving.backups = cfg, root
    chains, bases, wal_from = archiving.prune_plan()
    # 7 days back needs the base from day -9 (the newest finished before the horizon) and all
    # after it; the older chain and nothing else goes.
    assert [c.id for c in chains] == ["20260101T000000Z-aaaa"]
    assert bases == []
    assert wal_from is not None and wal_from[1] == Segment.parse("000000010000000000000002")
    cfg.backup_keep_days = 2
    chains, bases, _ = archiving.prune_plan()
    assert [b for _c, b in bases] == ["20260102T000000Z"]
    cfg.backup_keep_days = 30  # nothing is that old: everything stays
    assert archiving.prune_plan() == ([], [], None)


def _view(running: bool = True, streaming: bool = True, lag: int | None = 0) -> ArchiverView:
    return ArchiverView(running, 1 if running else None, "c", streaming, "async", 0, lag, lag)


def _window(tmp_path: Path, bases: int = 1) -> ChainWindow:
    now = datetime.now(UTC)
    base = BaseInfo("b", iso(now), iso(now), "0/2000028", "0/2000100", 1, 1, 0.1)
    chain = BackupRoot(tmp_path).new_chain_dir()
    return ChainWindow(chain, "deploy", 1, [base] * bases, ArchivedWal([], None), now, now, None)


def test_status_problems(tmp_path: Path) -> None:
    cfg = StackConfig("dev", "local", [])
    ok = _window(tmp_path)
    assert problems(cfg, ok, _view(), True) == []
    codes = [p["code"] for p in problems(cfg, ok, _view(running=False), True)]
    assert codes == ["archiving_stopped"]
    assert problems(cfg, ok, _view(running=False), False) == []  # status says the db is down
    assert [p["code"] for p in problems(cfg, ok, _view(lag=64 << 20), True)] == ["archiving_behind"]
    assert [p["code"] for p in problems(cfg, _window(tmp_path, 0), _view(), True)] == [
        "backup_missing"
    ]
    cfg.archiving = "sync"
    stopped = problems(cfg, ok, _view(running=False), True)
    assert "writes wait for it" in stopped[0]["message"]
    cfg.archiving = "off"
    assert problems(cfg, None, _view(running=False), True) == []


def test_restore_time() -> None:
    assert parse_time("latest") is None and parse_time("LATEST") is None
    assert parse_time("2026-12-03T14:04:59Z") == datetime(2026, 12, 3, 14, 4, 59, tzinfo=UTC)
    assert parse_time("2026-12-03T15:04:59+01:00") == datetime(2026, 12, 3, 14, 4, 59, tzinfo=UTC)
    with pytest.raises(UsageError, match="no time zone"):
        parse_time("2026-12-03T14:04:59")
    with pytest.raises(UsageError, match="not a time"):
        parse_time("yesterday")


def test_who_confirms_commits() -> None:
    assert names_value([]) == ""
    assert names_value(["b"]) == '"b"'
    both = names_value(["b", ARCHIVER_NAME])
    assert both == f'FIRST 2 ("b", "{ARCHIVER_NAME}")'
    assert watched(f"b,{ARCHIVER_NAME}") == ["b", ARCHIVER_NAME]
    # A node watches both but requires only whom the setting names (the archiver first, the
    # standby region once it streams).
    assert _required(["b", ARCHIVER_NAME], f'"{ARCHIVER_NAME}"') == [ARCHIVER_NAME]
    assert _required(["b", ARCHIVER_NAME], both) == ["b", ARCHIVER_NAME]
    assert _required(["b"], "b") == ["b"]
