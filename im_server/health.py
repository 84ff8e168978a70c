"""What /readyz says about the database: reachable within 2 s, writes flowing, writes protected.

A pool that looks alive says nothing about a frozen database or a commit stuck waiting for a
synchronous standby that is gone. So a probe on a connection of its own (never one the sends
hold) asks the database every second, with a short timeout, and the batcher reports how long
its oldest commit has been waiting.

The synchronous-standby rules apply only where the stack says there is one (``IM_SYNC_STANDBY``,
set by the local target; several, comma-separated, when the standby region and the WAL archiver
must both confirm): managed databases in the clouds replicate on their own terms, and
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
from im_server.syncpolicy import names_value, quote_name, watched

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
       (SELECT array_agg(application_name) FROM pg_stat_replication
         WHERE state = 'streaming' AND sync_state IN ('sync', 'quorum')) AS sync_streaming,
       (SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep') AS syncrep_waiting,
       (SELECT count(DISTINCT application_name) FROM pg_stat_replication
         WHERE application_name = ANY($1::text[]) AND state = 'streaming') AS watched_streaming,
       s.behind AS standby_behind, s.reply AS standby_reply
  FROM (SELECT 1) AS one
  LEFT JOIN LATERAL (
    SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn) AS behind,
           extract(epoch FROM reply_time) AS reply
      FROM pg_stat_replication WHERE application_name = ANY($1::text[]) AND state = 'streaming'
     ORDER BY flush_lsn ASC NULLS FIRST LIMIT 1) AS s ON true
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


def _required(watched: list[str], names: str) -> list[str]:
    """The watched standbys the current ``synchronous_standby_names`` requires (a deploy may
    name the archiver before the standby region streams)."""
    return [n for n in watched if quote_name(n) in names or n == names.strip()]


class HealthMonitor:
    def __init__(self, settings: Settings, oldest_commit_age: Callable[[], float]) -> None:
        self.settings = settings
        self.oldest_commit_age = oldest_commit_age
        self.state = Health()
        self._conn: asyncpg.Connection | None = None
        # The synchronous_standby_names value to restore after a degrade: the last non-empty
        # value seen, else the standby the stack named.
        self.watched = watched(settings.sync_standby)
        self.who = " and ".join(self.watched)
        self._names = names_value(self.watched)
        self._missing_since: float | None = None
        # The standby's last reply when replication went asynchronous: it is named again only
        # after a newer one (a hung standby's walsender still looks "streaming" and caught up).
        self._reply_at_degrade: float | None = None

    @property
    def fresh(self) -> bool:
        """A probe answered recently; a probe that hangs must not leave an old 'up' standing."""
        return time.monotonic() - self.state.checked_at <= PROBE_TIMEOUT + PROBE_EVERY + 0.5

    def ready(self) -> bool:
        return self.fresh and self.state.database == "up" and self.state.writes != "blocked"

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
        try:
            self.state = await self._judge(row)
        except Exception as exc:  # a bug here must not stop the probing (readyz would go stale)
            log.exception("judging the database probe failed")
            await self.close()
            self.state = Health("up", "unknown", f"health check failed: {exc!r}", time.monotonic())
        return self.state

    async def _probe(self) -> asyncpg.Record:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self.settings.database_url, timeout=PROBE_TIMEOUT, command_timeout=PROBE_TIMEOUT
            )
        row: asyncpg.Record = await self._conn.fetchrow(_PROBE_SQL, self.watched)
        return row

    async def _judge(self, row: asyncpg.Record) -> Health:
        now = time.monotonic()
        if row["recovery"]:
            return Health("up", "blocked", "the database is a read-only standby", now)
        stalled = self.oldest_commit_age()
        waiting_on_standby = bool(row["syncrep_waiting"])
        names: str = row["names"]
        if not self.settings.sync_standby or not names:
            self._missing_since = None
        if stalled > STALL_AFTER:
            why = "for the synchronous standby" if waiting_on_standby else "(database stalled)"
            stall = Health("up", "blocked", f"a commit has waited {stalled:.1f}s {why}", now)
        else:
            stall = None
        if not self.settings.sync_standby:
            return stall or Health("up", "ok", "", now)
        policy = self.settings.sync_policy
        if names:
            self._names = names
            # Lost: not streaming, or (a hung standby still looks streaming until
            # wal_sender_timeout) commits have waited for it longer than the degrade bound.
            confirming = set(row["sync_streaming"] or [])
            required = _required(self.watched, names)
            lost = any(n not in confirming for n in required) or (
                waiting_on_standby and stalled >= self.settings.sync_degrade_after
            )
            if not lost:
                self._missing_since = None
                return stall or Health("up", "ok", "", now)
            self._missing_since = self._missing_since or now
            gone = now - self._missing_since
            if (
                policy == "degrade"
                and max(gone, stalled) >= self.settings.sync_degrade_after
                and await self._set_names("")
            ):
                self._reply_at_degrade = row["standby_reply"] or 0.0
                return Health(
                    "up",
                    "unprotected",
                    f"synchronous standby {self.who} lost;"
                    " replication degraded to asynchronous (policy degrade)",
                    now,
                )
            return Health(
                "up",
                "blocked",
                f"commits wait for synchronous standby {self.who}, which is"
                f" not confirming (for {gone:.0f}s; policy {policy})",
                now,
            )
        # The stack wants a synchronous standby and none is named: degraded by us (or by hand).
        if stall is not None:
            return stall
        behind, reply = row["standby_behind"], row["standby_reply"]
        if self._reply_at_degrade is None:  # degraded before this node started
            self._reply_at_degrade = reply or 0.0
        answered_since = reply is not None and reply > self._reply_at_degrade
        # Named again only when every watched standby streams: naming them while one is still
        # gone (a dead archiver beside a healthy standby region) would block commits again.
        all_back = row["watched_streaming"] >= len(self.watched)
        if (
            policy == "degrade"
            and all_back
            and answered_since
            and behind is not None
            and behind <= CAUGHT_UP_BYTES
            and self._names
            and await self._set_names(self._names)
        ):
            self._reply_at_degrade = None
            return Health("up", "ok", "", now)
        return Health(
            "up",
            "unprotected",
            f"replication to {self.who} is asynchronous"
            + (f" (degraded; named again once all of {self.who} stream and have caught up)"
               if policy == "degrade" else ""),
            now,
        )  # fmt: skip

    async def _set_names(self, value: str) -> bool:
        assert self._conn is not None
        # ALTER SYSTEM takes no parameters; the value is quoted as a literal.
        literal = "'" + value.replace("'", "''") + "'"
        try:
            await self._conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = {literal}")
            await self._conn.execute("SELECT pg_reload_conf()")
        except DB_ERRORS as exc:
            log.warning("cannot set synchronous_standby_names to %r: %r", value, exc)
            return False
        log.warning("synchronous_standby_names set to %r (policy degrade)", value)
        return True
