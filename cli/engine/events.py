"""Pulumi's engine events, as the ``ProgressEvent``s the CLI draws: steps counted once per
resource and operation, failures kept with their reason, the summary's changes."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from cli.engine.steps import StepLog
from cli.progress import EventSink, NullSink, ProgressEvent

if TYPE_CHECKING:
    from pulumi import automation as auto

# Pulumi's colour markup, in case a message arrives coloured despite `--color never`.
_COLOR = re.compile(r"<\{%[^%]*%\}>")

Operation = Literal["up", "preview", "destroy", "refresh"]
# A preview's steps are its result (the deploy shows them grouped, once): its progress is the
# start, the diagnostics and the summary.
_PREVIEW_QUIET = frozenset({"resource_started", "resource_done"})


@dataclass(frozen=True, slots=True)
class Failure:
    urn: str
    type: str
    name: str
    message: str


def _name_of(urn: str) -> str:
    return urn.rsplit("::", 1)[-1] if urn else ""


def _type_of(urn: str) -> str:
    # urn:pulumi:<stack>::<project>::<parent$...$type>::<name>
    parts = urn.split("::")
    return parts[2].rsplit("$", 1)[-1] if len(parts) >= 4 else ""


def op_map(ops: Mapping[Any, int] | None) -> dict[str, int]:
    # Keys are OpType members or plain strings, depending on where the map came from.
    return {str(getattr(k, "value", k)): int(v) for k, v in (ops or {}).items()}


def clean(message: str) -> str:
    return _COLOR.sub("", message).strip()


class EventRenderer:
    """The ``on_event`` callback: counts steps, records failures, feeds ``EventSink``.

    Pulumi calls it from its gRPC thread (or log-watcher thread on older CLIs), hence the lock.
    """

    def __init__(
        self,
        stack: str,
        operation: Operation,
        progress: EventSink | None = None,
        expected_total: int | None = None,
    ) -> None:
        self.stack = stack
        self.operation = operation
        self._progress: EventSink = progress or NullSink()
        self._expected = expected_total or 0
        self._lock = threading.Lock()
        self._started: set[tuple[str, str]] = set()
        self._finished: set[tuple[str, str]] = set()
        self.failures: list[Failure] = []
        self.errors: list[str] = []  # error diagnostics without a resource (program, engine)
        self.warnings: list[str] = []
        self.changes: dict[str, int] = {}
        self.duration_seconds: float | None = None
        self.events_seen = 0
        self.dropped = 0  # events we could not translate or the display raised on
        self.plan = StepLog()  # what a preview plans to change

    @property
    def done(self) -> int:
        return len(self._finished)

    @property
    def total(self) -> int:
        return max(len(self._started), len(self._finished), self._expected)

    def __call__(self, event: auto.EngineEvent) -> None:
        with self._lock:
            self.events_seen += 1
            try:
                translated = self._translate(event)
            except Exception:  # an event shape we do not know must not abort the operation
                self.dropped += 1
                return
            if translated is None:
                return
            if self.operation == "preview" and translated.kind in _PREVIEW_QUIET:
                return
            try:
                self._progress.event(translated)
            except Exception:  # a broken display must not fail a deploy
                self.dropped += 1

    def _resource(self, kind: str, seq: int, md: Any) -> ProgressEvent:
        """A resource step started, finished or failed: counted once per (urn, operation)."""
        op = str(getattr(md.op, "value", md.op))
        self._started.add((md.urn, op))
        if kind != "resource_started":
            self._finished.add((md.urn, op))
        return self._make(kind, seq, op=op, urn=md.urn, type=md.type, name=_name_of(md.urn))

    def _make(self, kind: str, seq: int, **kw: Any) -> ProgressEvent:
        return ProgressEvent(
            kind=kind,
            stack=self.stack,
            operation=self.operation,
            sequence=seq,
            done=self.done,
            total=self.total,
            **kw,
        )

    def _translate(self, ev: auto.EngineEvent) -> ProgressEvent | None:
        seq = ev.sequence
        if ev.prelude_event is not None:
            return self._make("start", seq)
        if ev.resource_pre_event is not None:
            if self.operation == "preview":
                self.plan.add(ev.resource_pre_event.metadata)
            return self._resource("resource_started", seq, ev.resource_pre_event.metadata)
        if ev.res_outputs_event is not None:
            return self._resource("resource_done", seq, ev.res_outputs_event.metadata)
        if ev.res_op_failed_event is not None:
            md = ev.res_op_failed_event.metadata
            if not any(f.urn == md.urn for f in self.failures):
                op = str(getattr(md.op, "value", md.op))
                self.failures.append(Failure(md.urn, md.type, _name_of(md.urn), f"{op} failed"))
            return self._resource("resource_failed", seq, md)
        if ev.diagnostic_event is not None:
            d = ev.diagnostic_event
            severity = d.severity or "info"
            if severity not in ("error", "warning"):
                return None  # info diagnostics are the program's prints: too chatty for progress
            message = clean(d.message)
            if not message:
                return None
            urn = d.urn or ""
            if severity == "error":
                if urn and _type_of(urn) != "pulumi:pulumi:Stack":
                    self._fail(urn, message)
                else:
                    self.errors.append(message)
            else:
                self.warnings.append(message)
            return self._make(
                "diagnostic",
                seq,
                severity=severity,
                message=message,
                urn=urn or None,
                type=_type_of(urn) or None,
                name=_name_of(urn) or None,
            )
        if ev.policy_event is not None:
            p = ev.policy_event
            severity = "error" if p.enforcement_level == "mandatory" else "warning"
            message = clean(f"policy {p.policy_pack_name}/{p.policy_name}: {p.message}")
            (self.errors if severity == "error" else self.warnings).append(message)
            return self._make("diagnostic", seq, severity=severity, message=message)
        if ev.summary_event is not None:
            s = ev.summary_event
            self.changes = op_map(s.resource_changes)
            self.duration_seconds = float(s.duration_seconds)
            return self._make(
                "summary", seq, changes=self.changes, duration_seconds=self.duration_seconds
            )
        return None

    def _fail(self, urn: str, message: str) -> None:
        # resOpFailedEvent may come first with no reason; the diagnostic carries the reason.
        for i, f in enumerate(self.failures):
            if f.urn == urn:
                if f.message.endswith(" failed"):
                    self.failures[i] = Failure(urn, f.type, f.name, message)
                return
        self.failures.append(Failure(urn, _type_of(urn), _name_of(urn), message))

    def counts(self) -> dict[str, int]:
        return {"done": self.done, "total": self.total, "failed": len(self.failures)}
