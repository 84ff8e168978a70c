"""The stack's WAL archiver: a ``pg_receivewal`` process streaming the primary's WAL into the
current chain, through a replication slot of its own, so that no segment is recycled before it
is archived.

It runs like NATS does: detached, a pid file, started by ``deploy`` and restarted when it is
gone or runs with an outdated command line (another primary port, another chain, another
mode). Its password travels in the environment, never in argv.

``synchronous`` adds ``--synchronous``: it flushes each piece of WAL as it arrives and reports
the flush at once, so it can be a synchronous standby (``synchronous_standby_names`` names it by
its application name, ``ARCHIVER_NAME``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

from cli.deadline import poll
from cli.errors import ImctlError, ResourceFailure
from cli.targets.local import procs
from cli.targets.local.backups.layout import BackupRoot, Chain
from cli.targets.local.postgres import PgInstance, grant_traverse, pg_bin, run_as

# No region's slot can be named this: regions give imctl_<name> with a single underscore and
# a name that starts with a letter or digit.
ARCHIVER_NAME = "imctl__archive"
START_TIMEOUT = 15.0


@dataclass(frozen=True)
class ArchiverView:
    running: bool
    pid: int | None
    chain: str | None
    streaming: bool
    sync_state: str | None  # pg_stat_replication's: async, sync, quorum, potential
    flush_lsn: int | None
    # The primary's WAL position minus what the archiver has written: in async mode it
    # fsyncs once per segment, so written (in the OS, surviving a kill of either process) is
    # the progress that matters; in sync mode the two are the same.
    lag_bytes: int | None
    # The primary's position minus what its walsender has sent: the server's own figure, so
    # it is current (the archiver reports what it wrote once a second).
    sent_lag_bytes: int | None = None

    @property
    def up_to_date(self) -> bool:
        """Streaming with nothing of note left to send: the archive reaches now."""
        return self.streaming and self.sent_lag_bytes is not None and self.sent_lag_bytes < 1 << 20

    def to_json(self) -> dict[str, Any]:
        from cli.targets.local.backups.wal import lsn_text

        return {
            "running": self.running,
            "pid": self.pid,
            "chain": self.chain,
            "streaming": self.streaming,
            "sync_state": self.sync_state,
            "flushed_lsn": lsn_text(self.flush_lsn) if self.flush_lsn is not None else None,
            "lag_bytes": self.lag_bytes,
            "unsent_bytes": self.sent_lag_bytes,
        }


class Archiver:
    def __init__(self, backups: BackupRoot, password: str) -> None:
        self.backups = backups
        self.password = password

    def argv(self, chain: Chain, pg: PgInstance, synchronous: bool) -> list[str]:
        conninfo = (
            f"host=127.0.0.1 port={pg.port} user=postgres application_name={ARCHIVER_NAME}"
            " connect_timeout=10"
        )
        argv = [
            str(pg_bin("pg_receivewal", pg.bin_dir)),
            "-D", str(chain.wal_dir), "-d", conninfo, "-S", ARCHIVER_NAME,
            "--no-password", "--verbose",
            # Report progress every second (default 10): status reads the archiver's lag from
            # what it last reported.
            "--status-interval=1",
        ]  # fmt: skip
        return [*argv, "--synchronous"] if synchronous else argv

    def info(self) -> procs.PidInfo | None:
        return procs.read_pid_file(self.backups.archiver_pid)

    def alive(self) -> bool:
        info = self.info()
        return info is not None and procs.is_alive(info)

    def runs(self, argv: list[str]) -> bool:
        info = self.info()
        return info is not None and procs.is_alive(info) and info.argv == argv

    def chain_id(self) -> str | None:
        info = self.info()
        if info is None or "-D" not in info.argv:
            return None
        return info.argv[info.argv.index("-D") + 1].rstrip("/").split("/")[-2]

    def stop(self) -> bool:
        info = self.info()
        stopped = info is not None and procs.is_alive(info)
        if info is not None:
            # SIGTERM: pg_receivewal flushes what it has and exits.
            procs.terminate(info, timeout=10)
        self.backups.archiver_pid.unlink(missing_ok=True)
        return stopped

    def start(self, chain: Chain, pg: PgInstance, synchronous: bool) -> int:
        """Slot first (reserving WAL from now), then the process; returns once it streams."""
        pg.sql(
            "SELECT pg_create_physical_replication_slot(:'s', true) WHERE NOT EXISTS"
            " (SELECT FROM pg_replication_slots WHERE slot_name = :'s')",
            variables={"s": ARCHIVER_NAME},
        )
        chain.wal_dir.mkdir(parents=True, exist_ok=True)
        pg.chown(chain.wal_dir)
        grant_traverse(chain.wal_dir)
        self.backups.archiver_log.touch()
        who = run_as()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGPASSWORD=self.password, HOME=who.home)
        pid = procs.spawn_detached(
            self.argv(chain, pg, synchronous),
            log_file=self.backups.archiver_log,
            pid_file=self.backups.archiver_pid,
            env=env,
            cwd=chain.root,
            user=(who.uid, who.gid) if who.privileged else None,
        )

        def gave_up(_state: str) -> str:
            self.stop()
            raise ResourceFailure(
                f"pg_receivewal (pid {pid}) did not start streaming in {START_TIMEOUT:.0f}s:\n"
                + procs.log_tail(self.backups.archiver_log),
                f"see {self.backups.archiver_log}",
            )

        poll(
            lambda: "streaming" if self._streaming(pg) else "not yet",
            done=lambda s: s == "streaming",
            state=lambda s: s,
            what="the WAL archiver",
            limit=START_TIMEOUT,
            interval=0.1,
            timed_out=gave_up,
        )
        return pid

    def _streaming(self, pg: PgInstance) -> bool:
        if not self.alive():
            raise ResourceFailure(
                "pg_receivewal exited right after starting:\n"
                + procs.log_tail(self.backups.archiver_log),
                f"see {self.backups.archiver_log}",
            )
        out = pg.sql(
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = :'a'"
            " AND state = 'streaming'",
            variables={"a": ARCHIVER_NAME},
            timeout=5,
        )
        return out == "1"

    def view(self, pg: PgInstance | None, timeout: float = 2.0) -> ArchiverView:
        info = self.info()
        running = info is not None and procs.is_alive(info)
        row: list[str] = []
        if pg is not None:
            with contextlib.suppress(ImctlError):
                out = pg.sql(
                    "SELECT r.state, r.sync_state, r.flush_lsn,"
                    " pg_wal_lsn_diff(pg_current_wal_lsn(), r.write_lsn)::bigint,"
                    " pg_wal_lsn_diff(pg_current_wal_lsn(), r.sent_lsn)::bigint"
                    " FROM pg_stat_replication r WHERE r.application_name = :'a'",
                    variables={"a": ARCHIVER_NAME},
                    timeout=timeout,
                )
                row = out.splitlines()[0].split("|") if out else []
        from cli.targets.local.backups.wal import lsn_int

        return ArchiverView(
            running=running,
            pid=info.pid if running and info else None,
            chain=self.chain_id(),
            streaming=bool(row) and row[0] == "streaming",
            sync_state=row[1] if row else None,
            flush_lsn=lsn_int(row[2]) if row and row[2] else None,
            lag_bytes=max(0, int(row[3])) if row and row[3] else None,
            sent_lag_bytes=max(0, int(row[4])) if len(row) > 4 and row[4] else None,
        )


def slot_exists(pg: PgInstance) -> bool:
    out = pg.sql(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = :'s'",
        variables={"s": ARCHIVER_NAME},
    )
    return out == "1"


def drop_slot(pg: PgInstance, timeout: float = 10.0) -> None:
    """The archiver's slot holds WAL on the primary for it; without an archiver it must go,
    or the primary's disk fills. The walsender outlives a stopped archiver by a moment, and
    an active slot cannot be dropped: wait for it to let go."""

    def dropped() -> str:
        return pg.sql(
            "SELECT count(*) FILTER (WHERE active),"
            " count(pg_drop_replication_slot(slot_name)) FILTER (WHERE NOT active)"
            " FROM pg_replication_slots WHERE slot_name = :'s'",
            variables={"s": ARCHIVER_NAME},
        ).split("|")[0]

    def held(_active: str) -> str:
        raise ResourceFailure(
            f"the WAL archiver's replication slot {ARCHIVER_NAME} stays in use after the"
            f" archiver stopped; it keeps WAL on the primary's disk",
            f"SELECT pg_drop_replication_slot('{ARCHIVER_NAME}') once nothing streams from it",
        )

    poll(dropped, done=lambda active: active == "0", state=lambda a: f"{a} active",
         what="the archiver's slot", limit=timeout, interval=0.1, timed_out=held)  # fmt: skip
