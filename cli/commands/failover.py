"""imctl failover: move the primary role to the standby region.

Planned (default): the primary is healthy; its nodes drain, the standby replays everything,
then it is promoted and the old primary rejoins as the standby. No acked message is lost.
Forced (--force): the primary is lost; it is fenced first, then the standby is promoted, and
the data-loss bound is reported. Both show the plan and the bound and ask before acting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cli.options import (
    Cloud,
    NoColor,
    Output,
    OutputsFile,
    Stack,
    Verbose,
    Yes,
    make_context,
)
from cli.results import Result
from cli.runner import run
from cli.targets.base import FailoverRequest, describe_bound
from cli.targets.choose import target_for


def _render(console: Any, doc: Mapping[str, Any]) -> None:
    from rich.markup import escape

    where = f"{doc['from_region']} -> {doc['to_region']}"
    if doc.get("dry_run"):
        console.print(f"[bold]plan[/bold] ({doc['mode']}, {doc['cloud']}): {where}")
        for s in doc["steps"]:
            console.print(f"  • {s}", markup=False)
        console.print(f"data-loss bound: {describe_bound(doc['data_loss_bound'])}", markup=False)
        return
    rto = doc.get("rto_seconds")
    promoted = doc.get("promote_seconds")
    took = f" in {rto:.2f}s" if rto is not None else ""
    if promoted is not None:
        took += f" (promoted after {promoted:.2f}s)"
    console.print(f"[green]✓[/green] {doc['mode']} failover {where}{took}")
    console.print(f"  data-loss bound: {describe_bound(doc['data_loss_bound'])}", markup=False)
    if doc.get("rejoined"):
        console.print(f"  {doc['from_region']}: rejoined as standby")
    elif doc.get("fenced"):
        console.print(f"  {doc['from_region']} is fenced")
    else:
        console.print(f"  [yellow]{doc['from_region']} could not be fenced[/yellow]")
    console.print(f"  endpoint {doc.get('endpoint') or '-'} now served by {doc['to_region']}")
    for w in doc.get("warnings") or []:
        console.print(f"  [yellow]warning[/yellow] {escape(w)}")
    for step in doc.get("next_steps") or []:
        console.print(f"  next: {step}", markup=False)


def failover(
    tctx: typer.Context,
    to_region: Annotated[str, typer.Option(metavar="NAME", help="The standby region to promote.")],
    force: Annotated[
        bool, typer.Option(help="The primary is lost: fence it and promote without it.")
    ] = False,
    max_lag: Annotated[
        int | None,
        typer.Option(
            metavar="BYTES",
            help="Local, planned: refuse when the standby is more bytes behind [default: 16 MiB].",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the plan and its bound only.")] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Give up (exit 9) after this many seconds (local 120, clouds 1800).",
        ),
    ] = None,
    outputs: OutputsFile = None,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Promote the standby region (planned switchover, or --force after losing the primary).

    Shows the plan and its data-loss bound, then asks (--yes in scripts).

    \b
    Examples:
      imctl failover --to-region b --dry-run   # the plan and its data-loss bound only
      imctl failover --to-region b             # planned: no acked message lost
      imctl failover --to-region b --force     # the primary is lost: fence it, promote b
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)
    args = {"to_region": to_region, "force": force, "max_lag": max_lag, "dry_run": dry_run}

    def body() -> Result:
        target = target_for(ctx, outputs=outputs, max_lag=max_lag)
        req = FailoverRequest(to_region, force, max_lag, timeout)
        if dry_run:
            return target.failover_plan(req)
        return target.failover(req, ctx.operator)

    run(ctx, "failover", args, body, _render, mutating=True)
