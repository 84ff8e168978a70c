"""All terminal output: results on stdout, everything else (progress, warnings, prompts) on stderr.

The only module that imports rich, and only inside methods: a ``-o json`` run never loads it,
and neither does ``import cli.output``.

JSON mode promise: stdout carries exactly one JSON document (a result or an ``{"error": ...}``),
whatever else happens; progress and warnings go to stderr.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol, TextIO

from cli.errors import Cancelled, ImctlError, InterruptedUnchanged, UsageError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID
    from rich.status import Status

    from cli.env import Env
    from cli.progress import ProgressEvent
    from cli.step_progress import Heartbeat, StepEvents

Render = Callable[[Any, Mapping[str, Any]], None]


class Settings(Protocol):
    """What the output reads of the invocation (a ``cli.context.Context``), read live."""

    @property
    def env(self) -> Env: ...
    @property
    def json(self) -> bool: ...
    @property
    def verbose(self) -> bool: ...
    @property
    def no_color(self) -> bool: ...
    @property
    def stack(self) -> str: ...
    @property
    def cloud(self) -> str: ...
    @property
    def yes(self) -> bool: ...


class Output:
    def __init__(self, ctx: Settings) -> None:
        self._ctx = ctx
        self._env = ctx.env
        self._json = ctx.json
        self._stdout_console: Console | None = None
        self._stderr_console: Console | None = None
        self._document_written = False
        self._open_line = False  # a plain "message ..." step line waiting for its " done"
        self._status: Status | None = None  # the live spinner, when one is showing
        self._titles: list[str] = []  # nested step messages under that spinner
        self._engine_display: RichEngineProgress | None = None  # the live Pulumi progress bar
        # The verb the runner is running, named in JSON progress events ("deploy", "scale").
        self.operation = ""
        self._events: StepEvents | None = None
        # The heartbeat writes from its own thread; a line must not land inside another.
        self._write_lock = threading.RLock()

    # --- colour and consoles ------------------------------------------------------------

    @property
    def _color(self) -> bool:
        # https://no-color.org: any non-empty NO_COLOR disables colour.
        return not (self._ctx.no_color or self._env.environ.get("NO_COLOR"))

    def _console(self, file: TextIO, is_tty: bool) -> Console:
        from rich.console import Console

        return Console(
            file=file,
            force_terminal=is_tty,
            no_color=not self._color,
            color_system="auto" if self._color and is_tty else None,
            highlight=False,
            soft_wrap=not is_tty,  # logs and pipes get whole lines, not 80-column wraps
            _environ=dict(self._env.environ),
        )

    @property
    def stdout_console(self) -> Console:
        if self._stdout_console is None:
            self._stdout_console = self._console(self._env.stdout, self._env.stdout_isatty)
        return self._stdout_console

    @property
    def stderr_console(self) -> Console:
        if self._stderr_console is None:
            self._stderr_console = self._console(self._env.stderr, self._env.stderr_isatty)
        return self._stderr_console

    def _spinner_ok(self) -> bool:
        return not self._json and self._env.stderr_isatty and not self._env.ci

    # --- stderr plumbing ----------------------------------------------------------------

    def _close_line(self) -> None:
        with self._write_lock:
            if self._open_line:
                self._env.stderr.write("\n")
                self._open_line = False

    def _err_plain(self, text: str) -> None:
        with self._write_lock:
            self._close_line()
            self._env.stderr.write(text + "\n")
            self._env.stderr.flush()

    def _err_rich(self, plain: str, markup: Callable[[Callable[[str], str]], str]) -> None:
        """Styled in text mode, plain in JSON mode (which must not pay for importing rich).

        ``markup`` gets the escape function, so rich is only imported when it is called.
        """
        if self._json:
            self._err_plain(plain)
        else:
            with self._write_lock:
                self._close_line()
                self.stderr_console.print(markup(self._escape), soft_wrap=True)

    @staticmethod
    def _escape(text: str) -> str:
        from rich.markup import escape

        return escape(text)

    # --- hints: commands that work when pasted (cli/hints.py) ----------------------------

    def _hint_options(self) -> tuple[str | None, str | None]:
        from cli.hints import needed

        return needed(self._ctx.stack, self._ctx.cloud, self._ctx.env.environ)

    def _hinted(self, text: str) -> str:
        from cli.hints import with_options

        return with_options(text, *self._hint_options())

    def _rendered(self, console: Console, doc: Mapping[str, Any], render: Render) -> None:
        from cli.hints import rendering

        with rendering(*self._hint_options()):  # a render's advice() gets the options
            render(console, doc)

    # --- progress and messages ----------------------------------------------------------

    def _step_events(self) -> StepEvents:
        if self._events is None:
            from cli.progress_view import JsonLinesProgress
            from cli.step_progress import StepEvents

            sink = JsonLinesProgress(self._env.stderr)
            self._events = StepEvents(sink, self._ctx.stack, self.operation)
        return self._events

    def _heartbeat(self, beat: Callable[[float], None], started: float) -> Heartbeat:
        from cli.step_progress import Heartbeat, heartbeat_interval

        return Heartbeat(heartbeat_interval(self._env.environ), beat, started)

    @contextlib.contextmanager
    def step(self, message: str) -> Iterator[None]:
        started = time.monotonic()
        if self._json:
            with self._json_step(message, started):
                yield
            return
        if self._spinner_ok():
            with self._spinner_step(message):
                yield
            return
        with self._write_lock:
            self._close_line()
            self._env.stderr.write(f"{message} ...")
            self._env.stderr.flush()
            self._open_line = True

        def still(seconds: float) -> None:
            self._err_plain(f"{message} ... still running ({seconds:.0f}s)")

        beat = self._heartbeat(still, started)
        outcome = "failed"
        try:
            yield
            outcome = "done"
        except KeyboardInterrupt:
            outcome = "interrupted"
            raise
        finally:
            beat.stop()
            took = f"{outcome} ({time.monotonic() - started:.1f}s)"
            with self._write_lock:
                if self._open_line:
                    self._env.stderr.write(f" {took}\n")
                    self._open_line = False
                else:  # something was printed meanwhile: repeat the message so it stands alone
                    self._env.stderr.write(f"{message} ... {took}\n")
                self._env.stderr.flush()

    @contextlib.contextmanager
    def _json_step(self, message: str, started: float) -> Iterator[None]:
        events = self._step_events()
        events.started(message)
        beat = self._heartbeat(lambda seconds: events.running(message, seconds), started)
        ok = False
        try:
            yield
            ok = True
        finally:
            beat.stop()
            events.finished(message, ok, time.monotonic() - started)

    @contextlib.contextmanager
    def _spinner_step(self, message: str) -> Iterator[None]:
        console = self.stderr_console
        started = time.monotonic()
        owner = self._status is None
        if self._status is None:
            self._status = console.status("")
            self._status.start()
        # rich shows one live display at a time: a nested step retitles the spinner instead.
        self._titles.append(message)
        self._status.update(self._escape(message))
        ok = False
        try:
            yield
            ok = True
        finally:
            self._titles.pop()
            took = time.monotonic() - started
            mark = "[green]✓[/green]" if ok else "[red]✗[/red]"
            line = f"{mark} {self._escape(message)} [dim]({took:.1f}s)[/dim]"
            if owner:
                # The spinner goes first, then the line: printed while the live display ran, the
                # line could land right after a spinner frame the refresh thread had just drawn
                # (seen in tests/cli/test_terminal.py: "⠋ checking ports✓ checking ports").
                self._status.stop()
                self._status = None
                console.print(line)
            else:
                console.print(line)
                if self._titles:
                    self._status.update(self._escape(self._titles[-1]))

    def engine_progress(self) -> RichEngineProgress | None:
        """A live progress bar for Pulumi engine events, or None where a bar does not belong
        (JSON, CI, no terminal, a dumb terminal, a step spinner already live): the caller then
        prints lines. End it with ``end_engine_progress`` when the engine call returns."""
        if not self._spinner_ok() or self._status is not None:
            return None
        console = self.stderr_console
        if console.is_dumb_terminal:  # rich would draw nothing until the very end
            return None
        self.end_engine_progress()
        self._engine_display = RichEngineProgress(console, verbose=self._ctx.verbose)
        return self._engine_display

    def end_engine_progress(self) -> None:
        """Stop the live engine bar, if one is showing; safe to call any number of times."""
        display, self._engine_display = self._engine_display, None
        if display is not None:
            display.close()

    def info(self, message: str) -> None:
        message = self._hinted(message)
        if self._json:
            self._step_events().note(message)
            return
        self._err_rich(message, lambda esc: esc(message))

    def warn(self, message: str) -> None:
        message = self._hinted(message)
        if self._json:  # stderr stays JSON lines, so a consumer can parse every line
            self._step_events().warning(message)
            return
        self._err_rich(
            f"warning: {message}", lambda esc: f"[yellow]warning:[/yellow] {esc(message)}"
        )

    # --- the one result -----------------------------------------------------------------

    def _write_document(self, doc: Mapping[str, Any]) -> None:
        # default=str: a stray datetime or Path in a result must not turn success into a crash.
        self._env.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
        self._env.stdout.flush()
        self._document_written = True

    def result(self, doc: Mapping[str, Any], render: Render) -> None:
        from cli.hints import in_document

        self.end_engine_progress()
        doc = in_document(doc, *self._hint_options())
        if self._json:
            self._write_document(doc)
        else:
            self._rendered(self.stdout_console, doc, render)

    def aside(self, doc: Mapping[str, Any], render: Render) -> None:
        """``doc`` rendered on stderr before the result (a preview before its question), its
        advice completed like a result's."""
        self._rendered(self.stderr_console, doc, render)

    def error(self, err: ImctlError) -> None:
        self.end_engine_progress()  # a bar left running would redraw over the error
        # The hint only: a message may name a command as the subject ("`imctl standby
        # rebuild` is not available on aws"), which options would not make clearer.
        err.hint = self._hinted(err.hint)
        if err.details is not None:
            from cli.hints import in_document

            err.details = in_document(err.details, *self._hint_options())
        if self._json and not self._document_written:
            self._write_document({"error": err.to_json()})
            return
        # JSON mode after a result was already printed: stdout keeps its single document.
        hint = f"\nhint: {err.hint}" if err.hint else ""

        def markup(esc: Callable[[str], str]) -> str:
            styled_hint = f"\n[cyan]hint:[/cyan] {esc(err.hint)}" if err.hint else ""
            return f"[bold red]error:[/bold red] {esc(err.message)}{styled_hint}"

        self._err_rich(f"error: {err.message}{hint}", markup)

    # --- confirmations ------------------------------------------------------------------

    def _show_details(self, question: str, details: Sequence[str]) -> None:
        if not details:
            return
        details = [self._hinted(line) for line in details]
        if self._json:  # stderr stays JSON lines: the question and its details are one event
            self._step_events().confirm(question, details)
            return
        self._err_rich(question, lambda esc: f"[bold]{esc(question)}[/bold]")
        for line in details:

            def bullet(esc: Callable[[str], str], line: str = line) -> str:
                return f"  • {esc(line)}"

            self._err_rich(f"  - {line}", bullet)

    def _require_interactive(self, question: str) -> None:
        if self._env.interactive:
            return
        why = "CI is set" if self._env.ci else "there is no terminal to ask on"
        raise UsageError(
            f"{question.rstrip('?: ')} needs confirmation, and {why}",
            "re-run with --yes (-y) to confirm",
            code="confirmation_required",
        )

    def _ask(self, prompt: str) -> str:
        self._close_line()
        if self._status is not None:  # a redrawing spinner would overwrite the prompt
            self._status.stop()
        try:
            self._env.stderr.write(prompt)
            self._env.stderr.flush()
            answer = self._env.stdin.readline()
        except KeyboardInterrupt:
            # Confirmations come before any change, so nothing is half done: end the prompt's
            # line and say no more.
            self._env.stderr.write("\n")
            raise InterruptedUnchanged(
                "interrupted at the confirmation", "nothing was changed"
            ) from None
        finally:
            if self._status is not None:
                self._status.start()
        if not answer:  # EOF: nobody said yes
            self._env.stderr.write("\n")
            return ""
        return answer.strip()

    def confirm(self, question: str, *, details: Sequence[str] = ()) -> None:
        self._show_details(question, details)
        if self._ctx.yes:
            return
        self._require_interactive(question)
        answer = self._ask(f"{question} [y/N] ")
        if answer.lower() not in ("y", "yes"):
            raise Cancelled("cancelled: the answer was not yes", "nothing was changed")

    def confirm_typed(self, expected: str, *, details: Sequence[str] = ()) -> None:
        question = f"Type {expected!r} to confirm:"
        self._show_details(question, details)
        if self._ctx.yes:
            return
        self._require_interactive(f"this operation on {expected!r}")
        answer = self._ask(f"Type {expected} to confirm: ")
        if answer != expected:
            raise Cancelled(f"cancelled: expected {expected!r}", "nothing was changed")


# --- Pulumi engine progress ---------------------------------------------------------------

_DOING: Final = {
    "create": "creating",
    "update": "updating",
    "delete": "deleting",
    "replace": "replacing",
    "same": "checking",
    "read": "reading",
    "refresh": "refreshing",
    "create-replacement": "creating replacement",
    "delete-replaced": "deleting replaced",
    "import": "importing",
    "discard": "discarding",
}
# Pulumi's own colours for the kinds of change: + green, ~ yellow, - red, +- magenta.
_OP_STYLE: Final = {
    "create": "green",
    "create-replacement": "green",
    "import": "green",
    "update": "yellow",
    "delete": "red",
    "delete-replaced": "red",
    "discard": "red",
    "replace": "magenta",
    "same": "dim",
    "read": "dim",
    "refresh": "dim",
}


class RichEngineProgress:
    """Pulumi engine events as a live bar on a terminal: "pulumi <operation> <stack>", done/total,
    the step in flight, failures and elapsed time. Changed resources, failures, warnings and
    errors stay as lines above the bar (unchanged ones only with ``verbose``), worded exactly as
    ``LineProgress`` words them, so a terminal and a CI log tell the same story.

    ``event`` runs on the engine's event thread and never raises; ``close`` ends the bar when no
    summary came (the engine failed), and leaves its last state on screen to show how far it got.
    """

    def __init__(self, console: Console, *, verbose: bool = False) -> None:
        from cli.progress_view import LineProgress

        self._console = console
        self._format = LineProgress(lambda _text: None, verbose=verbose).format
        self._lock = threading.Lock()
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None
        self._in_flight: dict[tuple[str, str], str] = {}  # (urn, op) -> "creating <type> <name>"
        self._failed: set[str] = set()
        self._closed = False

    def event(self, event: ProgressEvent) -> None:
        # A broken display must never fail or stall a deploy: whatever goes wrong here is dropped.
        with contextlib.suppress(Exception), self._lock:
            self._handle(event)

    def close(self) -> None:
        with contextlib.suppress(Exception), self._lock:
            self._stop(keep=True)

    def _handle(self, e: ProgressEvent) -> None:
        if e.kind == "summary":
            self._stop(keep=False)  # the summary line says it all; the bar would repeat it
            self._line(self._format(e), "bold red" if self._failed else "bold")
            return
        if not self._closed:
            self._show(e)
        if e.kind != "start":  # the bar's description already says what started
            self._line(self._format(e), self._style(e))

    def _show(self, e: ProgressEvent) -> None:
        if self._bar is None:
            self._start(f"pulumi {e.operation} {e.stack}")
        assert self._bar is not None and self._task is not None
        key = (e.urn or "", e.op or "")
        if e.kind == "resource_started":
            self._in_flight[key] = f"{_DOING.get(e.op or '', e.op)} {e.type} {e.name}"
        elif e.kind in ("resource_done", "resource_failed"):
            self._in_flight.pop(key, None)
        if e.kind == "resource_failed" and e.urn:
            self._failed.add(e.urn)
        current = next(reversed(self._in_flight.values()), "")
        if len(self._in_flight) > 1:  # steps run in parallel: name the newest, count the rest
            current += f" (+{len(self._in_flight) - 1} more)"
        self._bar.update(
            self._task,
            completed=e.done,
            total=e.total or None,  # None: an indeterminate bar until steps are announced
            current=current,
            failed=f"{len(self._failed)} failed" if self._failed else "",
            refresh=True,  # else a line printed next would redraw the bar as it was before
        )

    def _start(self, description: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False, style="bold"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]}", markup=False, style="bold red"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[current]}", markup=False, style="dim"),
            console=self._console,
            transient=True,
            # stdout carries the result document only; never let the bar re-route writes to it.
            redirect_stdout=False,
        )
        self._task = self._bar.add_task(description, total=None, current="", failed="")
        self._bar.start()

    def _stop(self, *, keep: bool) -> None:
        self._closed = True
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.live.transient = not keep
            bar.stop()

    def _line(self, text: str | None, style: str) -> None:
        if text is None:
            return
        from rich.text import Text

        self._console.print(Text(text, style=style))

    @staticmethod
    def _style(e: ProgressEvent) -> str:
        if e.kind == "resource_failed" or (e.kind == "diagnostic" and e.severity == "error"):
            return "bold red"
        if e.kind == "diagnostic":
            return "yellow"
        if e.kind == "resource_done":
            return _OP_STYLE.get(e.op or "", "")
        return "dim"
