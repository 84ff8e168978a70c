"""imctl drill failover: a failover under a built-in client load, measured."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cli.options import (
    GROUP_EPILOG,
    CloudAccepted,
    NoColor,
    NoHeaders,
    Output,
    Stack,
    Verbose,
    Yes,
    make_context,
)
from cli.results import Result
from cli.runner import run
from cli.tables import Column, print_table
from cli.targets.choose import target_for

app = typer.Typer(
    help="""Rehearse operations under load and measure them (local target).

    \b
    Examples:
      imctl drill failover              # planned switchover while clients stream
      imctl drill failover --force      # kill -9 the primary first
      imctl drill clean --yes           # remove what drills wrote
    """,
    no_args_is_help=True,
    epilog=GROUP_EPILOG,
    rich_markup_mode=None,
)


def _render_drill(console: Any, doc: Mapping[str, Any], *, no_headers: bool = False) -> None:
    rto = doc["rto_seconds"]
    rows = [
        ["RTO (failover start -> first ack from the new primary)", f"{rto}s" if rto else "-"],
        ["failover command", f"{doc['failover_seconds']}s"],
        ["acked messages", str(doc["acked"])],
        ["acked but missing afterwards", str(doc["acked_missing"])],
        ["duplicates", str(doc["duplicates"])],
        ["conversations with seq gaps", str(doc["seq_gaps"])],
    ]
    print_table(
        console,
        ["measure", Column("value", "right")],
        rows,
        title=f"{doc['mode']} failover drill {doc['from_region']} -> {doc['to_region']}",
        no_headers=no_headers,
    )


@app.command("failover")
def failover(
    tctx: typer.Context,
    to_region: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Standby to promote (default: the only standby)."),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Kill -9 the primary region first, then fail over with --force.")
    ] = False,
    pairs: Annotated[int, typer.Option(metavar="N", help="Sender/receiver client pairs.")] = 4,
    no_headers: NoHeaders = False,
    stack: Stack = None,
    cloud: CloudAccepted = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Fail over while clients stream; report RTO, lost and duplicated messages.

    \b
    Examples:
      imctl drill failover                      # planned, to the only standby
      imctl drill failover --to-region b --force --yes
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> Result:
        return target_for(ctx).drill_failover(to_region, force, pairs, ctx.operator)

    render = functools.partial(_render_drill, no_headers=no_headers)
    run(ctx, "drill-failover", {"to_region": to_region, "force": force, "pairs": pairs}, body,
        render, mutating=True)  # fmt: skip


def _render_clean(console: Any, doc: Mapping[str, Any]) -> None:
    console.print(
        f"removed {doc['conversations']} drill conversation(s) with {doc['messages']}"
        f" message(s) from stack {doc['stack']}"
    )


@app.command("clean")
def clean(
    tctx: typer.Context,
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run", metavar="RUN_ID", help="Only this drill run (the `run` a drill reported)."
        ),
    ] = None,
    stack: Stack = None,
    cloud: CloudAccepted = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Delete what drills wrote: conversations between drill users, and nothing else.

    \b
    Examples:
      imctl drill clean                       # every drill run; asks first
      imctl drill clean --run 1a2b3c4d --yes  # one run, no question
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> Result:
        return target_for(ctx).drill_clean(run_id, ctx.operator)

    run(ctx, "drill-clean", {"run": run_id}, body, _render_clean, mutating=True)
