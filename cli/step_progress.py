"""A local operation's steps and notes as ``ProgressEvent``s, and the heartbeat that keeps a log
from going quiet during a long step.

With ``-o json`` a local deploy reports through the same event shape (and the same JSON lines on
stderr) as a cloud deploy's engine, so one consumer reads both: ``step_started``, ``step_done``,
``step_failed``, ``step_running`` (the heartbeat), ``note``, ``diagnostic`` (warnings), ``confirm``
(a confirmation's question and what it does, also when ``--yes`` answered it). ``done``
counts the steps finished, ``total`` the steps started so far, as the engine counts resources it
has seen.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from cli.errors import UsageError
from cli.progress import EventSink, ProgressEvent

# How often a step that is still running says so, in a log or JSON lines (never on a terminal,
# where the spinner moves). Short enough that a CI job's "no output" watchdog never fires.
HEARTBEAT_SECONDS: Final = 15.0
HEARTBEAT_ENV: Final = "IMCTL_PROGRESS_INTERVAL"
# Bounds of the variable besides 0 (off): below, a log is all heartbeats; above, a CI watchdog
# fires first, and Event.wait overflows long before a value like 1e12.
HEARTBEAT_MIN: Final = 0.01
HEARTBEAT_MAX: Final = 3600.0


class StepEvents:
    """Numbers the events of one invocation and hands them to ``sink`` (JSON lines)."""

    def __init__(self, sink: EventSink, stack: str, operation: str) -> None:
        self._sink = sink
        self._stack = stack
        self._operation = operation
        self._sequence = 0
        self._started = 0
        self._done = 0
        self._lock = threading.Lock()  # the heartbeat emits from its own thread

    def _emit(self, kind: str, **fields: object) -> None:
        with self._lock:
            self._sequence += 1
            event = ProgressEvent(
                kind=kind,
                stack=self._stack,
                operation=self._operation,
                sequence=self._sequence,
                done=self._done,
                total=self._started,
                **fields,  # type: ignore[arg-type]
            )
            # Written under the lock too: a heartbeat numbered after a main-thread event must
            # not reach stderr before it.
            self._sink.event(event)

    def started(self, step: str) -> None:
        with self._lock:
            self._started += 1
        self._emit("step_started", name=step)

    def running(self, step: str, seconds: float) -> None:
        self._emit("step_running", name=step, duration_seconds=round(seconds, 1))

    def finished(self, step: str, ok: bool, seconds: float) -> None:
        with self._lock:
            self._done += 1
        kind = "step_done" if ok else "step_failed"
        self._emit(kind, name=step, duration_seconds=round(seconds, 1))

    def note(self, message: str) -> None:
        self._emit("note", message=message)

    def warning(self, message: str) -> None:
        self._emit("diagnostic", severity="warning", message=message)

    def confirm(self, question: str, details: Sequence[str]) -> None:
        self._emit("confirm", question=question, details=tuple(details))


class Heartbeat:
    """Calls ``beat(elapsed_seconds)`` every ``interval`` seconds from a daemon thread until
    ``stop``. ``beat`` must not raise: a broken display must not fail the operation."""

    def __init__(self, interval: float, beat: Callable[[float], None], started: float) -> None:
        self._clock = time.monotonic
        self._interval = interval
        self._beat = beat
        self._started = started
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="imctl-heartbeat", daemon=True)
        if interval > 0:
            self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            with contextlib.suppress(Exception):  # see the class docstring
                self._beat(self._clock() - self._started)

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()


def heartbeat_interval(environ: Mapping[str, str]) -> float:
    """``IMCTL_PROGRESS_INTERVAL`` seconds (0 turns the heartbeat off), else the default;
    UsageError for anything else, checked with the common options before a command runs."""
    raw = environ.get(HEARTBEAT_ENV, "").strip()
    if not raw:
        return HEARTBEAT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if seconds == 0 or HEARTBEAT_MIN <= seconds <= HEARTBEAT_MAX:  # nan fails both
        return seconds
    raise UsageError(
        f"{HEARTBEAT_ENV}={raw!r} is not a heartbeat interval",
        f"set it to seconds between {HEARTBEAT_MIN:g} and {HEARTBEAT_MAX:g}, 0 to turn the"
        f" heartbeat off, or unset it for the default {HEARTBEAT_SECONDS:g}",
        code="invalid_progress_interval",
    )
