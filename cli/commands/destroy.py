"""imctl destroy: stop everything of a stack and (unless --keep-data) delete its data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cli.options import Cloud, NoColor, Output, Stack, Verbose, Yes, make_context
from cli.runner import DocResult, run
from cli.state import StackFiles


def _render_destroy(console: Any, doc: Mapping[str, Any]) -> None:
    for line in doc["stopped"]:
        console.print(f"  {line}")
    if doc["data_deleted"]:
        console.print(f"[green]✓[/green] stack [bold]{doc['stack']}[/bold] destroyed, data deleted")
    else:
        console.print(
            f"[green]✓[/green] stack [bold]{doc['stack']}[/bold] stopped; data kept in"
            f" {doc['data_dir']} (`imctl deploy -s {doc['stack']}` starts it again)"
        )


def destroy(
    tctx: typer.Context,
    keep_data: Annotated[
        bool, typer.Option("--keep-data", help="Stop processes but keep the data directory.")
    ] = False,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Stop every process of the stack and delete its data (asks first; --yes in scripts)."""
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> DocResult:
        if ctx.cloud != "local":
            from cli import engine, progress_view

            ctx.out.confirm_typed(
                ctx.stack,
                details=[f"lift every deletion protection (pulumi up, teardown=true),"
                         f" then pulumi destroy: delete every {ctx.cloud} resource of"
                         f" {ctx.stack!r}, databases and backups included (AWS keeps the"
                         f" writer's final snapshot and the key it is encrypted with)"],
            )  # fmt: skip
            try:
                doc = engine.destroy(
                    ctx.stack, home=ctx.env.home, env=ctx.env.environ,
                    progress=progress_view.progress_for(ctx),
                )  # fmt: skip
            finally:  # also on failure: a live bar left running would redraw over the error
                ctx.out.end_engine_progress()
            return DocResult({**doc, "stopped": [], "data_deleted": True})
        from cli.targets.local.target import LocalTarget

        target = LocalTarget(StackFiles(ctx.stack_dir))
        plan = target.destroy_plan()
        if keep_data:
            plan = [*plan[:-1], f"keep {ctx.stack_dir}"]
        ctx.out.confirm(f"Destroy stack {ctx.stack!r}?", details=plan)
        return DocResult(target.destroy(keep_data, ctx.out.info))

    run(
        ctx, "destroy", {"keep_data": keep_data}, body, _render_destroy, mutating=True,
        create_stack=ctx.cloud != "local",
    )  # fmt: skip
