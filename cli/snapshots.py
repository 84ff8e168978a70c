"""Snapshots and verified restore: the interface every target implements, and what they share.

A target (local today; RDS snapshots, Cloud SQL backup runs and ApsaraDB backups later) provides
a ``SnapshotStore``. What makes a restore *verified* is target-neutral and lives here: the
content digest (per conversation: message count, max seq, the conversation's ``last_seq`` and an
md5 over every message in seq order), how two digests are compared, and what a torn snapshot
looks like. Every target computes the digest with ``DIGEST_SQL`` inside the transaction (or
from the instance) its snapshot describes, stores it with the snapshot, and compares it with the
same query run against what it restored, before anything switches over.

Light on purpose: ``imctl snapshot --help`` imports this module, so it imports no database
driver, no psutil and no rich.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from cli.deadline import Deadline
from cli.errors import ExitStatus
from cli.progress import Step

RestoreTarget = Literal["new", "in-place"]
RESTORE_TARGETS: tuple[RestoreTarget, ...] = ("new", "in-place")

SNAPSHOT_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
MANIFEST_FORMAT = 1
_MAX_LISTED = 10


# --- deadlines -----------------------------------------------------------------------------


# What a local timeout leaves behind: the steps clean up after themselves.
TIMEOUT_HINT = (
    "raise --timeout; what was interrupted was cleaned up (see the message), and the "
    "stack's current data stays in service unless the switch had started"
)


# --- the content digest ----------------------------------------------------------------------

# Per conversation, in one statement (so one MVCC snapshot): the count, the max seq and the
# conversation's last_seq (the next ack is last_seq + 1, so it must survive a restore), and an
# md5 over the md5 of every (seq, sender, cid, body) in seq order. Hashing row hashes, not the
# rows: string_agg of the bodies themselves would hit the 1 GB text limit on a big conversation,
# 32 bytes a row does not. ROW(...)::text quotes every field, so no two different rows (or a
# NULL and an empty cid) print alike.
DIGEST_SQL = """
SELECT c.id AS conv, c.last_seq, count(m.seq) AS n, coalesce(max(m.seq), 0) AS max_seq,
       md5(coalesce(string_agg(md5(ROW(m.seq, m.sender, m.cid, m.body)::text), ''
                               ORDER BY m.seq), '')) AS digest
  FROM conversations c LEFT JOIN messages m ON m.conv = c.id
 GROUP BY c.id, c.last_seq
 ORDER BY c.id
"""

# Membership and read cursors are content too: a restore that lost a group's members would
# pass the message digest and still break the group.
MEMBERS_SQL = """
SELECT count(*) AS n,
       md5(coalesce(string_agg(md5(ROW(conv, user_id, role, read_seq)::text), ''
                               ORDER BY conv, user_id), '')) AS digest
  FROM members
"""


@dataclass(frozen=True)
class ConvDigest:
    count: int
    max_seq: int
    last_seq: int
    md5: str

    @property
    def dense(self) -> bool:
        # seqs are unique and >= 1, so count == max_seq means exactly 1..max_seq are present
        return self.count == self.max_seq == self.last_seq


@dataclass(frozen=True)
class ContentDigest:
    conversations: dict[str, ConvDigest]
    members: int
    members_md5: str

    @property
    def messages(self) -> int:
        return sum(c.count for c in self.conversations.values())

    @classmethod
    def from_rows(
        cls, convs: Sequence[Mapping[str, Any]], members: Mapping[str, Any]
    ) -> ContentDigest:
        return cls(
            conversations={
                str(r["conv"]): ConvDigest(
                    int(r["n"]), int(r["max_seq"]), int(r["last_seq"]), str(r["digest"])
                )
                for r in convs
            },
            members=int(members["n"]),
            members_md5=str(members["digest"]),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "conversation_count": len(self.conversations),
            "members": self.members,
            "members_md5": self.members_md5,
            "conversations": {k: asdict(v) for k, v in self.conversations.items()},
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ContentDigest:
        return cls(
            conversations={k: ConvDigest(**v) for k, v in doc["conversations"].items()},
            members=int(doc["members"]),
            members_md5=str(doc["members_md5"]),
        )


def _capped(problems: list[str], label: str) -> list[str]:
    if len(problems) <= _MAX_LISTED:
        return problems
    return [*problems[:_MAX_LISTED], f"... and {len(problems) - _MAX_LISTED} more {label}"]


def torn_conversations(digest: ContentDigest) -> list[str]:
    """Conversations whose seqs are not exactly 1..last_seq: a torn (inconsistent) snapshot."""
    torn = [
        f"conversation {conv!r}: {d.count} messages, max seq {d.max_seq}, last_seq {d.last_seq}"
        for conv, d in digest.conversations.items()
        if not d.dense
    ]
    return _capped(torn, "torn conversations")


def diff_content(expected: ContentDigest, actual: ContentDigest) -> list[str]:
    """Every way ``actual`` differs from ``expected``; [] means the same content exactly."""
    problems: list[str] = []
    missing = sorted(expected.conversations.keys() - actual.conversations.keys())
    extra = sorted(actual.conversations.keys() - expected.conversations.keys())
    if missing:
        problems.append(f"{len(missing)} conversation(s) missing, e.g. {missing[:3]}")
    if extra:
        problems.append(f"{len(extra)} conversation(s) not in the snapshot, e.g. {extra[:3]}")
    changed = []
    for conv in sorted(expected.conversations.keys() & actual.conversations.keys()):
        e, a = expected.conversations[conv], actual.conversations[conv]
        if e != a:
            changed.append(
                f"conversation {conv!r}: expected {e.count} messages up to seq {e.max_seq} "
                f"(last_seq {e.last_seq}, md5 {e.md5[:12]}), got {a.count} up to {a.max_seq} "
                f"(last_seq {a.last_seq}, md5 {a.md5[:12]})"
            )
    problems += _capped(changed, "differing conversations")
    if (expected.members, expected.members_md5) != (actual.members, actual.members_md5):
        problems.append(
            f"memberships differ: expected {expected.members} rows (md5 "
            f"{expected.members_md5[:12]}), got {actual.members} ({actual.members_md5[:12]})"
        )
    return problems


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 over the manifest without its own digest field: an edited or truncated manifest
    (whose per-file checksums could otherwise be made to match anything) is detected."""
    import hashlib

    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- results ---------------------------------------------------------------------------------


@dataclass
class SnapshotInfo:
    id: str
    created_at: str
    size_bytes: int
    messages: int
    note: str | None
    stack: str
    region: str
    location: str  # a directory (local), an ARN or a bucket URL (clouds)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CreateResult:
    snapshot: SnapshotInfo
    conversations: int
    duration_s: float
    database_bytes: int  # what the snapshot covers, as PostgreSQL counts it (tables + indexes)
    exit_status: ExitStatus = ExitStatus.OK

    def to_json(self) -> dict[str, Any]:
        s = self.snapshot
        return {
            "id": s.id,
            "created_at": s.created_at,
            "size_bytes": s.size_bytes,
            "messages": s.messages,
            "conversations": self.conversations,
            "note": s.note,
            "location": s.location,
            "duration_s": self.duration_s,
            "database_bytes": self.database_bytes,
        }


@dataclass
class ListResult:
    snapshots: list[SnapshotInfo]
    incomplete: list[str] = field(default_factory=list)  # started, never finished (no manifest)
    previous_data: list[dict[str, Any]] = field(default_factory=list)  # kept by restores
    exit_status: ExitStatus = ExitStatus.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshots": [s.to_json() for s in self.snapshots],
            "incomplete": self.incomplete,
            "previous_data": self.previous_data,
        }


@dataclass
class ShowResult:
    snapshot: SnapshotInfo
    manifest: dict[str, Any]
    exit_status: ExitStatus = ExitStatus.OK

    def to_json(self) -> dict[str, Any]:
        return {**self.snapshot.to_json(), "manifest": self.manifest}


@dataclass
class DeleteResult:
    deleted: list[str]
    kept: list[str] = field(default_factory=list)
    previous_data_deleted: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    exit_status: ExitStatus = ExitStatus.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "deleted": self.deleted,
            "kept": self.kept,
            "previous_data_deleted": self.previous_data_deleted,
            "freed_bytes": self.freed_bytes,
        }


@dataclass
class FileCheck:
    name: str
    ok: bool
    size: int | None
    expected_size: int
    problem: str | None = None


@dataclass
class VerifyResult:
    id: str
    deep: bool
    files: list[FileCheck]
    problems: list[str]
    content: dict[str, Any] | None = None  # the deep check: what the scratch restore held
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def exit_status(self) -> ExitStatus:
        return ExitStatus.OK if self.ok else ExitStatus.PRECONDITION

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ok": self.ok,
            "deep": self.deep,
            "files": [asdict(f) for f in self.files],
            "problems": self.problems,
            "content": self.content,
            "duration_s": self.duration_s,
        }


@dataclass
class RestoreResult:
    id: str
    target: RestoreTarget
    region: str
    messages: int
    conversations: int
    previous_data: str | None  # where the replaced data is kept (None: replaced in place)
    smoke: dict[str, Any]
    timings: dict[str, float]
    restore_mb_per_s: float
    # drained nodes that outlived the drain grace and were killed; their clients reconnect and
    # resend by cid, so nothing acked is lost, but a drain that slow is worth a look
    nodes_killed: list[str] = field(default_factory=list)
    from_stack: str = ""  # the stack whose snapshot it is (--from-stack, or this one)
    exit_status: ExitStatus = ExitStatus.OK
    # What went wrong after the restore succeeded (continuous backup not restarted, say).
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from_stack": self.from_stack,
            "target": self.target,
            "region": self.region,
            "verified": True,  # a restore that did not verify raises instead of returning
            "messages": self.messages,
            "conversations": self.conversations,
            "previous_data": self.previous_data,
            "smoke": self.smoke,
            "timings": self.timings,
            "restore_mb_per_s": self.restore_mb_per_s,
            "nodes_killed": self.nodes_killed,
            "warnings": self.warnings,
        }


# --- the interface ---------------------------------------------------------------------------


class SnapshotStore(Protocol):
    """What ``imctl snapshot`` and ``imctl restore`` need from a target.

    Contract for implementers:
    - ``create`` is consistent: the stored content digest describes exactly the stored data,
      and every conversation in it is dense (``torn_conversations`` is empty).
    - Nothing unfinished is ever listed: a snapshot exists once its manifest does.
    - ``restore`` verifies the snapshot before touching anything, restores next to the live
      data, compares the restored content with the stored digest (``diff_content`` must be
      empty), and only then switches and runs a smoke test. Any failure before the switch
      leaves the live data serving; it raises (exit 10 for a failed check), never returns a
      result that says it worked when it did not.
    - ``deadline`` is honoured between steps and passed to every subprocess or API wait.
    """

    def create(self, note: str | None, deadline: Deadline, progress: Step) -> CreateResult: ...

    def list(self) -> ListResult: ...

    def show(self, snapshot_id: str) -> ShowResult: ...

    def delete(self, snapshot_id: str) -> DeleteResult: ...

    def prune(self, keep: int, previous_data: bool) -> DeleteResult: ...

    def verify(
        self, snapshot_id: str, deep: bool, deadline: Deadline, progress: Step
    ) -> VerifyResult: ...

    def restore_plan(self, snapshot_id: str, target: RestoreTarget) -> builtins.list[str]:
        """What ``restore`` will do and what leaves service, shown before the confirmation."""
        ...

    def restore(
        self, snapshot_id: str, target: RestoreTarget, deadline: Deadline, progress: Step
    ) -> RestoreResult: ...
