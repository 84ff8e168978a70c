"""What the point-in-time tests of the three clouds share: the cloud target over a test's ops
(the cloud's APIs are the test's emulation; the target's plan, question, checks and results are
the real ones), an operator that records what it was asked, and the result shapes."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cli.env import Env
from cli.errors import Cancelled, ExitStatus, PreconditionFailed
from cli.targets.base import Operator, RestoreWhere, TimeRestoreRequest
from cli.targets.cloud.ops import CloudOps
from cli.targets.cloud.outputs import CloudOutputs
from cli.targets.cloud.recovery import utc_text
from cli.targets.cloud.target import CloudTarget
from tests.cloud.fake_kube import FakeKube
from tests.cloud.result_shapes import RESTORE_KEYS

STACK = "pitr-test"
TIME_RESTORE_KEYS = (RESTORE_KEYS - {"snapshot_id"}) | {"to_time", "window"}
BACKUP_STATUS_KEYS = {
    "cloud",
    "stack",
    "window",
    "where",
    "retention_days",
    "last_base_backup",
    "archiving",
    "problems",
    "healthy",
}


@dataclass(frozen=True)
class _Invocation:
    stack: str
    cloud: str
    env: Env
    stack_dir: Path


class OpsTarget(CloudTarget):
    """The cloud target with the test's ops in place of the ones the factory builds from
    credentials. Not imctl-managed (an outputs file), so nothing is written to a stack config."""

    def __init__(self, ops: CloudOps, cloud: str) -> None:
        env = Env(
            stdout=io.StringIO(),
            stderr=io.StringIO(),
            stdin_isatty=False,
            stdout_isatty=False,
            environ={},
            home=Path("/nonexistent/imctl-home"),
        )
        super().__init__(
            _Invocation(STACK, cloud, env, Path("/nonexistent/stack")), outputs_file="test"
        )
        self.test_ops = ops

    def _ops(self, outputs: CloudOutputs | None = None) -> CloudOps:
        return self.test_ops


class _NoEngineEvents:
    """No Pulumi runs in a restore: nothing reports engine events."""

    def event(self, event: Any) -> None:
        raise AssertionError(f"a restore reported an engine event: {event!r}")


@dataclass
class Asked:
    """An operator that records every question and its plan; ``yes`` answers them."""

    yes: bool = True
    questions: list[tuple[str, list[str]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def _ask(self, question: str, *, details: Sequence[str] = ()) -> None:
        self.questions.append((question, list(details)))
        if not self.yes:
            raise Cancelled("no")

    def operator(self) -> Operator:
        @contextlib.contextmanager
        def step(_: str) -> Iterator[None]:
            yield

        def typed(expected: str, *, details: Sequence[str] = ()) -> None:
            self._ask(f"type {expected}", details=details)

        return Operator(
            note=self.notes.append,
            step=step,
            confirm=self._ask,
            confirm_typed=typed,
            engine_progress=_NoEngineEvents,
            end_engine_progress=lambda: None,
        )


def check_time_restore(doc: Mapping[str, Any]) -> None:
    assert set(doc) == TIME_RESTORE_KEYS | {"cloud", "stack", "config_written"}, sorted(doc)
    assert doc["status"] == "restored"
    assert set(doc["window"]) == {"first", "last"}
    # No digest exists for an arbitrary time: the check is density only, and says so.
    assert doc["verified"]["content_checked"] == "partial"
    assert "as of" in doc["verified"]["content"]["basis"]


def check_backup_status(doc: Mapping[str, Any]) -> None:
    assert set(doc) == BACKUP_STATUS_KEYS, sorted(doc)
    assert set(doc["window"]) == {"first", "last"}
    assert doc["archiving"]["state"] in ("ok", "behind", "off")
    assert doc["healthy"] is (not doc["problems"])
    for problem in doc["problems"]:
        assert set(problem) == {"code", "message", "next_command"} and all(problem.values())


def restored(target: OpsTarget, when: datetime | None, where: RestoreWhere = "new") -> Any:
    """The document of a point-in-time restore that succeeded (its shape checked)."""
    result = target.restore_to_time(TimeRestoreRequest(when, where, 60), Asked().operator())
    assert result.exit_status is ExitStatus.OK
    doc = result.to_json()
    check_time_restore(doc)
    return doc


def refused(target: OpsTarget, when: datetime | None, where: RestoreWhere = "new") -> Any:
    """The exit-10 refusal of a point-in-time restore, made before anyone was asked."""
    asked = Asked()
    with pytest.raises(PreconditionFailed) as err:
        target.restore_to_time(TimeRestoreRequest(when, where, 60), asked.operator())
    assert err.value.status is ExitStatus.PRECONDITION
    assert asked.questions == []
    return err.value


def backup_status(target: OpsTarget) -> tuple[dict[str, Any], ExitStatus]:
    """``backup status --check``: its document (shape checked) and exit status."""
    result = target.backup_status(check=True)
    doc = result.to_json()
    check_backup_status(doc)
    return doc, result.exit_status


def check_backups_off(target: OpsTarget) -> dict[str, Any]:
    """With backups off: exit 10 under --check (0 without), and no restore to a time."""
    doc, status = backup_status(target)
    assert doc["archiving"]["state"] == "off" and status is ExitStatus.PRECONDITION
    assert [p["code"] for p in doc["problems"]] == ["backups_off"]
    assert target.backup_status(check=False).exit_status is ExitStatus.OK
    assert "no point-in-time restore is possible" in refused(target, None).message
    return doc


def check_refusals(
    target: OpsTarget,
    first: datetime,
    kube: FakeKube,
    in_place: tuple[str, Sized] | None = None,
) -> None:
    """A time before the window and one after now: both refused (exit 10, the window named)
    before anyone is asked and before the workload is touched. ``in_place``: (the refusal's
    words, the cloud's live request log) where the cloud has no in-place restore to a time,
    refused before any request."""
    if in_place is not None:
        words, requests = in_place
        before = len(requests)
        assert words in refused(target, None, "in-place").message
        assert len(requests) == before
    for offset, why in (
        (timedelta(days=-5), "is outside the recoverable window"),
        (timedelta(hours=2), "is in the future"),
    ):
        err = refused(target, datetime.now(UTC) + offset)
        assert why in err.message and utc_text(first) in err.message
    assert kube.calls == []
