"""The one way a command runs: stack check, lock, journal, output, exit code.

A command parses its options, builds a Context with ``make_context`` and hands ``run`` a body
that returns a Result or raises ImctlError. Everything that makes the CLI contract hold for
every verb (one JSON document, exit codes, never exit 0 on failure, the lock, the journal)
lives here, so no command can forget it.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import typer

from cli import journal
from cli.context import Context
from cli.errors import (
    ExitStatus,
    ImctlError,
    InternalError,
    Interrupted,
    InterruptedUnchanged,
    StackNotFound,
)
from cli.locks import StackLock, utc_now_iso
from cli.output import Render
from cli.results import Result
from cli.targets.choose import keeps_stack_dir

R = TypeVar("R", bound=Result)


def existing_stacks(ctx: Context) -> list[str]:
    """Deployed stacks by name: a destroyed stack whose snapshots were kept still has a
    directory, but -s on it would only find the same "not found"."""
    root = ctx.env.home / "stacks"
    try:
        return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file())
    except (FileNotFoundError, NotADirectoryError):
        return []


def stack_not_found(ctx: Context) -> StackNotFound:
    names = existing_stacks(ctx)
    known = f"existing stacks: {', '.join(names)}" if names else f"no stacks in {ctx.env.home}"
    return StackNotFound(
        f"stack {ctx.stack!r} not found",
        f"create it with `imctl deploy -s {ctx.stack}`, or pick another with -s; {known}",
    )


@dataclass
class _Outcome:
    status: ExitStatus
    doc: dict[str, Any] | None = None  # the result document, when the body returned
    error: ImctlError | None = None
    exc: BaseException | None = field(default=None, repr=False)  # for the -v traceback

    @property
    def journal_result(self) -> str:
        if self.status is ExitStatus.INTERRUPTED:
            return "interrupted"
        return "ok" if self.status is ExitStatus.OK else "error"

    @property
    def error_code(self) -> str | None:
        if self.error is not None:
            return self.error.code
        return None if self.status is ExitStatus.OK else self.status.name.lower()


def _failed(exc: BaseException, *, mutating: bool) -> _Outcome:
    if isinstance(exc, ImctlError):
        return _Outcome(exc.status, error=exc, exc=exc)
    if isinstance(exc, KeyboardInterrupt) and not mutating:
        # A read-only command changed nothing: Ctrl-C is how `logs -f` ends, not an accident.
        quiet = InterruptedUnchanged("interrupted; nothing was changed")
        return _Outcome(ExitStatus.INTERRUPTED, error=quiet, exc=exc)
    if isinstance(exc, KeyboardInterrupt):
        err: ImctlError = Interrupted(
            "interrupted",
            "the operation may be half done; check `imctl status`, then re-run it "
            "(operations are idempotent)",
        )
        return _Outcome(ExitStatus.INTERRUPTED, error=err, exc=exc)
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    err = InternalError(f"unexpected error: {message}", "re-run with -v for the traceback")
    return _Outcome(ExitStatus.ERROR, error=err, exc=exc)


def _attempt(body: Callable[[], R], *, mutating: bool) -> _Outcome:
    try:
        result = body()
        # to_json inside the attempt: a result that cannot be serialised is a failure, and the
        # journal must say so.
        return _Outcome(ExitStatus(result.exit_status), doc=result.to_json())
    except (Exception, KeyboardInterrupt) as exc:
        return _failed(exc, mutating=mutating)


def _journal(
    ctx: Context, op: str, args: Mapping[str, Any], started_at: str, t0: float, out: _Outcome
) -> None:
    record = journal.Record(
        op=op,
        args=dict(args),
        started_at=started_at,
        finished_at=utc_now_iso(),
        duration_s=round(time.monotonic() - t0, 3),
        result=out.journal_result,
        exit_code=int(out.status),
        error_code=out.error_code,
        message=out.error.message if out.error is not None else None,
        user=ctx.env.user,
        stack=ctx.stack,
        cloud=ctx.cloud,
    )
    try:
        journal.append(ctx.env.home, ctx.stack, record)
    except OSError as exc:  # losing the audit line must not turn a done operation into a failure
        ctx.out.warn(f"could not write the journal: {exc}")


def run(
    ctx: Context,
    op: str,
    args: Mapping[str, Any],
    body: Callable[[], R],
    render: Render,
    *,
    mutating: bool,
    create_stack: bool | None = None,
) -> NoReturn:
    """Run ``body`` under the CLI contract and exit with its status; never returns.

    ``create_stack``: the stack directory need not exist (deploy creates it; history and
    doctor check for themselves); by default, only the targets whose stacks live elsewhere
    (a cloud's state is in its Pulumi backend) go without one. ``mutating``: hold the stack
    lock for the whole body and append a journal record, also when the body fails.
    """
    started_at, t0 = utc_now_iso(), time.monotonic()
    ctx.out.operation = op  # named in -o json progress events
    journaled = False
    if create_stack is None:
        create_stack = not keeps_stack_dir(ctx.cloud)
    try:
        if not create_stack and not ctx.stack_dir.is_dir():
            raise stack_not_found(ctx)
        if mutating:
            with StackLock(ctx.env.home, ctx.stack, op, ctx.env.user):
                outcome = _attempt(body, mutating=True)
                # Written while still holding the lock, so the journal's order is the order in
                # which operations held the stack.
                _journal(ctx, op, args, started_at, t0, outcome)
                journaled = True
        else:
            outcome = _attempt(body, mutating=False)
    except (Exception, KeyboardInterrupt) as exc:
        outcome = _failed(exc, mutating=mutating)
    if mutating and not journaled and not isinstance(outcome.error, StackNotFound):
        # Refused (locked) or broken before the body ran: still worth a line in the audit
        # trail. A mistyped stack name is not: it would make the journal conjure up a stack.
        _journal(ctx, op, args, started_at, t0, outcome)
    raise typer.Exit(_emit(ctx, outcome, render))


def _emit(ctx: Context, outcome: _Outcome, render: Render) -> int:
    status = outcome.status
    if isinstance(outcome.error, InterruptedUnchanged) and not ctx.json:
        return int(status)  # the terminal shows ^C; a pipe reading JSON still gets its document
    try:
        if outcome.error is not None:
            if ctx.verbose and outcome.exc is not None and not isinstance(outcome.exc, ImctlError):
                ctx.env.stderr.write("".join(traceback.format_exception(outcome.exc)))
            ctx.out.error(outcome.error)
        else:
            assert outcome.doc is not None
            ctx.out.result(outcome.doc, render)
    except Exception as exc:  # a broken render or a closed pipe: still never exit 0
        if ctx.verbose:
            ctx.env.stderr.write("".join(traceback.format_exception(exc)))
        with contextlib.suppress(Exception):  # stderr may be the broken pipe itself
            ctx.env.stderr.write(f"error: could not print the result: {exc}\n")
        if status is ExitStatus.OK:
            status = ExitStatus.ERROR
    return int(status)
