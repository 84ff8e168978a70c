"""How the Pulumi engine's progress events are shown: JSON lines with ``-o json``, a live Rich bar
on a terminal (``RichEngineProgress`` in cli/output.py), plain lines otherwise. The engine only
emits ``ProgressEvent``s (cli/progress.py); choosing and drawing a display is the command's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, TextIO

from cli.progress import EventSink, ProgressEvent

if TYPE_CHECKING:
    from cli.context import Context


class JsonLinesProgress:
    """``-o json``: one JSON object per event on stderr; stdout keeps the one result document."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def event(self, event: ProgressEvent) -> None:
        line = json.dumps(event.to_json(), sort_keys=True)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


_PAST: Final = {
    "create": "created",
    "update": "updated",
    "delete": "deleted",
    "replace": "replaced",
    "same": "unchanged",
    "read": "read",
    "refresh": "refreshed",
    "create-replacement": "created replacement",
    "delete-replaced": "deleted replaced",
    "import": "imported",
    "discard": "discarded",
}


class LineProgress:
    """Plain lines for people (``emit`` is e.g. ``ctx.out.info``): every changed resource,
    warnings and errors, the summary. Unchanged resources only with ``verbose``: a re-deploy
    would otherwise print a hundred "unchanged" lines."""

    def __init__(self, emit: Callable[[str], None], *, verbose: bool = False) -> None:
        self._emit = emit
        self._verbose = verbose

    def event(self, event: ProgressEvent) -> None:
        text = self.format(event)
        if text is not None:
            self._emit(text)

    def format(self, e: ProgressEvent) -> str | None:
        where = f"[{e.done}/{e.total}]"
        if e.kind == "start":
            return f"pulumi {e.operation} on stack {e.stack} ..."
        if e.kind == "resource_done":
            if e.op in ("same", "read") and not self._verbose:
                return None
            verb = _PAST.get(e.op or "", e.op or "done")
            if e.operation == "preview":
                verb = f"would be {verb}" if e.op != "same" else verb
            return f"{where} {verb}: {e.type} {e.name}"
        if e.kind == "resource_started":
            return f"{where} {e.op}: {e.type} {e.name} ..." if self._verbose else None
        if e.kind == "resource_failed":
            return f"{where} FAILED: {e.type} {e.name}"
        if e.kind == "diagnostic":
            subject = f" ({e.name})" if e.name else ""
            return f"{e.severity}{subject}: {e.message}"
        if e.kind == "summary":
            changes = ", ".join(
                f"{n} {_PAST.get(op, op)}" for op, n in sorted((e.changes or {}).items()) if n
            )
            took = f" in {e.duration_seconds:.0f}s" if e.duration_seconds is not None else ""
            return f"pulumi {e.operation} finished{took}: {changes or 'no changes'}"
        return None


def progress_for(ctx: Context) -> EventSink:
    """The default EventSink for a command: JSON lines on stderr with ``-o json``, a live Rich bar
    on a terminal (cli/output.py; the command ends it with ``ctx.out.end_engine_progress()``),
    plain lines through ``ctx.out.info`` otherwise (CI, pipes, log files)."""
    if ctx.json:
        return JsonLinesProgress(ctx.env.stderr)
    live = ctx.out.engine_progress()
    if live is not None:
        return live
    return LineProgress(ctx.out.info, verbose=ctx.verbose)
