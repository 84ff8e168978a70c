"""imctl plan: what a cloud deploy would create, from the Pulumi program run under mocks.

Offline and without credentials: no cloud is contacted, so this shows what imctl asks for, not
what a cloud would accept. Provider SDKs load here only, never for `imctl --help`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cli.options import (
    Cloud,
    NoColor,
    Output,
    Stack,
    Verbose,
    YesAccepted,
    make_context,
    parse_sets,
)
from cli.results import Result
from cli.runner import run
from cli.targets.base import DeployRequest
from cli.targets.choose import target_for


def _render_plan(console: Any, doc: Mapping[str, Any]) -> None:
    from rich.tree import Tree

    s = doc["summary"]
    root = Tree(
        f"[bold]{doc['cloud']}[/bold] plan: {s['total']} resources "
        f"(primary {doc['primary_region']}, standby {doc.get('standby_region') or 'none'})"
    )
    by_region: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for r in doc["resources"]:
        if r.get("kind") == "component":
            continue
        region = r.get("region") or "global"
        by_region.setdefault(region, {}).setdefault(r.get("component") or "-", []).append(r)
    for region, comps in sorted(by_region.items()):
        count = sum(len(v) for v in comps.values())
        branch = root.add(f"[bold]{region}[/bold] ({count})")
        for comp, items in sorted(comps.items()):
            leaf = branch.add(f"{comp} ({len(items)})")
            for r in items:
                leaf.add(f"[dim]{r['type']}[/dim] {r['name']}")
    console.print(root)
    from rich.markup import escape

    for w in doc.get("warnings") or []:
        console.print(f"[yellow]warning[/yellow] {escape(w['key'])}: {escape(w['message'])}")
        if w.get("hint"):
            console.print(f"    [cyan]fix:[/cyan] {escape(w['hint'])}")
    console.print(
        "[yellow]No cloud was contacted:[/yellow] this is the Pulumi program run under mocks. "
        "It shows what a deploy asks for, not what the cloud will accept."
    )


def plan(
    tctx: typer.Context,
    region: Annotated[str, typer.Option(metavar="NAME", help="Primary region, e.g. us-east-1.")],
    standby_region: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Standby region (cross-region replica, DNS failover)."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=VALUE", help="Override a config key (repeatable)."),
    ] = None,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: YesAccepted = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Show the resources a cloud deploy would create (offline, under Pulumi mocks).

    \b
    Examples:
      imctl plan --cloud aws --region us-east-1
      imctl plan --cloud gcp --region europe-west1 --standby-region europe-west4
      imctl plan --cloud aws --region us-east-1 --set hpaMax=20 -o json
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)
    overrides = parse_sets(set_ or [])

    def body() -> Result:
        req = DeployRequest(region, standby_region, sets=overrides)
        return target_for(ctx).plan(req, ctx.operator)

    args = {"region": region, "standby_region": standby_region, "set": overrides}
    run(ctx, "plan", args, body, _render_plan, mutating=False, create_stack=True)
