"""PostgreSQL streaming replication between two local regions: build, observe, promote.

The standby's connection settings live in the imctl-managed config (rewritten on every start),
never in postgresql.auto.conf, so a region's role is always what imctl last decided.
``synchronous_standby_names`` is the one setting kept with ALTER SYSTEM, because it must change
on a running primary without a restart.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from typing import Any

from cli.targets.local.postgres import PgInstance

LSN_RE = re.compile(r"^[0-9A-F]+/[0-9A-F]+$")


def lsn_to_int(lsn: str) -> int:
    hi, lo = lsn.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def standby_settings(upstream_port: int, password: str, app_name: str) -> dict[str, str]:
    conninfo = (
        f"host=127.0.0.1 port={upstream_port} user=postgres password={password} "
        f"application_name={app_name}"
    )
    return {"primary_conninfo": conninfo, "primary_slot_name": slot_name(app_name)}


def slot_name(region: str) -> str:
    return "imctl_" + re.sub(r"[^a-z0-9_]", "_", region)


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def ensure_slot(primary: PgInstance, region: str) -> None:
    slot = slot_name(region)
    primary.sql(
        "SELECT pg_create_physical_replication_slot(:'s', true) "
        "WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = :'s')",
        variables={"s": slot},
    )


def drop_slot(pg: PgInstance, region: str) -> None:
    pg.sql(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
        "WHERE slot_name = :'s' AND NOT active",
        variables={"s": slot_name(region)},
    )


def base_backup(primary: PgInstance, standby: PgInstance, region: str, password: str) -> None:
    """A fresh copy of the primary into the standby's (empty) data dir, with its slot."""
    if standby.data_dir.exists():
        shutil.rmtree(standby.data_dir)
    standby.data_dir.mkdir(parents=True)
    standby.chown(standby.data_dir)
    standby.data_dir.chmod(0o700)
    ensure_slot(primary, region)
    primary.run(
        "pg_basebackup",
        [
            "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
            "-D", str(standby.data_dir), "-X", "stream", "-S", slot_name(region),
            "--checkpoint=fast", "--no-password",
        ],
        timeout=600,
        env={"PGPASSWORD": password},
    )  # fmt: skip
    mark_standby(standby)


def mark_standby(pg: PgInstance) -> None:
    signal = pg.data_dir / "standby.signal"
    signal.touch()
    pg.chown(signal)


def set_synchronous(primary: PgInstance, standbys: list[str]) -> None:
    """Require every one of ``standbys`` (regions, the WAL archiver) to confirm a commit, or
    none. Outside a transaction block, then reload."""
    from im_server.syncpolicy import names_value

    primary.sql(f"ALTER SYSTEM SET synchronous_standby_names = {_q(names_value(standbys))}")
    primary.sql("SELECT pg_reload_conf()")


def streaming_names(pg: PgInstance) -> set[str]:
    """Who streams from ``pg`` now (standby regions and the WAL archiver)."""
    out = pg.sql("SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")
    return set(out.splitlines())


def promote(pg: PgInstance, timeout: float = 30.0) -> None:
    pg.run("pg_ctl", ["-D", str(pg.data_dir), "-w", "-t", str(int(timeout)), "promote"])
    # The trap: a promoted standby inherits synchronous_standby_names from the old primary
    # (copied with the base backup) and every commit would wait for a standby that is gone.
    set_synchronous(pg, [])


def in_recovery(pg: PgInstance) -> bool:
    return pg.sql("SELECT pg_is_in_recovery()").strip() == "t"


def current_lsn(pg: PgInstance, timeout: float = 60.0) -> int:
    return lsn_to_int(pg.sql("SELECT pg_current_wal_lsn()", timeout=timeout).strip())


def replayed_lsn(pg: PgInstance) -> int:
    out = pg.sql("SELECT pg_last_wal_replay_lsn()").strip()
    return lsn_to_int(out) if LSN_RE.match(out) else 0


@dataclass
class StandbyState:
    streaming: bool
    receive_lsn: int
    replay_lsn: int
    lag_seconds: float | None


def standby_state(pg: PgInstance, timeout: float = 60.0) -> StandbyState:
    row = pg.sql(
        "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'stopped'),"
        " coalesce(pg_last_wal_receive_lsn()::text, ''),"
        " coalesce(pg_last_wal_replay_lsn()::text, ''),"
        " coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::text, '')",
        timeout=timeout,
    )
    status, recv, replay, lag = [*row.split("|"), "", "", "", ""][:4]
    return StandbyState(
        status == "streaming",
        lsn_to_int(recv) if LSN_RE.match(recv) else 0,
        lsn_to_int(replay) if LSN_RE.match(replay) else 0,
        float(lag) if lag else None,
    )


def primary_view(pg: PgInstance, timeout: float = 60.0) -> list[dict[str, Any]]:
    """pg_stat_replication on the primary: one row per connected standby, lag in bytes. The
    WAL archiver streams too, but it is no standby (backups/archiver.py reports it)."""
    from cli.targets.local.backups.archiver import ARCHIVER_NAME

    out = pg.sql(
        "SELECT application_name, state, sync_state,"
        " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,"
        " coalesce(extract(epoch FROM replay_lag)::text, '0')"
        " FROM pg_stat_replication WHERE application_name <> :'archiver'",
        variables={"archiver": ARCHIVER_NAME},
        timeout=timeout,
    )
    rows = []
    for line in out.splitlines():
        name, state, sync, lag_b, lag_s = line.split("|")
        rows.append(
            {
                "standby": name,
                "state": state,
                "sync_state": sync,
                "lag_bytes": int(lag_b or 0),
                "lag_seconds": float(lag_s or 0),
            }
        )
    return rows


# pg_waldump stops at the first record that is not there (yet): where it says so is the end.
_WAL_END_RE = re.compile(
    r"(?:invalid record length|incorrect prev-link|invalid magic number|unexpected pageaddr)"
    r"[^\n]*? at ([0-9A-F]+/[0-9A-F]+)"
)


def wal_end_of_stopped(pg: PgInstance) -> int | None:
    """Where the WAL of a stopped (or crashed) cluster ends, read from its files.

    Used to bound data loss after an unplanned failover: WAL the old primary wrote that the
    standby never received. None when the files are unreadable.
    """
    wal_dir = pg.data_dir / "pg_wal"
    if not wal_dir.is_dir():
        return None
    segments = sorted(p.name for p in wal_dir.iterdir() if re.fullmatch(r"[0-9A-F]{24}", p.name))
    if not segments:
        return None
    for seg in reversed(segments):
        res = pg.run("pg_waldump", ["-p", str(wal_dir), seg], check=False, timeout=60)
        text = res.stdout + res.stderr
        m = _WAL_END_RE.search(text)
        if m:
            return lsn_to_int(m.group(1))
        last = re.findall(r"lsn: ([0-9A-F]+/[0-9A-F]+), prev [0-9A-F/]+, desc", text)
        if last:
            return lsn_to_int(last[-1])
    return None
