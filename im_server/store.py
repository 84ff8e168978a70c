"""PostgreSQL access: every query the server runs, and nothing else.

Connection loss and server errors surface as UnavailableError (retryable): the caller never
acks what this module did not commit.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from im_server.conversations import direct_members
from im_server.errors import AccessError, ErrorCode, UnavailableError

# Errors that mean "try the whole transaction again": a concurrent duplicate (sender, cid)
# committed first, or PostgreSQL broke a lock cycle.
_RETRY_TX = (
    asyncpg.UniqueViolationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)
_TX_ATTEMPTS = 5


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's reset query (unlock advisory locks, CLOSE ALL, UNLISTEN,
    RESET ALL): a round trip per release, on every send batch. Nothing here changes session
    state on a pooled connection (no LISTEN, no session SET, no advisory lock, no cursor outside
    a transaction: SET LOCAL ends with its transaction), and an open transaction is still rolled
    back by the pool before this hook runs. Measured in docs/benchmarks.md."""
    return None


@dataclass(frozen=True, slots=True)
class SendItem:
    sender: str
    cid: str
    conv: str
    body: str


@dataclass(frozen=True, slots=True)
class SendResult:
    status: str  # ok | dup | not_member | unknown_conversation
    conv: str
    seq: int
    ts: int
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoredMessage:
    seq: int
    sender: str
    ts: int
    body: str


@dataclass(frozen=True, slots=True)
class Committed:
    """A system message written together with a membership change, for fan-out."""

    conv: str
    seq: int
    ts: int
    sender: str
    body: str
    recipients: tuple[str, ...]


def _unavailable(exc: BaseException) -> UnavailableError:
    return UnavailableError(ErrorCode.UNAVAILABLE, f"database unavailable: {type(exc).__name__}")


def _outcome_unknown(exc: BaseException) -> UnavailableError:
    return UnavailableError(
        ErrorCode.OUTCOME_UNKNOWN,
        f"the database connection failed during the commit ({type(exc).__name__}): the send"
        " may be committed; resend with the same cid",
    )


def _may_have_committed(exc: BaseException) -> bool:
    """Whether a statement that failed with ``exc`` may still have committed.

    An error the server reported about the statement rolled it back. A broken connection, or
    the server terminating the session (shutdown, crash: SQLSTATE 57P0x), may come after the
    commit record was written, e.g. while the commit waited for the synchronous standby.
    """
    if isinstance(exc, asyncpg.QueryCanceledError):
        return False
    if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.OperatorInterventionError):
        return True
    return not isinstance(exc, asyncpg.PostgresError)


# asyncpg falls back to the pool's command_timeout when a call passes None.
_NO_TIMEOUT = 365 * 24 * 3600.0


# What "the database is unreachable or failing" looks like from asyncpg.
DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.PostgresError,
    TimeoutError,
)


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 2, max_size: int = 8) -> Store:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            command_timeout=30,
            reset=_keep_session,
        )
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    # --- messages -------------------------------------------------------------------------

    async def send_batch(self, items: Sequence[SendItem]) -> list[SendResult]:
        """Commit a batch in one transaction; results are in the order of ``items``."""
        args = (
            [i.sender for i in items],
            [i.cid for i in items],
            [i.conv for i in items],
            [i.body for i in items],
        )
        for attempt in range(_TX_ATTEMPTS):
            try:
                conn = await self.pool.acquire()
            except DB_ERRORS as exc:
                raise _unavailable(exc) from exc  # nothing was sent
            try:
                # No statement timeout: cancelling a commit that waits for the synchronous
                # standby leaves it committed locally (PostgreSQL's documented behaviour), so a
                # timeout here would turn "waiting" into "committed but unprotected". The
                # batcher answers the client after IM_SEND_TIMEOUT_SECONDS instead.
                rows = await conn.fetch(
                    "SELECT * FROM im_send_batch($1, $2, $3, $4)", *args, timeout=_NO_TIMEOUT
                )
                break
            except _RETRY_TX:
                if attempt == _TX_ATTEMPTS - 1:
                    raise UnavailableError(
                        ErrorCode.UNAVAILABLE, "send conflicted repeatedly; retry"
                    ) from None
            except DB_ERRORS as exc:
                if _may_have_committed(exc):
                    raise _outcome_unknown(exc) from exc
                raise _unavailable(exc) from exc
            finally:
                await self.pool.release(conn)
        out: list[SendResult | None] = [None] * len(items)
        for r in rows:
            out[r["idx"] - 1] = SendResult(
                r["status"],
                r["conv_id"],
                r["seq"] or 0,
                r["ts_ms"] or 0,
                tuple(r["recipients"] or ()),
            )
        if any(o is None for o in out):
            raise UnavailableError(ErrorCode.INTERNAL, "batch returned fewer rows than sent")
        return [o for o in out if o is not None]

    async def _check_member(self, conn: asyncpg.Connection, conv: str, user: str) -> int:
        """Return the conversation's last_seq if ``user`` is a member, else raise AccessError."""
        row = await conn.fetchrow(
            "SELECT c.last_seq, (m.user_id IS NOT NULL) AS member FROM conversations c"
            " LEFT JOIN members m ON m.conv = c.id AND m.user_id = $2 WHERE c.id = $1",
            conv,
            user,
        )
        if row is None:
            raise AccessError(ErrorCode.UNKNOWN_CONVERSATION, f"no conversation '{conv}'")
        if not row["member"]:
            raise AccessError(ErrorCode.NOT_MEMBER, f"you are not a member of '{conv}'")
        return int(row["last_seq"])

    async def sync(
        self, user: str, conv: str, after_seq: int, limit: int, max_bytes: int = 1 << 62
    ) -> tuple[list[StoredMessage], bool, int]:
        """Messages after ``after_seq`` in seq order, whether more follow, and the last seq.

        At most ``limit`` messages, and none that starts past ``max_bytes`` of bodies (the first
        one always comes): the cut is made in PostgreSQL, so a hostile ``sync`` of a history of
        large messages never brings more than about ``max_bytes`` into this process."""
        try:
            pair = direct_members(conv)
            if pair is not None and user not in pair:
                raise AccessError(ErrorCode.NOT_MEMBER, f"you are not a member of '{conv}'")
            async with self.pool.acquire() as conn:
                try:
                    last_seq = await self._check_member(conn, conv, user)
                except AccessError as exc:
                    # A direct conversation nobody has written to yet is simply empty.
                    if exc.code is ErrorCode.UNKNOWN_CONVERSATION and pair is not None:
                        return [], False, 0
                    raise
                rows = await conn.fetch(
                    "SELECT seq, sender, ts, body FROM ("
                    " SELECT seq, sender, im_ms(ts) AS ts, body,"
                    "  sum(octet_length(body)) OVER (ORDER BY seq) - octet_length(body) AS before"
                    " FROM messages WHERE conv = $1 AND seq > $2 ORDER BY seq LIMIT $3"
                    ") m WHERE before < $4 ORDER BY seq",
                    conv,
                    after_seq,
                    limit + 1,
                    max_bytes,
                )
        except DB_ERRORS as exc:
            raise _unavailable(exc) from exc
        # Seqs are dense, so a last row below last_seq means the byte budget cut the batch.
        more = len(rows) > limit or (bool(rows) and rows[-1]["seq"] < last_seq)
        msgs = [StoredMessage(r["seq"], r["sender"], r["ts"], r["body"]) for r in rows[:limit]]
        return msgs, more, last_seq

    async def mark_read(self, user: str, conv: str, seq: int) -> int:
        """Move the user's read cursor forward (never back); return the stored cursor."""
        try:
            async with self.pool.acquire() as conn:
                value = await conn.fetchval(
                    "UPDATE members m SET read_seq = GREATEST(m.read_seq, LEAST($3, c.last_seq))"
                    " FROM conversations c WHERE c.id = m.conv AND m.conv = $1 AND m.user_id = $2"
                    " RETURNING m.read_seq",
                    conv,
                    user,
                    seq,
                )
        except DB_ERRORS as exc:
            raise _unavailable(exc) from exc
        if value is None:
            raise AccessError(ErrorCode.NOT_MEMBER, f"you are not a member of '{conv}'")
        return int(value)

    async def conversations(self, user: str, limit: int = 1000) -> list[dict[str, Any]]:
        try:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT c.id, c.kind, c.title, c.last_seq, m.read_seq,"
                    " (SELECT count(*) FROM messages x WHERE x.conv = c.id"
                    "   AND x.seq > m.read_seq AND x.sender <> $1) AS unread"
                    " FROM members m JOIN conversations c ON c.id = m.conv"
                    " WHERE m.user_id = $1 ORDER BY c.id LIMIT $2",
                    user,
                    limit,
                )
        except DB_ERRORS as exc:
            raise _unavailable(exc) from exc
        return [
            {
                "conv": r["id"],
                "kind": r["kind"],
                "title": r["title"],
                "last_seq": r["last_seq"],
                "read_seq": r["read_seq"],
                "unread": r["unread"],
            }
            for r in rows
        ]

    async def members_of(self, conv: str) -> tuple[str, ...]:
        pair = direct_members(conv)
        if pair is not None:
            return tuple(dict.fromkeys(pair))
        try:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch("SELECT user_id FROM members WHERE conv = $1", conv)
        except DB_ERRORS as exc:
            raise _unavailable(exc) from exc
        return tuple(r["user_id"] for r in rows)

    # --- groups ---------------------------------------------------------------------------

    async def _system_message(
        self, conn: asyncpg.Connection, conv: str, actor: str, body: dict[str, Any]
    ) -> tuple[int, int, str]:
        text = orjson.dumps(body).decode()
        seq = await conn.fetchval(
            "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
            conv,
        )
        ts = await conn.fetchval(
            "INSERT INTO messages (conv, seq, sender, body) VALUES ($1, $2, $3, $4)"
            " RETURNING im_ms(ts)",
            conv,
            seq,
            actor,
            text,
        )
        return int(seq), int(ts), text

    async def create_group(self, owner: str, title: str, members: Sequence[str]) -> Committed:
        conv = "g:" + secrets.token_hex(10)
        everyone = tuple(dict.fromkeys([owner, *members]))
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO conversations (id, kind, title, created_by)"
                    " VALUES ($1, 'group', $2, $3)",
                    conv,
                    title,
                    owner,
                )
                await conn.executemany(
                    "INSERT INTO members (conv, user_id, role) VALUES ($1, $2, $3)",
                    [(conv, u, "owner" if u == owner else "member") for u in everyone],
                )
                body = {"event": "group_created", "title": title, "members": list(everyone)}
                seq, ts, text = await self._system_message(conn, conv, owner, body)
        except DB_ERRORS as exc:
            raise _unavailable(exc) from exc
        return Committed(conv, seq, ts, owner, text, everyone)

    async def _lock_group(self, conn: asyncpg.Connection, conv: str) -> None:
        kind = await conn.fetchval("SELECT kind FROM conversations WHERE id = $1 FOR UPDATE", conv)
        if kind is None:
            raise AccessError(ErrorCode.UNKNOWN_CONVERSATION, f"no conversation '{conv}'")
        if kind != "group":
            raise AccessError(ErrorCode.FORBIDDEN, "members can be changed only in groups")

    async def _role(self, conn: asyncpg.Connection, conv: str, user: str) -> str | None:
        role: str | None = await conn.fetchval(
            "SELECT role FROM members WHERE conv = $1 AND user_id = $2", conv, user
        )
        return role

    async def _member_event(
        self,
        conn: asyncpg.Connection,
        conv: str,
        event: str,
        user: str,
        actor: str | None,
        *also: str,
    ) -> Committed:
        """The system message of a membership change, for the members after it (and ``also``)."""
        by = actor or "admin"
        body = {"event": event, "user": user, "by": by}
        seq, ts, text = await self._system_message(conn, conv, by, body)
        rows = await conn.fetch("SELECT user_id FROM members WHERE conv = $1", conv)
        return Committed(conv, seq, ts, by, text, (*(r["user_id"] for r in rows), *also))

    async def add_member(self, actor: str | None, conv: str, user: str) -> Committed | None:
        """Add ``user``; ``actor`` None means the admin API. None when already a member."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await self._lock_group(conn, conv)
                if actor is not None and await self._role(conn, conv, actor) is None:
                    raise AccessError(ErrorCode.NOT_MEMBER, f"you are not a member of '{conv}'")
                added = await conn.fetchval(
                    "INSERT INTO members (conv, user_id) VALUES ($1, $2)"
                    " ON CONFLICT DO NOTHING RETURNING user_id",
                    conv,
                    user,
                )
                if added is None:
                    return None
                return await self._member_event(conn, conv, "member_added", user, actor)
        except DB_ERRORS as exc:
            raise _unavailable(exc) from exc

    async def remove_member(self, actor: str | None, conv: str, user: str) -> Committed | None:
        """Owners remove anyone, members remove themselves. None when not a member."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await self._lock_group(conn, conv)
                if actor is not None:
                    role = await self._role(conn, conv, actor)
                    if role is None:
                        raise AccessError(ErrorCode.NOT_MEMBER, f"you are not a member of '{conv}'")
                    if actor != user and role != "owner":
                        raise AccessError(
                            ErrorCode.FORBIDDEN, "only the group owner can remove other members"
                        )
                removed = await conn.fetchval(
                    "DELETE FROM members WHERE conv = $1 AND user_id = $2 RETURNING user_id",
                    conv,
                    user,
                )
                if removed is None:
                    return None
                # The removed user hears of it once, then no more.
                return await self._member_event(conn, conv, "member_removed", user, actor, user)
        except DB_ERRORS as exc:
            raise _unavailable(exc) from exc

    async def list_members(self, actor: str | None, conv: str) -> list[dict[str, str]]:
        try:
            async with self.pool.acquire() as conn:
                if actor is not None:
                    await self._check_member(conn, conv, actor)
                rows = await conn.fetch(
                    "SELECT user_id, role FROM members WHERE conv = $1 ORDER BY user_id", conv
                )
        except DB_ERRORS as exc:
            raise _unavailable(exc) from exc
        if not rows and actor is None:
            raise AccessError(ErrorCode.UNKNOWN_CONVERSATION, f"no conversation '{conv}'")
        return [{"user": r["user_id"], "role": r["role"]} for r in rows]

    async def stats(self) -> dict[str, int]:
        try:
            async with self.pool.acquire() as conn:
                row = await conn.fetchrow(
                    "SELECT (SELECT count(*) FROM conversations) AS conversations,"
                    " (SELECT count(*) FROM messages) AS messages,"
                    " (SELECT count(DISTINCT user_id) FROM members) AS users"
                )
        except DB_ERRORS as exc:
            raise _unavailable(exc) from exc
        return dict(row)

    async def digest(self, statement_timeout_ms: int = 20_000) -> dict[str, int]:
        """What a restore is checked against, read in one REPEATABLE READ, read-only
        transaction: every figure describes the same instant (``at_ms``).

        ``latest_ms`` (the newest message's timestamp) and ``max_seq`` are the store's
        monotonic keys: there is no global message id, and nothing deletes messages, so none of
        these figures ever goes down on a live stack. ``non_dense`` counts the conversations
        whose stored seqs are not exactly 1..last_seq (0 on healthy data)."""
        try:
            async with (
                self.pool.acquire(timeout=5) as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                # SET LOCAL takes no bind parameters; the value is an int we own.
                await conn.execute(f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}")
                row = await conn.fetchrow(_DIGEST_SQL)
        except DB_ERRORS as exc:
            raise _unavailable(exc) from exc
        return {k: int(v) for k, v in dict(row).items()}


# One scan of messages (the CTE is referenced more than once, so PostgreSQL materializes it).
# Dense: a conversation's n stored seqs are distinct (primary key), so n == last_seq with
# min 1 and max last_seq means exactly 1..last_seq.
_DIGEST_SQL = """
WITH per_conv AS (
    SELECT conv, count(*) AS n, min(seq) AS lo, max(seq) AS hi, max(ts) AS latest
      FROM messages GROUP BY conv
)
SELECT
    (SELECT count(*) FROM conversations) AS conversations,
    coalesce((SELECT sum(n) FROM per_conv), 0) AS messages,
    coalesce((SELECT max(hi) FROM per_conv), 0) AS max_seq,
    coalesce((SELECT im_ms(max(latest)) FROM per_conv), 0) AS latest_ms,
    (SELECT count(*) FROM conversations c LEFT JOIN per_conv p ON p.conv = c.id
      WHERE coalesce(p.n, 0) <> c.last_seq
         OR (p.n IS NOT NULL AND (p.lo <> 1 OR p.hi <> c.last_seq))) AS non_dense,
    im_ms(now()) AS at_ms
"""
