"""imctl status: what runs, whether it is healthy (``--check`` turns unhealthy into exit 10)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cli.hints import advice
from cli.options import (
    Cloud,
    NoColor,
    NoHeaders,
    Output,
    OutputsFile,
    Stack,
    Verbose,
    YesAccepted,
    make_context,
)
from cli.results import Result
from cli.runner import run
from cli.tables import Cell, Column, print_table
from cli.targets.choose import target_for
from cli.words import human


def render_problems(console: Any, problems: list[Mapping[str, Any]]) -> None:
    """Each problem with the command to run next (shared by status and deploy)."""
    for p in problems:
        console.print(f"[red]✗[/red] {p['region']}: {p['message']} [dim]({p['code']})[/dim]")
        if p.get("next_command"):
            console.print(f"    next: {p['next_command']}", markup=False)


def _render(console: Any, doc: Mapping[str, Any], *, no_headers: bool = False) -> None:
    mark = "[green]healthy[/green]" if doc.get("healthy") else "[red]UNHEALTHY[/red]"
    console.print(f"stack [bold]{doc['stack']}[/bold] ({doc['cloud']})  {mark}")
    console.print(f"endpoint {doc.get('endpoint') or '-'}")
    render_problems(console, doc.get("problems", []))
    for w in doc.get("warnings") or []:
        console.print(f"[yellow]warning[/yellow] {w}", markup=False)
    regions = doc.get("regions") or []
    if isinstance(regions, Mapping):  # a cloud: regions by name
        _render_cloud_regions(console, doc)
    else:
        _render_local_regions(console, doc["stack"], regions, no_headers)
    _render_backup(console, doc.get("backup"))


def _render_backup(console: Any, backup: Any) -> None:
    if not isinstance(backup, Mapping):
        return
    if backup.get("archiving") == "off":
        console.print("\nbackup  continuous backup off (--archiving off): snapshots only")
        return
    window = backup.get("window") or {}
    last = "now" if window.get("up_to_now") else human(window.get("last"))
    arch = backup.get("archiver") or {}
    state = "streaming" if arch.get("streaming") else "STOPPED"
    console.print(
        f"\nbackup  archiving {backup.get('archiving')} ({state}), recoverable"
        f" {human(window.get('first'))} .. {last}   (imctl backup status)",
        markup=False,
    )


def _lag(bytes_: Any, seconds: Any) -> str:
    """Bytes behind is the lag; seconds only while there are bytes to replay (an idle standby
    is 0 bytes behind however long ago the last commit was)."""
    if bytes_ is None:
        return "unknown (the primary does not answer)"
    if bytes_ and seconds:
        return f"{bytes_} bytes / {seconds:.1f}s"
    return f"{bytes_} bytes"


def _render_local_regions(
    console: Any, stack: str, regions: list[Mapping[str, Any]], no_headers: bool
) -> None:
    for r in regions:
        db, bus = r["database"], r["bus"]
        role = f" ({db['role']})" if db.get("role") else ""
        console.print(
            f"\nregion [bold]{r['name']}[/bold] ({r['role']}) port {r['port']}  "
            f"PostgreSQL {'up' if db['running'] else '[red]down[/red]'}{role}  "
            f"NATS {'up' if bus['running'] else '[red]down[/red]'}"
        )
        rep = r.get("replication") or {}
        for sb in rep.get("standbys", []):
            console.print(
                f"  replicating to {sb['standby']}: {sb['state']} ({sb['sync_state']}),"
                f" lag {_lag(sb['lag_bytes'], sb.get('lag_seconds'))}"
            )
        if r["role"] == "standby":
            if rep.get("streaming"):
                console.print(
                    f"  streaming from {human(rep.get('upstream'))},"
                    f" lag {_lag(rep.get('lag_bytes'), rep.get('lag_seconds'))}"
                )
            else:
                console.print("  [red]not streaming[/red]: the stack is not protected")
        if r["role"] == "fenced":
            console.print(
                advice(f"  fenced: imctl standby rebuild --region {r['name']} -s {stack}")
            )
            _render_orphans(console, r)
            continue
        rows = [
            [
                n["id"],
                human(n["pid"]),
                Cell("yes") if n["alive"] else Cell("no", "red"),
                Cell("yes") if n["ready"] else Cell("no", "red"),
                human(n["connections"]),
            ]
            for n in r["nodes"]
        ]
        if rows:
            print_table(
                console,
                ["node", "pid", "alive", "ready", Column("connections", "right")],
                rows,
                no_headers=no_headers,
            )
        _render_orphans(console, r)


def _render_orphans(console: Any, region: Mapping[str, Any]) -> None:
    for f in region.get("orphans") or []:
        console.print(
            advice(
                f"  [yellow]running without a pid file[/yellow]: {f['kind']} {f['name']} (pid"
                f" {f['pid']}; {f['proof']}); `imctl deploy` adopts or stops it, `imctl destroy`"
                " stops it"
            )
        )


def status(
    tctx: typer.Context,
    check: Annotated[bool, typer.Option("--check", help="Exit 10 when unhealthy.")] = False,
    no_headers: NoHeaders = False,
    outputs: OutputsFile = None,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: YesAccepted = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Show nodes, database and bus per region, with health.

    Each problem comes with the command to run next.

    \b
    Examples:
      imctl status
      imctl status --check -o json || exit $?    # exit 10 when unhealthy
      imctl status --cloud aws -s prod
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> Result:
        return target_for(ctx, outputs=outputs).status(check)

    render = functools.partial(_render, no_headers=no_headers)
    run(ctx, "status", {"check": check}, body, render, mutating=False)


def _render_cloud_regions(console: Any, doc: Mapping[str, Any]) -> None:
    for name, r in doc["regions"].items():
        db = r.get("database") or {}
        work = r.get("workload") or {}
        pods = (
            f"{human(work.get('ready'))}/{human(work.get('desired'))} pods ready"
            if "desired" in work
            else f"pods: {work.get('error', 'unknown')}"
        )
        console.print(
            f"\nregion [bold]{name}[/bold] ({human(r.get('role'))})  database"
            f" {db.get('id') or '-'}: {db.get('state') or 'unknown'}  {pods}"
            f"  /readyz {human(r.get('readyz'))}",
            highlight=False,
        )
        if r.get("endpoint"):
            console.print(f"  endpoint {r['endpoint']}", markup=False)
    lag = doc.get("replica_lag_seconds")
    if lag is not None:
        console.print(f"standby lag {lag:g}s")
