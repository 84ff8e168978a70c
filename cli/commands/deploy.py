"""imctl deploy: create or reconcile a stack (idempotent: re-running changes only what drifted)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cli.errors import UsageError
from cli.options import Cloud, NoColor, Output, Stack, Verbose, Yes, make_context, parse_sets
from cli.runner import DocResult, run
from cli.state import StackFiles


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

    def body() -> DocResult:
        if ctx.cloud != "local":
            if sync_policy is not None or sync_degrade_after is not None:
                raise UsageError(
                    "--sync-policy and --sync-degrade-after are for the local target",
                    "managed databases in the clouds replicate on their own terms",
                )
            return DocResult(_cloud_deploy(ctx, region, standby_region, set_ or []))
        if set_:
            raise UsageError("--set is for cloud stacks", "the local target takes flags")
        from cli.targets.local.target import LocalTarget

        target = LocalTarget(StackFiles(ctx.stack_dir))
        return DocResult(
            target.deploy(
                region, replicas, port, ctx.out.info, standby_region, replication,
                sync_policy=sync_policy, sync_degrade_after=sync_degrade_after,
            )
        )  # fmt: skip

    run(ctx, "deploy", args, body, _render, mutating=True, create_stack=True)


def _render(console: Any, doc: Mapping[str, Any]) -> None:
    if doc.get("cloud", "local") == "local":
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


def _cloud_deploy(
    ctx: Any, region: str | None, standby_region: str | None, sets: list[str]
) -> dict[str, Any]:
    from cli import engine, progress_view

    cfg = engine.stack_config(region, standby_region, parse_sets(sets))
    ctx.out.confirm(
        f"Deploy stack {ctx.stack!r} to {ctx.cloud}?",
        details=[
            f"pulumi up: creates or updates billable resources on {ctx.cloud}"
            f" ({', '.join(f'{k}={v}' for k, v in cfg.items()) or 'stored config'})",
            f"preview what it creates offline: imctl plan --cloud {ctx.cloud} --region ...",
        ],
    )
    try:
        doc: dict[str, Any] = engine.deploy(
            ctx.stack, ctx.cloud, cfg, home=ctx.env.home, env=ctx.env.environ,
            progress=progress_view.progress_for(ctx),
        )  # fmt: skip
    finally:  # also on failure: a live bar left running would redraw over the error
        ctx.out.end_engine_progress()
    return doc
