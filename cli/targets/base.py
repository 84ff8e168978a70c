"""The one interface every target implements: the verbs, their arguments and their results.

A command parses its options, picks the target with ``cli.targets.choose.target_for`` and calls
one verb here; it never asks which target it has. What differs by target lives behind these
methods: the local target drives processes on this machine (cli/targets/local/), a cloud target
drives Pulumi and the cloud's APIs (cli/targets/cloud/).

Every verb validates its arguments and preconditions before it changes anything, and returns a
``Result`` (cli/results.py): the JSON document and the exit status. The documents share their
keys across targets where the meaning is shared; what only one target knows is under
``details`` (failover) or in keys the other targets do not have (docs/architecture.md lists
both).

A verb a target does not have (``snapshot verify`` in a cloud, whose backups the cloud
checksums itself) exits 2 naming the target and what to use instead, as does an option only
another target takes (``--port`` on a cloud; see ``options``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from cli.errors import UsageError
from cli.progress import EventSink, Note, Step
from cli.results import Result
from stacks.workload_contract import DEPLOYMENT_NAME

RestoreWhere = Literal["new", "in-place"]


class Confirm(Protocol):
    def __call__(self, question: str, *, details: Sequence[str] = ()) -> None: ...


class ConfirmTyped(Protocol):
    def __call__(self, expected: str, *, details: Sequence[str] = ()) -> None: ...


@dataclass(frozen=True)
class Operator:
    """How an operation talks to whoever runs it; the command layer builds it from its output.

    ``confirm`` raises Cancelled (exit 5) unless the answer is yes; with ``--yes`` it only shows
    the plan. ``engine_progress`` gives the sink for Pulumi's resource events, which the caller
    ends with ``end_engine_progress`` (also on failure: a live bar would redraw over the
    error)."""

    note: Note
    step: Step
    confirm: Confirm
    confirm_typed: ConfirmTyped
    engine_progress: Callable[[], EventSink]
    end_engine_progress: Callable[[], None]


@dataclass(frozen=True)
class DeployRequest:
    region: str | None = None
    standby_region: str | None = None
    replicas: int | None = None
    port: int | None = None
    replication: str | None = None
    sync_policy: str | None = None
    sync_degrade_after: float | None = None
    # Local: continuous backup (WAL archiving) and where/how long backups are kept.
    archiving: str | None = None
    keep_days: float | None = None
    base_every_hours: float | None = None
    backup_url: str | None = None
    sets: Mapping[str, str] = field(default_factory=dict)
    # Clouds only: stop after the preview (changing nothing); exit 10 when the preview replaces
    # or deletes a stateful resource; how the command shows the preview before it asks.
    preview_only: bool = False
    refuse_replace: bool = False
    show_preview: Callable[[Mapping[str, Any]], None] | None = None


@dataclass(frozen=True)
class ScaleRequest:
    region: str | None = None
    replicas: int | None = None
    nodes: int | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class FailoverRequest:
    to_region: str
    force: bool = False
    max_lag: int | None = None  # planned, local: bytes the standby may be behind
    timeout: float | None = None


@dataclass(frozen=True)
class RestoreRequest:
    snapshot_id: str
    where: RestoreWhere = "new"
    timeout: float | None = None
    # Local: the stack whose snapshots hold the id, when more than one does.
    from_stack: str | None = None


@dataclass(frozen=True)
class TimeRestoreRequest:
    """``imctl restore --to-time``: recover the stack's data as it was at ``to_time`` (an
    aware UTC datetime; commits at that exact instant included) or, when it is None, at the
    latest moment the backups hold. The time is checked against the recoverable window before
    anything changes (exit 10, the window in the message)."""

    to_time: datetime | None
    where: RestoreWhere = "new"
    timeout: float | None = None


@dataclass(frozen=True)
class LogsRequest:
    node: str | None = None
    region: str | None = None
    lines: int = 50


# The keys of ``failover -o json`` on every target; the rest is under ``details``.
FAILOVER_KEYS = (
    "cloud",
    "stack",
    "mode",
    "from_region",
    "to_region",
    "dry_run",
    "rto_seconds",
    "promote_seconds",
    "data_loss_bound",
    "fenced",
    "rejoined",
    "endpoint",
    "next_steps",
    "warnings",
    "details",
)
# ``failover --dry-run -o json``: the plan, before anything changes.
FAILOVER_PLAN_KEYS = (
    "cloud",
    "stack",
    "mode",
    "from_region",
    "to_region",
    "dry_run",
    "steps",
    "data_loss_bound",
    "details",
)


def check_timeout(timeout: float | None) -> None:
    if timeout is not None and timeout <= 0:
        raise UsageError(f"--timeout must be more than 0 seconds, got {timeout:g}")


class Target(ABC):
    """A place a stack runs. ``name`` is what ``--cloud`` says; ``options`` the target-only
    command-line options it takes (every other target-only option exits 2 on it)."""

    name: ClassVar[str]
    options: ClassVar[frozenset[str]]

    def __init__(self, stack: str) -> None:
        self.stack = stack

    @property
    def target_name(self) -> str:
        """What ``--cloud`` said (one class serves the three clouds)."""
        return self.name

    def unsupported(self, verb: str, instead: str) -> UsageError:
        return UsageError(
            f"`imctl {verb}` is not available on the {self.target_name} target",
            instead,
            code="not_supported_by_target",
        )

    # --- every target ----------------------------------------------------------------------

    @abstractmethod
    def deploy(self, req: DeployRequest, op: Operator) -> Result: ...

    @abstractmethod
    def destroy(self, keep_data: bool, delete_snapshots: bool, op: Operator) -> Result:
        """Says in its confirmation what happens to the stack's snapshots (kept or deleted,
        how many): a destroy never deletes backups without saying so."""

    @abstractmethod
    def status(self, check: bool) -> Result: ...

    @abstractmethod
    def scale(self, req: ScaleRequest, op: Operator) -> Result: ...

    @abstractmethod
    def snapshot_create(self, note: str | None, timeout: float | None, op: Operator) -> Result: ...

    @abstractmethod
    def snapshot_list(self) -> Result: ...

    @abstractmethod
    def snapshot_show(self, snapshot_id: str) -> Result: ...

    @abstractmethod
    def snapshot_delete(self, snapshot_id: str, timeout: float | None, op: Operator) -> Result: ...

    @abstractmethod
    def restore(self, req: RestoreRequest, op: Operator) -> Result:
        """Shows the plan and asks (typed stack name for in-place) before it changes anything.
        Local: a stack that does not exist is deployed first, then restored into (the
        snapshot may be another stack's, such as a destroyed one's)."""

    @abstractmethod
    def restore_to_time(self, req: TimeRestoreRequest, op: Operator) -> Result:
        """Point-in-time restore: the same plan, confirmation, journal, lock, progress and
        timeout as ``restore``. Local: base backup + archived WAL into a new data directory,
        checked, then switched. Clouds: the provider's point-in-time restore into a new
        instance, then the same repoint and content check as a snapshot restore."""

    @abstractmethod
    def backup_status(self, check: bool) -> Result:
        """The recoverable window (first and last recoverable time), where the backups live,
        the last base backup and how far WAL is archived; exit 10 with ``check`` when
        archiving stalls or falls behind. Read-only."""

    @abstractmethod
    def failover_plan(self, req: FailoverRequest) -> Result:
        """Every check the failover makes, and its steps and data-loss bound; changes nothing."""

    @abstractmethod
    def failover(self, req: FailoverRequest, op: Operator) -> Result:
        """Runs ``failover_plan``'s checks, asks, then acts."""

    @abstractmethod
    def doctor(self, home: Path, today: date | None = None) -> Result:
        """The prerequisites for this target, each failed one with its fix (read-only,
        offline); exit 10 when a required one fails."""

    # --- where a target has them -------------------------------------------------------------

    def snapshot_verify(
        self, snapshot_id: str, deep: bool, timeout: float | None, op: Operator
    ) -> Result:
        raise self.unsupported("snapshot verify", "the cloud checksums its own backups")

    def snapshot_prune(self, keep: int, previous_data: bool, op: Operator) -> Result:
        raise self.unsupported(
            "snapshot prune",
            "the cloud's backup retention prunes; delete one with `imctl snapshot delete ID`",
        )

    def backup_base(self, timeout: float | None, op: Operator) -> Result:
        raise self.unsupported(
            "backup base", "the cloud takes its base backups itself, on its backup schedule"
        )

    def standby_rebuild(self, region: str, op: Operator) -> Result:
        raise self.unsupported(
            "standby rebuild", "`imctl deploy` makes a new standby replica in a cloud"
        )

    def plan(self, req: DeployRequest, op: Operator) -> Result:
        raise self.unsupported(
            "plan",
            "for the local target, `imctl deploy` is itself idempotent; plan a cloud"
            " with --cloud aws, gcp or alicloud",
        )

    def token(self, user: str, ttl: int) -> Result:
        raise self.unsupported("token", "tokens are minted with the local target's secret")

    def drill_failover(
        self, to_region: str | None, force: bool, pairs: int, op: Operator
    ) -> Result:
        raise self.unsupported(
            "drill failover", f"rehearse with `imctl failover --dry-run --cloud {self.target_name}`"
        )

    def drill_clean(self, run_id: str | None, op: Operator) -> Result:
        raise self.unsupported("drill clean", "drills run on the local target only")

    def logs(self, req: LogsRequest) -> Result:
        raise self.unsupported(
            "logs",
            f"read the pods' logs: kubectl logs deploy/{DEPLOYMENT_NAME} -n <namespace>"
            " (`imctl status` names the namespace)",
        )

    def follow_logs(self, req: LogsRequest, write: Callable[[str], None]) -> None:
        raise self.unsupported(
            "logs --follow",
            f"follow the pods' logs: kubectl logs -f deploy/{DEPLOYMENT_NAME} -n <namespace>",
        )


def merged(doc: Mapping[str, Any], **first: Any) -> dict[str, Any]:
    """``first`` ahead of ``doc``'s keys (``cloud`` and ``stack`` lead every document)."""
    return {**first, **{k: v for k, v in doc.items() if k not in first}}


def describe_bound(bound: Mapping[str, Any]) -> str:
    """The data-loss bound in one line, for a confirmation and the text rendering."""
    acked = bound.get("acked_messages")
    parts = [f"acked messages lost: {'unknown' if acked is None else acked}"]
    if bound.get("wal_bytes") is not None:
        parts.append(f"WAL not received by the standby: {bound['wal_bytes']} bytes")
    if bound.get("replica_lag_seconds") is not None:
        parts.append(f"replica lag {bound['replica_lag_seconds']}s")
    if bound.get("why"):
        parts.append(str(bound["why"]))
    return "; ".join(parts)
