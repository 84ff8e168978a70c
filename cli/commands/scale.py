"""imctl scale: add nodes (waits for readiness) or drain some away (no acked message lost)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from cli.errors import ExitStatus
from cli.options import Cloud, NoColor, Output, Stack, Verbose, Yes, make_context
from cli.runner import run
from cli.state import StackFiles


@dataclass
class ScaleResult:
    doc: dict[str, Any]
    exit_status: ExitStatus = ExitStatus.OK

    def to_json(self) -> dict[str, Any]:
        return self.doc


def _render_scale(console: Any, doc: Mapping[str, Any]) -> None:
    r = doc["replicas"]
    console.print(
        f"[green]✓[/green] region {doc['region']}: {r['before']} -> {r['after']} im-server nodes"
    )
    if doc["started"]:
        console.print(f"  started {', '.join(doc['started'])}")
    if doc["drained"]:
        console.print(f"  drained {', '.join(doc['drained'])} (clients reconnected elsewhere)")


def scale(
    tctx: typer.Context,
    replicas: Annotated[int, typer.Option(help="Desired im-server processes (1-32).")],
    region: Annotated[str | None, typer.Option(help="Region (default: the primary).")] = None,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Change the number of im-server nodes; the new count is kept by later deploys."""
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> ScaleResult:
        from cli.targets.local.target import LocalTarget

        target = LocalTarget(StackFiles(ctx.stack_dir))
        return ScaleResult(target.scale(replicas, region, ctx.out.info))

    run(ctx, "scale", {"replicas": replicas, "region": region}, body, _render_scale, mutating=True)
