"""imctl standby rebuild: make a fenced (or broken) region the standby again."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cli.options import (
    GROUP_EPILOG,
    CloudAccepted,
    NoColor,
    Output,
    Stack,
    Verbose,
    Yes,
    make_context,
)
from cli.results import Result
from cli.runner import run
from cli.targets.choose import target_for

app = typer.Typer(
    help="""Standby region operations (local target).

    \b
    Examples:
      imctl standby rebuild --region a     # the fenced old primary becomes the standby
    """,
    no_args_is_help=True,
    epilog=GROUP_EPILOG,
    rich_markup_mode=None,
)


def _render_rebuild(console: Any, doc: Mapping[str, Any]) -> None:
    console.print(
        f"[green]✓[/green] region {doc['region']} is the standby again; the stack is"
        f" {'protected' if doc['status']['protected'] else '[red]not protected yet[/red]'}"
    )
    for w in doc.get("warnings") or []:
        console.print(f"  warning: {w}", markup=False)


@app.command("rebuild")
def rebuild(
    tctx: typer.Context,
    region: Annotated[
        str, typer.Option(metavar="NAME", help="The region to rebuild as a standby.")
    ],
    stack: Stack = None,
    cloud: CloudAccepted = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Wipe the region's database and copy the primary into it (pg_basebackup), then stream.

    Asks first (--yes in scripts).

    \b
    Examples:
      imctl standby rebuild --region a          # after `failover --force` fenced region a
      imctl status                              # then: a is the standby, streaming
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> Result:
        return target_for(ctx).standby_rebuild(region, ctx.operator)

    run(ctx, "standby-rebuild", {"region": region}, body, _render_rebuild, mutating=True)
