"""imctl status: what runs, whether it is healthy (``--check`` turns unhealthy into exit 10)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from cli.errors import ExitStatus
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
from cli.runner import run
from cli.state import StackFiles


@dataclass
class StatusResult:
    doc: dict[str, Any]
    check: bool

    def to_json(self) -> dict[str, Any]:
        return self.doc

    @property
    def exit_status(self) -> ExitStatus:
        if self.check and not self.doc.get("healthy"):
            return ExitStatus.PRECONDITION
        return ExitStatus.OK


def render_problems(console: Any, problems: list[Mapping[str, Any]]) -> None:
    """Each problem with the command to run next (shared by status and deploy)."""
    for p in problems:
        console.print(f"[red]✗[/red] {p['region']}: {p['message']} [dim]({p['code']})[/dim]")
        if p.get("next_command"):
            console.print(f"    next: {p['next_command']}", markup=False)


def _render_status(console: Any, doc: Mapping[str, Any]) -> None:
    from rich.table import Table

    mark = "[green]healthy[/green]" if doc["healthy"] else "[red]UNHEALTHY[/red]"
    console.print(f"stack [bold]{doc['stack']}[/bold] ({doc['cloud']})  {mark}")
    console.print(f"endpoint {doc['endpoint']}")
    render_problems(console, doc.get("problems", []))
    for r in doc["regions"]:
        db, bus = r["database"], r["bus"]
        console.print(
            f"\nregion [bold]{r['name']}[/bold] ({r['role']}) port {r['port']}  "
            f"PostgreSQL {'up' if db['running'] else '[red]down[/red]'} ({db.get('role')})  "
            f"NATS {'up' if bus['running'] else '[red]down[/red]'}"
        )
        rep = r.get("replication") or {}
        for sb in rep.get("standbys", []):
            console.print(
                f"  replicating to {sb['standby']}: {sb['state']} ({sb['sync_state']}),"
                f" lag {sb['lag_bytes']} bytes"
            )
        if r["role"] == "standby":
            if rep.get("streaming"):
                console.print(
                    f"  streaming from {rep.get('upstream')}, lag {rep.get('lag_bytes')} bytes"
                    f" / {rep.get('lag_seconds') or 0:.1f}s"
                )
            else:
                console.print("  [red]not streaming[/red]: the stack is not protected")
        if r["role"] == "fenced":
            console.print(f"  fenced: imctl standby rebuild --region {r['name']}")
            _render_orphans(console, r)
            continue
        t = Table("node", "pid", "alive", "ready", "connections")
        for n in r["nodes"]:
            t.add_row(
                n["id"],
                str(n["pid"] or "-"),
                "yes" if n["alive"] else "[red]no[/red]",
                "yes" if n["ready"] else "[red]no[/red]",
                str(n["connections"] if n["connections"] is not None else "-"),
            )
        console.print(t)
        _render_orphans(console, r)


def _render_orphans(console: Any, region: Mapping[str, Any]) -> None:
    for f in region.get("orphans") or []:
        console.print(
            f"  [yellow]running without a pid file[/yellow]: {f['kind']} {f['name']} (pid"
            f" {f['pid']}; {f['proof']}); `imctl deploy` adopts or stops it, `imctl destroy`"
            " stops it"
        )


def status(
    tctx: typer.Context,
    check: Annotated[bool, typer.Option("--check", help="Exit 10 when unhealthy.")] = False,
    outputs: OutputsFile = None,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Show nodes, database and bus per region, with health."""
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> StatusResult:
        if ctx.cloud != "local":
            from cli.targets.cloud.factory import load_outputs, ops_for

            outs = load_outputs(ctx, outputs)
            doc = {"cloud": ctx.cloud, "stack": ctx.stack, **ops_for(ctx, outs).status()}
            # Operations recorded in the config that the deployed stack does not reflect yet.
            notes = [str(n) for k in ("roles_note", "restore_note") if (n := outs.extra.get(k))]
            if notes:
                doc["warnings"] = [*notes, *doc.get("warnings", [])]
            return StatusResult(doc, check)
        from cli.targets.local.target import LocalTarget

        return StatusResult(LocalTarget(StackFiles(ctx.stack_dir)).status(), check)

    run(ctx, "status", {"check": check}, body, _render, mutating=False,
        create_stack=ctx.cloud != "local")  # fmt: skip


def _render(console: Any, doc: Mapping[str, Any]) -> None:
    if doc.get("cloud", "local") != "local":
        from cli.targets.cloud.factory import render_cloud

        render_cloud(console, doc)
    else:
        _render_status(console, doc)
