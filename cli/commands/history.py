"""imctl history: who did what to a stack, when, with which arguments, and how it ended."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from cli import journal
from cli.errors import ExitStatus
from cli.options import (
    CloudAccepted,
    NoColor,
    NoHeaders,
    Output,
    Stack,
    Verbose,
    YesAccepted,
    make_context,
)
from cli.runner import run, stack_not_found
from cli.tables import Cell, print_table
from cli.words import human

DEFAULT_LIMIT = 20


@dataclass
class HistoryResult:
    stack: str
    operations: list[journal.Record]
    exit_status: ExitStatus = ExitStatus.OK

    def to_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "operations": [r.to_json() for r in self.operations]}


def _args_text(args: Mapping[str, Any]) -> str:
    """The arguments in words: a flag that was set by its name alone ("force"), one left at
    its default (None, False) not at all, a list comma-separated."""
    words = []
    for k, v in args.items():
        if v is None or v is False:
            continue
        words.append(k if v is True else f"{k}={human(v)}")
    return " ".join(words)


def _render_history(console: Any, doc: Mapping[str, Any], *, no_headers: bool = False) -> None:
    from rich.markup import escape

    ops = doc["operations"]
    if not ops:
        console.print(f"no operations recorded for stack [bold]{escape(doc['stack'])}[/bold]")
        return
    styles = {"ok": "green", "error": "red", "interrupted": "yellow"}
    rows: list[list[str | Cell]] = []
    for op in ops:
        detail = _args_text(op["args"] or {})
        if op["message"]:
            # The headline; -o json carries the whole message.
            first = op["message"].strip().splitlines()[0]
            detail = f"{detail}\n{first}" if detail else first
        rows.append(
            [
                str(op["started_at"] or "-").replace("T", " ").removesuffix("Z")[:19],
                str(op["op"]),
                Cell(str(op["result"]), styles.get(op["result"], "")),
                str(op["exit_code"]),
                f"{op['duration_s']:.1f}s" if isinstance(op["duration_s"], int | float) else "-",
                human(op["user"]),
                detail,
            ]
        )
    print_table(
        console,
        ["started (UTC)", "op", "result", "exit", "took", "user", "args / error"],
        rows,
        title=f"stack {doc['stack']}: last {len(ops)} operations (newest last)",
        no_headers=no_headers,
    )


def history(
    tctx: typer.Context,
    limit: Annotated[
        int,
        typer.Option(
            "--limit", "-n", min=0, metavar="N", help="Show the last N operations (0: all)."
        ),
    ] = DEFAULT_LIMIT,
    no_headers: NoHeaders = False,
    stack: Stack = None,
    cloud: CloudAccepted = None,
    output: Output = None,
    yes: YesAccepted = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Show the stack's operations journal: who, when, args, result, duration.

    Also works after `imctl destroy`: the journal is kept outside the stack directory.

    \b
    Examples:
      imctl history                 # the last 20 operations of stack dev
      imctl history -s prod -n 0 -o json
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> HistoryResult:
        home = ctx.env.home
        if not journal.exists(home, ctx.stack) and not ctx.stack_dir.is_dir():
            raise stack_not_found(ctx)
        return HistoryResult(ctx.stack, journal.read(home, ctx.stack, limit=limit or None))

    # create_stack=True: a destroyed stack has a journal but no directory; body checks itself.
    render = functools.partial(_render_history, no_headers=no_headers)
    run(ctx, "history", {"limit": limit}, body, render, mutating=False, create_stack=True)
