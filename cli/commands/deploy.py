"""imctl deploy: create or reconcile a stack (idempotent: re-running changes only what drifted)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cli.options import Cloud, NoColor, Output, Stack, Verbose, Yes, make_context, parse_sets
from cli.results import Result
from cli.runner import run
from cli.targets.base import DeployRequest
from cli.targets.choose import target_for


def _render_deploy(console: Any, doc: Mapping[str, Any]) -> None:
    if doc["changed"]:
        verb = "deployed" if doc["created"] else "reconciled"
        console.print(f"[green]✓[/green] stack [bold]{doc['stack']}[/bold] {verb}")
    else:
        console.print(f"[green]✓[/green] stack [bold]{doc['stack']}[/bold]: no changes")
    for r in doc["regions"]:
        ready = sum(1 for n in r["nodes"] if n["ready"])
        nodes = (
            f"{ready}/{r['replicas']} im-server nodes ready"
            if r["role"] == "primary"
            else "no nodes until promoted"
        )
        console.print(
            f"  region {r['name']} ({r['role']}): {nodes},"
            f" PostgreSQL :{r['database']['port']}, NATS :{r['bus']['port']}"
        )
    from cli.commands.status import render_problems

    render_problems(console, doc.get("problems", []))
    console.print(f"\nendpoint  [bold]{doc['endpoint']}[/bold]")
    console.print("connect   imctl token --user alice   # then hello with that token")


def deploy(
    tctx: typer.Context,
    region: Annotated[str | None, typer.Option(help="Region name (local: a label).")] = None,
    replicas: Annotated[
        int | None, typer.Option(help="im-server processes (default 2; kept on re-deploy).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Endpoint port (default 8700).")] = None,
    standby_region: Annotated[
        str | None,
        typer.Option(help="Also run a standby region (streaming replica), for failover."),
    ] = None,
    replication: Annotated[
        str | None, typer.Option(help="sync (default: no acked loss) or async.")
    ] = None,
    sync_policy: Annotated[
        str | None,
        typer.Option(
            "--sync-policy",
            metavar="wait|degrade",
            help="When the sync standby is lost: wait (writes stop; default) or degrade"
            " (async after --sync-degrade-after seconds, until it is back).",
        ),
    ] = None,
    sync_degrade_after: Annotated[
        float | None,
        typer.Option("--sync-degrade-after", help="Seconds before degrade acts (default 5)."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Clouds: override a stack config key, key=value."),
    ] = None,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Deploy the IM server, or bring an existing stack back to what it should be."""
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)
    args = {
        "region": region,
        "replicas": replicas,
        "port": port,
        "standby_region": standby_region,
        "replication": replication,
        "sync_policy": sync_policy,
        "sync_degrade_after": sync_degrade_after,
    }

    def body() -> Result:
        target = target_for(
            ctx, port=port, replication=replication, sync_policy=sync_policy,
            sync_degrade_after=sync_degrade_after, set=set_,
        )  # fmt: skip
        req = DeployRequest(
            region, standby_region, replicas, port, replication, sync_policy, sync_degrade_after,
            parse_sets(set_ or []),
        )  # fmt: skip
        return target.deploy(req, ctx.operator)

    run(ctx, "deploy", args, body, _render, mutating=True, create_stack=True)


def _render(console: Any, doc: Mapping[str, Any]) -> None:
    if "regions" in doc:  # the local target: each region's processes
        _render_deploy(console, doc)
        return
    res = doc.get("resources", {})
    console.print(
        f"[green]✓[/green] {doc['cloud']} stack [bold]{doc['stack']}[/bold]: {doc['result']},"
        f" {res.get('done', 0)}/{res.get('total', 0)} resources in"
        f" {doc.get('duration_seconds', 0):.0f}s; changes {doc.get('changes', {})}"
    )
    outputs = doc.get("outputs", {})
    if outputs.get("endpoint"):  # the stack says how clients connect (wss:// since issue 13)
        console.print(f"endpoint  {outputs['endpoint']}")
    elif outputs.get("dns_name"):
        console.print(f"endpoint  ws://{outputs['dns_name']}/ws")
