"""One ``--timeout`` for a whole operation, and the one loop that waits on something under it.

Every target uses these: a timed-out wait is exit 9 with a message that says what was still
going on, on every cloud and locally.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from cli.errors import OperationTimeout
from cli.progress import Note

T = TypeVar("T")

# Without --timeout an operation is still bounded, so nothing (a cloud, a pg_restore) can hang a
# CI job forever.
NO_TIMEOUT_BOUND = 24 * 3600.0
DEFAULT_HINT = "raise --timeout; the cloud keeps working on what was started"


class Deadline:
    """``seconds`` (None or <= 0: the built-in bound) from now, checked between steps and by
    every poll; what is left is handed to every subprocess and HTTP wait.

    ``operation`` prefixes the messages ("restore: timed out ..."); ``hint`` is what a timeout
    tells the user to do, since that depends on what the target leaves behind."""

    def __init__(
        self, seconds: float | None, *, operation: str = "", hint: str = DEFAULT_HINT
    ) -> None:
        self.seconds = seconds
        self.operation = operation
        self.hint = hint
        bound = seconds if seconds is not None and seconds > 0 else NO_TIMEOUT_BOUND
        self._end = time.monotonic() + bound

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def _prefix(self) -> str:
        return f"{self.operation}: " if self.operation else ""

    def error(self, during: str, hint: str = "") -> OperationTimeout:
        limit = f"{self.seconds:g}s" if self.seconds else "the built-in bound"
        return OperationTimeout(f"{self._prefix()}timed out ({limit}) {during}", hint or self.hint)

    def check(self, during: str, hint: str = "") -> None:
        if self.expired():
            raise self.error(during, hint)

    def unknown_outcome(
        self, what: str, state: str, waited: float, hint: str = ""
    ) -> OperationTimeout:
        """A wait gave up: whatever it waited for may still happen, and the error says so."""
        return OperationTimeout(
            f"{self._prefix()}{what}: still {state} after {waited:.0f}s; the outcome is unknown",
            hint or self.hint,
        )


def poll(
    fetch: Callable[[], T],
    *,
    done: Callable[[T], bool],
    state: Callable[[T], str],
    what: str,
    interval: float,
    deadline: Deadline | None = None,
    progress: Note | None = None,
    limit: float | None = None,
    still_every: float | None = None,
    unknown_hint: str = "",
    timed_out: Callable[[T], T] | None = None,
) -> T:
    """Call ``fetch`` until ``done`` (``fetch`` raises on a failed state); report each new state
    through ``progress``, and an unchanged one every ``still_every`` seconds so a long wait shows
    it is alive. ``limit`` bounds this wait below the deadline; a wait that is no step of an
    operation (stopping a process) has no ``deadline`` and only its ``limit``. On the deadline
    the outcome is unknown, and the error says so (``unknown_hint`` says where to look); a wait
    with its own answer to running out gives ``timed_out``, which gets the last value and
    raises, or returns what the wait returns."""
    start = time.monotonic()
    bound = deadline.remaining() if deadline is not None else NO_TIMEOUT_BOUND
    end = start + min(bound, limit if limit is not None else float("inf"))
    last: str | None = None
    last_report = start
    while True:
        value = fetch()
        current = state(value)
        now = time.monotonic()
        again = still_every is not None and now - last_report >= still_every
        if progress is not None and (current != last or again):
            suffix = f" ({now - start:.0f}s)" if current == last else ""
            progress(f"{what}: {current}{suffix}")
            last, last_report = current, now
        if done(value):
            return value
        if now >= end:
            if timed_out is not None:
                return timed_out(value)
            outcome = deadline if deadline is not None else Deadline(None)
            raise outcome.unknown_outcome(what, current, now - start, unknown_hint)
        time.sleep(max(0.0, min(interval, end - now)))
