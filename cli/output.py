"""All terminal output: results on stdout, everything else (progress, warnings, prompts) on stderr.

The only module that imports rich, and only inside methods: a ``-o json`` run never loads it,
and neither does ``import cli.output``.

JSON mode promise: stdout carries exactly one JSON document (a result or an ``{"error": ...}``),
whatever else happens; progress and warnings go to stderr.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from cli.errors import Cancelled, ImctlError, UsageError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status

    from cli.context import Context

Render = Callable[[Any, Mapping[str, Any]], None]


class Output:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._env = ctx.env
        self._json = ctx.json
        self._stdout_console: Console | None = None
        self._stderr_console: Console | None = None
        self._document_written = False
        self._open_line = False  # a plain "message ..." step line waiting for its " done"
        self._status: Status | None = None  # the live spinner, when one is showing
        self._titles: list[str] = []  # nested step messages under that spinner

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
        if self._open_line:
            self._env.stderr.write("\n")
            self._open_line = False

    def _err_plain(self, text: str) -> None:
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
            self._close_line()
            self.stderr_console.print(markup(self._escape), soft_wrap=True)

    @staticmethod
    def _escape(text: str) -> str:
        from rich.markup import escape

        return escape(text)

    # --- progress and messages ----------------------------------------------------------

    @contextlib.contextmanager
    def step(self, message: str) -> Iterator[None]:
        if self._json and not self._ctx.verbose:
            yield
            return
        started = time.monotonic()
        if self._spinner_ok():
            with self._spinner_step(message):
                yield
            return
        self._close_line()
        self._env.stderr.write(f"{message} ...")
        self._env.stderr.flush()
        self._open_line = True
        outcome = "failed"
        try:
            yield
            outcome = "done"
        except KeyboardInterrupt:
            outcome = "interrupted"
            raise
        finally:
            took = f"{outcome} ({time.monotonic() - started:.1f}s)"
            if self._open_line:
                self._env.stderr.write(f" {took}\n")
                self._open_line = False
            else:  # something was printed meanwhile: repeat the message so the line stands alone
                self._env.stderr.write(f"{message} ... {took}\n")
            self._env.stderr.flush()

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
            console.print(f"{mark} {self._escape(message)} [dim]({took:.1f}s)[/dim]")
            if owner:
                self._status.stop()
                self._status = None
            elif self._titles:
                self._status.update(self._escape(self._titles[-1]))

    def info(self, message: str) -> None:
        if self._json:
            return
        self._err_rich(message, lambda esc: esc(message))

    def warn(self, message: str) -> None:
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
        if self._json:
            self._write_document(doc)
        else:
            render(self.stdout_console, doc)

    def error(self, err: ImctlError) -> None:
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
