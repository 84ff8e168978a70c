"""What /readyz says about the database: reachable within 2 s, writes flowing, writes protected.

A pool that looks alive says nothing about a frozen database or a commit stuck waiting for a
synchronous standby that is gone. So a probe on a connection of its own (never one the sends
hold) asks the database every second, with a short timeout, and the batcher reports how long
its oldest commit has been waiting.

The synchronous-standby rules apply only where the stack says there is one (``IM_SYNC_STANDBY``,
set by the local target): managed databases in the clouds replicate on their own terms, and
their ``pg_stat_replication`` is not readable by the application's user.

Policies when the synchronous standby is gone (``IM_SYNC_POLICY``):

- ``wait``: commits wait for it; writes are reported ``blocked`` and sends are answered
  ``outcome_unknown`` after the send timeout. No acked message can be lost by a failover.
- ``degrade``: after ``IM_SYNC_DEGRADE_AFTER_SECONDS`` the node clears
  ``synchronous_standby_names`` (waiting commits finish, writes go on) and reports writes
  ``unprotected``; once the standby streams again and has caught up, it is named again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from im_server.config import Settings
from im_server.store import DB_ERRORS

log = logging.getLogger("im_server.health")

PROBE_TIMEOUT = 2.0
PROBE_EVERY = 1.0
# A commit that takes this long is not slow, it is stuck (they take milliseconds here).
STALL_AFTER = 2.0
# How close (bytes of WAL) a returning standby must be before commits wait for it again.
CAUGHT_UP_BYTES = 1024 * 1024

_PROBE_SQL = """
SELECT current_setting('synchronous_standby_names') AS names,
       pg_is_in_recovery() AS recovery,
       (SELECT count(*) FROM pg_stat_replication
         WHERE state = 'streaming' AND sync_state IN ('sync', 'quorum')) AS sync_streaming,
       (SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn) FROM pg_stat_replication
         WHERE application_name = $1 AND state = 'streaming'
         ORDER BY flush_lsn DESC NULLS LAST LIMIT 1) AS standby_behind
"""


@dataclass
class Health:
    database: str = "unknown"  # up | down | unknown (before the first probe)
    writes: str = "unknown"  # ok | blocked | unprotected | unknown
    reason: str = ""
    checked_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"database": self.database, "writes": self.writes}
        if self.reason:
            out["reason"] = self.reason
        return out


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class HealthMonitor:
    def __init__(self, settings: Settings, oldest_commit_age: Callable[[], float]) -> None:
        self.settings = settings
        self.oldest_commit_age = oldest_commit_age
        self.state = Health()
        self._conn: asyncpg.Connection | None = None
        # The synchronous_standby_names value to restore after a degrade: the last non-empty
        # value seen, else the standby the stack named.
        self._names = _quote(settings.sync_standby) if settings.sync_standby else ""
        self._missing_since: float | None = None
        self._degraded = False

    @property
    def fresh(self) -> bool:
        """A probe answered recently; a probe that hangs must not leave an old 'up' standing."""
        return time.monotonic() - self.state.checked_at <= PROBE_TIMEOUT + PROBE_EVERY + 0.5

    def ready(self) -> bool:
        return self.fresh and self.state.database == "up" and self.state.writes != "blocked"

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(PROBE_EVERY)

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.terminate()
            self._conn = None

    async def check(self) -> Health:
        try:
            row = await asyncio.wait_for(self._probe(), PROBE_TIMEOUT)
        except DB_ERRORS as exc:  # TimeoutError is one of them
            await self.close()
            self.state = Health(
                "down",
                "blocked",
                f"database not answering within {PROBE_TIMEOUT:.0f}s ({type(exc).__name__})",
                time.monotonic(),
            )
            return self.state
        self.state = await self._judge(row)
        return self.state

    async def _probe(self) -> asyncpg.Record:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self.settings.database_url, timeout=PROBE_TIMEOUT, command_timeout=PROBE_TIMEOUT
            )
        row: asyncpg.Record = await self._conn.fetchrow(_PROBE_SQL, self.settings.sync_standby)
        return row

    async def _judge(self, row: asyncpg.Record) -> Health:
        now = time.monotonic()
        if row["recovery"]:
            return Health("up", "blocked", "the database is a read-only standby", now)
        stalled = self.oldest_commit_age()
        if not self.settings.sync_standby:
            if stalled > STALL_AFTER:
                return Health("up", "blocked", f"a commit has waited {stalled:.1f}s", now)
            return Health("up", "ok", "", now)
        names: str = row["names"]
        if names:
            self._names = names
            self._degraded = False
            if row["sync_streaming"]:
                self._missing_since = None
                if stalled > STALL_AFTER:
                    return Health("up", "blocked", f"a commit has waited {stalled:.1f}s", now)
                return Health("up", "ok", "", now)
            self._missing_since = self._missing_since or now
            gone = now - self._missing_since
            if self.settings.sync_policy == "degrade" and gone >= self.settings.sync_degrade_after:
                await self._set_names("")
                self._degraded = True
                return Health(
                    "up",
                    "unprotected",
                    f"synchronous standby {self.settings.sync_standby} lost {gone:.0f}s ago;"
                    " replication degraded to asynchronous (policy degrade)",
                    now,
                )
            return Health(
                "up",
                "blocked",
                f"commits wait for synchronous standby {self.settings.sync_standby}, which is"
                f" not streaming (for {gone:.0f}s; policy {self.settings.sync_policy})",
                now,
            )
        # The stack wants a synchronous standby and none is named: degraded by us (or by hand).
        behind = row["standby_behind"]
        if (
            self.settings.sync_policy == "degrade"
            and behind is not None
            and behind <= CAUGHT_UP_BYTES
            and self._names
        ):
            await self._set_names(self._names)
            self._degraded = False
            self._missing_since = None
            return Health("up", "ok", "", now)
        return Health(
            "up",
            "unprotected",
            f"replication to {self.settings.sync_standby} is asynchronous"
            + (" (degraded; it is named again once it streams and has caught up)"
               if self._degraded or self.settings.sync_policy == "degrade" else ""),
            now,
        )  # fmt: skip

    async def _set_names(self, value: str) -> None:
        assert self._conn is not None
        try:
            # ALTER SYSTEM takes no parameters; the value is quoted as a literal.
            literal = "'" + value.replace("'", "''") + "'"
            await self._conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = {literal}")
            await self._conn.execute("SELECT pg_reload_conf()")
            log.warning("synchronous_standby_names set to %r (policy degrade)", value)
        except asyncpg.PostgresError as exc:
            log.warning("cannot change synchronous_standby_names: %r", exc)
