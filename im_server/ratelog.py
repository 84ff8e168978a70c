"""Logging a repeated event rarely: a flood of it must not flood the log."""

from __future__ import annotations

import time


class LogThrottle:
    """Says when an event that may repeat fast (a malformed bus frame, NATS refusing the login
    every 0.25 s) is due to be logged again: at most once per ``interval`` seconds."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last = -interval
        self._since = 0

    def due(self) -> int:
        """Count one event; if it is time to log, return how many there were since the last
        time (this one included), else 0."""
        self._since += 1
        now = time.monotonic()
        if now - self._last < self.interval:
            return 0
        count, self._since, self._last = self._since, 0, now
        return count
