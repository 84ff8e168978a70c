"""What an operation reports while it works, in three kinds, named once for every target.

``Note``: one line about what is happening now ("DB instance im-db: modifying"); the command
hands ``ctx.out.info``. ``Step``: a named stretch of work with a start and an end
(``with step("restoring"): ...``), shown as a line or a spinner with its timing; the command
hands ``ctx.out.step``. ``ProgressEvent`` and ``EventSink``: the Pulumi engine's resource
events, for a live bar or JSON lines. Domain code emits these and never draws them: the
display is on the command side (cli/progress_view.py, cli/output.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from typing import Any, Protocol

Note = Callable[[str], None]
Step = Callable[[str], AbstractContextManager[None]]


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """One engine event, reduced to what a person or a CI log needs.

    ``kind``: ``start`` (the engine began), ``resource_started``, ``resource_done``,
    ``resource_failed``, ``diagnostic`` (warnings and errors), ``summary`` (the engine finished).
    ``done``/``total`` count resource steps: ``total`` is the steps announced so far, or the
    caller's ``expected_total`` when larger (Pulumi does not know the total up front).
    """

    kind: str
    stack: str
    operation: str
    sequence: int
    done: int
    total: int
    op: str | None = None  # create, update, same, delete, replace, ...
    urn: str | None = None
    type: str | None = None
    name: str | None = None
    severity: str | None = None
    message: str | None = None
    changes: Mapping[str, int] | None = None
    duration_seconds: float | None = None
    question: str | None = None  # ``confirm`` (cli/step_progress.py): what was asked
    details: tuple[str, ...] | None = None  # and what answering yes does

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"event": self.kind}
        for f in fields(self)[1:]:
            value = getattr(self, f.name)
            if value is not None:
                doc[f.name] = dict(value) if isinstance(value, Mapping) else value
        return doc


class EventSink(Protocol):
    """What the command hands the engine. Called from the engine's event thread, one event at a
    time; it must not raise (an exception is swallowed so a broken display cannot fail a
    deploy) and must not block for long (the CLI waits for the event stream to drain)."""

    def event(self, event: ProgressEvent) -> None: ...


class NullSink:
    def event(self, event: ProgressEvent) -> None:
        return None
