"""The operation journal: one JSON line per mutating operation, ``imctl history`` reads it.

``<home>/journal/<stack>.jsonl`` lives outside the stack directory, so the record of a destroy
(and of everything before it) survives the destroy. Appends use O_APPEND with a single write
and an fsync, so a line is either whole or the torn tail of a crash, which ``read`` skips.

Never put secrets into ``args``: the journal is plain text meant to be read by people.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

RESULTS = ("ok", "error", "interrupted")


@dataclass
class Record:
    op: str
    args: dict[str, Any]
    started_at: str  # ISO-8601 UTC
    finished_at: str
    duration_s: float
    result: str  # one of RESULTS
    exit_code: int
    error_code: str | None
    message: str | None
    user: str  # user@host
    stack: str
    cloud: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Record:
        # Ignore fields a newer imctl added; an older line may lack some, so default them.
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {name: None for name in known}
        values.update({k: v for k, v in doc.items() if k in known})
        values["args"] = values["args"] or {}
        return cls(**values)


def journal_path(home: Path, stack: str) -> Path:
    return home / "journal" / f"{stack}.jsonl"


def exists(home: Path, stack: str) -> bool:
    return journal_path(home, stack).is_file()


def append(home: Path, stack: str, record: Record) -> None:
    path = journal_path(home, stack)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record.to_json(), separators=(",", ":"), default=str) + "\n"
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        # The torn-line check and the write must be one step: between another appender's
        # write and our look at the last byte, the guard would add a blank line.
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = "\n" + line  # a crash tore the previous line: do not glue ours onto it
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read(home: Path, stack: str, limit: int | None = None) -> list[Record]:
    """Records oldest first (newest last); unparseable lines (a torn tail) are skipped."""
    try:
        text = journal_path(home, stack).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    records: list[Record] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("op"), str):
            records.append(Record.from_json(doc))
    if limit is not None and limit > 0:
        return records[-limit:]
    return records
