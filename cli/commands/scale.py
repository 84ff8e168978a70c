"""imctl scale: add nodes (waits for readiness) or drain some away (no acked message lost)."""

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
    YesAccepted,
    make_context,
)
from cli.results import Result
from cli.runner import run
from cli.targets.base import ScaleRequest
from cli.targets.choose import target_for
from cli.words import human


def _render(console: Any, doc: Mapping[str, Any]) -> None:
    r = doc.get("replicas")
    if isinstance(r, Mapping) and "before" in r:
        console.print(
            f"[green]✓[/green] region {doc['region']}: {r['before']} -> {r['after']}"
            " im-server nodes"
        )
    else:  # a cloud: what each scaled thing (pods, HPA bounds, node pool) is now
        console.print(f"[green]✓[/green] region {doc['region']} ({doc.get('cloud')}) scaled")
        for what, now in doc.items():
            if isinstance(now, Mapping):
                facts = human({k: v for k, v in now.items() if not isinstance(v, Mapping)})
                console.print(f"  {what}: {facts}", markup=False)
    if doc.get("started"):
        console.print(f"  started {', '.join(doc['started'])}")
    if doc.get("drained"):
        console.print(f"  drained {', '.join(doc['drained'])} (clients reconnected elsewhere)")
    if doc.get("config_written") is False and doc.get("hint"):
        console.print(f"  [yellow]not recorded[/yellow]: {doc['hint']}")


def scale(
    tctx: typer.Context,
    replicas: Annotated[
        int | None,
        typer.Option(metavar="N", help="Desired im-server processes / pods (local: 1-32)."),
    ] = None,
    nodes: Annotated[
        int | None, typer.Option(metavar="N", help="Clouds: node group / pool size.")
    ] = None,
    min_: Annotated[
        int | None, typer.Option("--min", metavar="N", help="Clouds: HPA minimum pods.")
    ] = None,
    max_: Annotated[
        int | None, typer.Option("--max", metavar="N", help="Clouds: HPA maximum pods.")
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS", help="Clouds: give up after this many seconds (exit 9; 1800)."
        ),
    ] = None,
    outputs: OutputsFile = None,
    region: Annotated[
        str | None, typer.Option(metavar="NAME", help="Region (default: the primary).")
    ] = None,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: YesAccepted = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Change the number of im-server nodes; the new count is kept by later deploys.

    Up waits for each new node to be ready; down drains (no acked message is lost).

    \b
    Examples:
      imctl scale --replicas 4
      imctl scale --cloud aws --min 3 --max 20 --nodes 4
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> Result:
        target = target_for(ctx, outputs=outputs, nodes=nodes, min=min_, max=max_)
        req = ScaleRequest(region, replicas, nodes, min_, max_, timeout)
        return target.scale(req, ctx.operator)

    args = {"replicas": replicas, "region": region, "nodes": nodes, "min": min_, "max": max_}
    run(ctx, "scale", args, body, _render, mutating=True)
