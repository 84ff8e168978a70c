"""imctl logs: the im-server nodes' logs (``--follow`` keeps printing until Ctrl-C)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cli.errors import UsageError
from cli.options import CloudAccepted, NoColor, Output, Stack, Verbose, YesAccepted, make_context
from cli.results import Result
from cli.runner import run
from cli.targets.base import LogsRequest
from cli.targets.choose import target_for


def _render_logs(console: Any, doc: Mapping[str, Any]) -> None:
    for entry in doc["logs"]:
        for line in entry["lines"]:
            console.print(f"[dim]{entry['region']}/{entry['node']}[/dim] {line}", highlight=False)


def logs(
    tctx: typer.Context,
    node: Annotated[
        str | None,
        typer.Option(metavar="n1|nats|postgres", help="Only this node, or NATS, or PostgreSQL."),
    ] = None,
    region: Annotated[str | None, typer.Option(metavar="NAME", help="Only this region.")] = None,
    lines: Annotated[int, typer.Option("-n", "--lines", metavar="N", help="Lines per log.")] = 50,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new lines.")
    ] = False,
    stack: Stack = None,
    cloud: CloudAccepted = None,
    output: Output = None,
    yes: YesAccepted = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Show recent log lines of the stack's processes (local target).

    \b
    Examples:
      imctl logs                      # the last 50 lines of every node
      imctl logs --node n1 -f         # follow one node until Ctrl-C
      imctl logs --node postgres --region b -n 200
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> Result:
        target = target_for(ctx)
        req = LogsRequest(node, region, lines)
        if follow:
            if ctx.json:
                raise UsageError("--follow streams lines; it has no JSON form", "drop -o json")

            def write(line: str) -> None:
                ctx.env.stdout.write(line)
                ctx.env.stdout.flush()

            target.follow_logs(req, write)
        return target.logs(req)

    run(ctx, "logs", {"node": node, "follow": follow}, body, _render_logs, mutating=False)
