"""imctl destroy: stop everything of a stack and (unless --keep-data) delete its data; a
local stack's snapshots are kept unless --delete-snapshots."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cli.hints import advice
from cli.options import Cloud, NoColor, Output, Stack, Verbose, Yes, make_context
from cli.results import Result
from cli.runner import run
from cli.targets.choose import target_for


def _render_destroy(console: Any, doc: Mapping[str, Any]) -> None:
    for line in doc.get("stopped") or []:
        console.print(f"  {line}")
    snaps = doc.get("snapshots")
    if doc["data_deleted"]:
        where = f" ({doc['cloud']})" if doc.get("cloud") not in (None, "local") else ""
        console.print(
            f"[green]✓[/green] stack [bold]{doc['stack']}[/bold]{where} destroyed, data deleted"
        )
        if snaps and snaps["count"]:
            size = f"{snaps['count']} snapshot(s), {snaps['size_bytes'] / 1e6:.1f} MB"
            if snaps["kept"]:
                console.print(
                    advice(
                        f"  kept {size} in {snaps['dir']} (`imctl snapshot list -s"
                        f" {doc['stack']}`; `imctl restore ID -s {doc['stack']}` builds the stack"
                        " again from one)"
                    ),
                    markup=False,
                )
            else:
                console.print(f"  deleted {size}", markup=False)
    else:
        console.print(
            advice(
                f"[green]✓[/green] stack [bold]{doc['stack']}[/bold] stopped; data kept in"
                f" {doc['data_dir']} (`imctl deploy -s {doc['stack']}` starts it again)"
            )
        )


def destroy(
    tctx: typer.Context,
    keep_data: Annotated[
        bool, typer.Option("--keep-data", help="Stop processes but keep the data directory.")
    ] = False,
    delete_snapshots: Annotated[
        bool,
        typer.Option(
            "--delete-snapshots",
            help="Local: delete the stack's snapshots too (kept by default, so a restore can"
            " build the stack again).",
        ),
    ] = False,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Stop every process of the stack and delete its data (asks first; --yes in scripts).

    \b
    Examples:
      imctl destroy                     # shows what goes, then asks
      imctl destroy --keep-data --yes   # stop everything, keep the data; deploy starts it again
      imctl destroy -s prod --cloud aws # a cloud stack: asks you to type its name
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> Result:
        target = target_for(ctx, keep_data=keep_data, delete_snapshots=delete_snapshots)
        return target.destroy(keep_data, delete_snapshots, ctx.operator)

    args = {"keep_data": keep_data, "delete_snapshots": delete_snapshots}
    run(ctx, "destroy", args, body, _render_destroy, mutating=True)
