"""imctl deploy: create or reconcile a stack (idempotent: re-running changes only what drifted)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from cli.errors import ExitStatus, UsageError
from cli.options import Cloud, NoColor, Output, Stack, Verbose, Yes, make_context
from cli.runner import run
from cli.state import StackFiles


@dataclass
class DeployResult:
    doc: dict[str, Any]
    exit_status: ExitStatus = ExitStatus.OK

    def to_json(self) -> dict[str, Any]:
        return self.doc


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
    }

    def body() -> DeployResult:
        if ctx.cloud != "local":
            raise UsageError(
                f"deploy --cloud {ctx.cloud} is not available in this build",
                "use --cloud local; `imctl plan --cloud ...` shows what a cloud deploy creates",
            )
        from cli.targets.local.target import LocalTarget

        target = LocalTarget(StackFiles(ctx.stack_dir))
        return DeployResult(
            target.deploy(region, replicas, port, ctx.out.info, standby_region, replication)
        )

    run(ctx, "deploy", args, body, _render_deploy, mutating=True, create_stack=True)
