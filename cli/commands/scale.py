"""imctl scale: add nodes (waits for readiness) or drain some away (no acked message lost)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cli.errors import ExitStatus, UsageError
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
from cli.runner import DocResult, run
from cli.state import StackFiles


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
    replicas: Annotated[
        int | None, typer.Option(help="Desired im-server processes / pods (local: 1-32).")
    ] = None,
    nodes: Annotated[int | None, typer.Option(help="Clouds: node group / pool size.")] = None,
    min_: Annotated[int | None, typer.Option("--min", help="Clouds: HPA minimum pods.")] = None,
    max_: Annotated[int | None, typer.Option("--max", help="Clouds: HPA maximum pods.")] = None,
    timeout: Annotated[float, typer.Option(help="Clouds: give up after (exit 9).")] = 1800,
    outputs: OutputsFile = None,
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

    def body() -> DocResult:
        if ctx.cloud != "local":
            from cli.targets.cloud.factory import cloud_ops

            if all(v is None for v in (replicas, nodes, min_, max_)):
                raise UsageError("give --replicas, --nodes, --min or --max")
            doc = cloud_ops(ctx, outputs).scale(
                region=region, nodes=nodes, replicas=replicas, min_replicas=min_,
                max_replicas=max_, progress=ctx.out.info, timeout=timeout,
            )  # fmt: skip
            doc = {"cloud": ctx.cloud, **doc}
            if outputs is None and not ctx.env.environ.get("IMCTL_OUTPUTS_FILE"):
                status = write_back(ctx, doc, nodes, min_, max_)
                return DocResult(doc, status)
            doc["config_written"] = False  # not an imctl-managed stack: nothing to write to
            return DocResult(doc)
        if replicas is None:
            raise UsageError("--replicas is required", "e.g. imctl scale --replicas 3")
        if nodes is not None or min_ is not None or max_ is not None:
            raise UsageError("--nodes/--min/--max are for cloud stacks")
        from cli.targets.local.target import LocalTarget

        target = LocalTarget(StackFiles(ctx.stack_dir))
        return DocResult(target.scale(replicas, region, ctx.out.info))

    args = {"replicas": replicas, "region": region, "nodes": nodes, "min": min_, "max": max_}
    run(ctx, "scale", args, body, _render, mutating=True, create_stack=ctx.cloud != "local")


def _render(console: Any, doc: Mapping[str, Any]) -> None:
    if doc.get("cloud", "local") != "local":
        from cli.targets.cloud.factory import render_cloud

        render_cloud(console, doc)
    else:
        _render_scale(console, doc)


def write_back(
    ctx: Any, doc: dict[str, Any], nodes: int | None, min_: int | None, max_: int | None
) -> ExitStatus:
    """Record the new sizes in the stack's config, so the next deploy keeps them."""
    from cli import engine
    from cli.errors import ImctlError

    values: dict[str, str] = {}
    if nodes is not None:
        values["nodeDesired"] = str(nodes)
        bounds = (doc.get("nodegroup") or {}).get("after") or {}
        if "minSize" in bounds:
            values["nodeMin"] = str(bounds["minSize"])
        if "maxSize" in bounds:
            values["nodeMax"] = str(bounds["maxSize"])
    if min_ is not None:
        values["hpaMin"] = str(min_)
    if max_ is not None:
        values["hpaMax"] = str(max_)
    if not values:  # replicas alone: the HPA owns the count between its bounds
        doc["config_written"] = False
        return ExitStatus.OK
    try:
        changed = engine.set_config(
            ctx.stack, ctx.cloud, values, home=ctx.env.home, env=ctx.env.environ
        )
    except ImctlError as exc:
        # The cloud was scaled; only the record failed. Say so, and how to finish.
        doc["config_written"] = False
        doc["config_error"] = exc.message
        doc["hint"] = "record it: imctl deploy --set " + " --set ".join(
            f"{k}={v}" for k, v in values.items()
        )
        return ExitStatus.PARTIAL
    doc["config_written"] = changed
    return ExitStatus.OK
