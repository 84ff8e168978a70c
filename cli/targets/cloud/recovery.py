"""The recoverable window of a cloud stack's primary database: what its automated backups and
logs can restore to, as the cloud reports it (each cloud's ``recovery_window`` hook reads it),
the check of a point-in-time restore's time against it, and ``backup status``'s document.

The document has the same keys on every cloud:

    window {first, last}, where, retention_days, last_base_backup,
    archiving {state ("ok", "behind", "off"), last_age_s, stale_after_s},
    problems [{code, message, next_command}], healthy

"behind": the latest recoverable time is more than ``STALE_AFTER`` old (log backups are not
reaching the backup store); "off": automated backups or log backups are off, or kept 0 days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cli.errors import PreconditionFailed, UsageError
from cli.snapshots import RestoreTarget
from cli.state import parse_utc as state_parse_utc

# RDS documents its latest restorable time as typically within five minutes of now; three
# times that before the window counts as stalled (the same bound on every cloud).
STALE_AFTER = timedelta(minutes=15)


def utc_text(t: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, as the clouds write their times."""
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_utc(text: Any) -> datetime | None:
    """A time as the clouds give it (a datetime from boto3, or RFC 3339 text with ``Z`` and up
    to nanoseconds) -> an aware UTC datetime; None for nothing."""
    if isinstance(text, datetime):
        return text.astimezone(UTC)
    return state_parse_utc(str(text)) if text else None


def last_automated(snapshots: list[dict[str, Any]], automated: str) -> datetime | None:
    """When the newest of the cloud's own (``type`` == ``automated``) usable backups was taken,
    from a ``snapshot list`` document's entries."""
    taken = [
        parse_utc(s.get("created_at"))
        for s in snapshots
        if s.get("type") == automated and s.get("status") == "available"
    ]
    return max((t for t in taken if t is not None), default=None)


@dataclass(frozen=True)
class RecoveryWindow:
    """What a cloud says a point-in-time restore of the primary can reach."""

    first: datetime | None
    last: datetime | None
    # Automated backups and log backups both on, kept more than 0 days.
    enabled: bool
    retention_days: int
    where: str  # the provider's backups, and where they are kept
    last_base_backup: datetime | None
    inspect: str  # the cloud's own command that shows the same

    def span(self) -> dict[str, str | None]:
        return {
            "first": utc_text(self.first) if self.first else None,
            "last": utc_text(self.last) if self.last else None,
        }

    def describe(self) -> str:
        span = self.span()
        return f"{span['first'] or 'unknown'} .. {span['last'] or 'unknown'}"


def check_to_time(window: RecoveryWindow, when: datetime | None, now: datetime) -> None:
    """Refuse (exit 10, the window in the message) a time the backups cannot reach."""
    if when is not None and when.tzinfo is None:
        raise UsageError(f"the time to restore to must carry a time zone, got {when.isoformat()}")
    if not window.enabled or window.last is None:
        raise PreconditionFailed(
            f"no point-in-time restore is possible: {window.where} has no recoverable window"
            " (automated backups or log backups are off)",
            f"`imctl deploy` turns them back on (the stack enables them); {window.inspect}",
        )
    if when is None:
        return
    hint = (
        "pick a time inside the window (`imctl backup status` shows it), or restore to the"
        " latest recoverable time"
    )
    if when > now:
        raise PreconditionFailed(
            f"{utc_text(when)} is in the future (now {utc_text(now)}); the recoverable window"
            f" is {window.describe()}",
            hint,
        )
    if (window.first is not None and when < window.first) or when > window.last:
        raise PreconditionFailed(
            f"{utc_text(when)} is outside the recoverable window {window.describe()}"
            f" ({window.where})",
            hint,
        )


def new_instance_only(target: RestoreTarget, how: str) -> None:
    """For a cloud whose point-in-time restore makes a new instance and cannot take the
    original's place (``how`` says what it does): refuse ``in-place``."""
    if target == "in-place":
        raise PreconditionFailed(
            f"{how}; there is no in-place point-in-time restore",
            "restore into a new instance (the default)",
        )


def status_doc(window: RecoveryWindow, now: datetime, stack: str, cloud: str) -> dict[str, Any]:
    """``backup status``'s document (the keys above) from the window the cloud reported."""
    age = (now - window.last).total_seconds() if window.last else None
    if not window.enabled or window.retention_days <= 0:
        state = "off"
    elif age is None or age > STALE_AFTER.total_seconds():
        state = "behind"
    else:
        state = "ok"
    problems: list[dict[str, str]] = []
    if state == "off":
        problems.append(
            {
                "code": "backups_off",
                "message": f"{window.where}: automated backups or log backups are off (retention"
                f" {window.retention_days} days); nothing can be restored to a point in time",
                "next_command": f"imctl deploy -s {stack} --cloud {cloud} (the stack turns them"
                " on)",
            }
        )
    elif state == "behind":
        behind = (
            f"the latest recoverable time {utc_text(window.last)} is {age / 60:.0f} minutes old"
            if window.last and age is not None
            else "the cloud reports no latest recoverable time"
        )
        problems.append(
            {
                "code": "archiving_behind",
                "message": f"{behind}: the recoverable window is not advancing",
                "next_command": window.inspect,
            }
        )
    return {
        "window": window.span(),
        "where": window.where,
        "retention_days": window.retention_days,
        "last_base_backup": utc_text(window.last_base_backup) if window.last_base_backup else None,
        "archiving": {
            "state": state,
            "last_age_s": round(age, 1) if age is not None else None,
            "stale_after_s": STALE_AFTER.total_seconds(),
        },
        "problems": problems,
        "healthy": not problems,
    }
