"""The synchronous-standby settings: their variable names, policies, default and bounds.

The CLI writes these variables for the nodes it starts and checks its own stack config against
the same values. It imports this module, not config.py: building the Settings dataclass there
costs every imctl command several milliseconds.

wait: a commit waits for the synchronous standby however long it is gone (no acked message can
be lost by a failover; writes stop). degrade: after the degrade-after seconds without it,
replication drops to asynchronous (writes go on, unprotected) until the standby is back.
"""

from __future__ import annotations

from typing import Literal, get_args

SyncPolicy = Literal["wait", "degrade"]
SYNC_POLICIES: tuple[SyncPolicy, ...] = get_args(SyncPolicy)
DEFAULT_SYNC_POLICY: SyncPolicy = "wait"
DEFAULT_SYNC_DEGRADE_AFTER = 5.0
SYNC_DEGRADE_AFTER_MIN, SYNC_DEGRADE_AFTER_MAX = 0.5, 3600
SYNC_STANDBY_ENV = "IM_SYNC_STANDBY"
SYNC_POLICY_ENV = "IM_SYNC_POLICY"
SYNC_DEGRADE_AFTER_ENV = "IM_SYNC_DEGRADE_AFTER_SECONDS"


def watched(value: str) -> list[str]:
    """The standbys ``SYNC_STANDBY_ENV`` names: one, or several separated by commas (the
    standby region and the WAL archiver, when both must confirm a commit)."""
    return [n for n in value.split(",") if n]


def quote_name(name: str) -> str:
    # Double-quoted: a region name with a hyphen is not a bare identifier in this setting.
    return '"' + name.replace('"', '""') + '"'


def names_value(standbys: list[str]) -> str:
    """``synchronous_standby_names`` requiring every one of ``standbys`` to confirm a commit
    ('' for none): a commit is then in each of them before it is acknowledged."""
    if not standbys:
        return ""
    if len(standbys) == 1:
        return quote_name(standbys[0])
    return f"FIRST {len(standbys)} ({', '.join(quote_name(n) for n in standbys)})"
