"""imctl history: who did what to a stack, when, with which arguments, and how it ended."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from cli import journal
from cli.errors import ExitStatus
from cli.options import CloudAccepted, NoColor, Output, Stack, Verbose, YesAccepted, make_context
from cli.runner import run, stack_not_found

DEFAULT_LIMIT = 20


@dataclass
class HistoryResult:
    stack: str
    operations: list[journal.Record]
    exit_status: ExitStatus = ExitStatus.OK

    def to_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "operations": [r.to_json() for r in self.operations]}


def _args_text(args: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in args.items() if v is not None and v is not False)


def _render_history(console: Any, doc: Mapping[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    ops = doc["operations"]
    if not ops:
        console.print(f"no operations recorded for stack [bold]{escape(doc['stack'])}[/bold]")
        return
    table = Table(title=f"stack {escape(doc['stack'])}: last {len(ops)} operations (newest last)")
    for column in ("started (UTC)", "op", "result", "exit", "took", "user", "args / error"):
        table.add_column(column, overflow="fold")
    styles = {"ok": "green", "error": "red", "interrupted": "yellow"}
    for op in ops:
        detail = _args_text(op["args"] or {})
        if op["message"]:
            # The table shows the headline; -o json carries the whole message.
            first = op["message"].strip().splitlines()[0]
            first = first if len(first) <= 100 else first[:99] + "…"
            detail = f"{detail}\n{first}" if detail else first
        style = styles.get(op["result"], "")
        table.add_row(
            str(op["started_at"] or "?").replace("T", " ").removesuffix("Z")[:19],
            escape(str(op["op"])),
            f"[{style}]{escape(str(op['result']))}[/{style}]" if style else str(op["result"]),
            str(op["exit_code"]),
            f"{op['duration_s']:.1f}s" if isinstance(op["duration_s"], int | float) else "?",
            escape(str(op["user"])),
            escape(detail),
        )
    console.print(table)


def history(
    tctx: typer.Context,
    limit: Annotated[
        int,
        typer.Option(
            "--limit", "-n", min=0, metavar="N", help="Show the last N operations (0: all)."
        ),
    ] = DEFAULT_LIMIT,
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
    run(ctx, "history", {"limit": limit}, body, _render_history, mutating=False, create_stack=True)
