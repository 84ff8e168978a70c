"""imctl backup: the continuous backup (base backups + WAL archive) and its recoverable window.

``status`` only reads (``--check``: exit 10 when archiving is stopped, behind or has a hole, or
there is no base backup); ``base`` takes a base backup now and is journalled like every change.
Restoring from it is ``imctl restore --to-time``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cli.commands.snapshot import Timeout, megabytes
from cli.commands.status import render_problems
from cli.hints import advice
from cli.options import (
    GROUP_EPILOG,
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
from cli.targets.choose import target_for
from cli.words import human

app = typer.Typer(
    name="backup",
    help="""Continuous backup: the window `imctl restore --to-time` can reach, base backups.

    \b
    Examples:
      imctl backup status                 # first and last recoverable time, archiver, backups
      imctl backup status --check -o json # CI: exit 10 when archiving stalls or falls behind
      imctl backup base                   # a base backup now (cron it for a shorter replay)
    """,
    epilog=GROUP_EPILOG,
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _render_status(console: Any, doc: Mapping[str, Any]) -> None:
    mark = "[green]ok[/green]" if doc.get("healthy") else "[red]AT RISK[/red]"
    archiving = doc.get("archiving")
    if isinstance(archiving, Mapping):  # a cloud: the state of its log backups
        archiving = archiving.get("state")
    console.print(
        f"stack [bold]{doc['stack']}[/bold] ({doc['cloud']})  continuous backup {mark}"
        + (f"  archiving {human(archiving)}" if archiving else "")
    )
    if doc.get("retention_days") is not None:
        console.print(f"  retention {doc['retention_days']} days", markup=False)
    if doc.get("keep_days") is not None:
        console.print(
            f"  keeps {doc['keep_days']:g} days; a base backup every"
            f" {doc['base_every_hours']:g} h (deploy, or `imctl backup base` from cron)",
            markup=False,
        )
    ship = doc.get("shipping")
    if isinstance(ship, Mapping):
        state = "running" if ship.get("running") else "STOPPED"
        console.print(
            f"  shipper to {ship.get('url')} {state}, last pass"
            f" {human(ship.get('last_pass_age_s'))}s ago, pending {human(ship.get('pending'))}",
            markup=False,
        )
    window = doc.get("window") or {}
    last = window.get("last")
    if window.get("up_to_now"):
        last = f"now (newest archived commit {human(last)})"
    console.print(f"recoverable  {human(window.get('first'))} .. {human(last)}", markup=False)
    render_problems(console, [{**p, "region": p.get("region") or "backup"}
                              for p in doc.get("problems") or []])  # fmt: skip
    where = doc.get("where") or {}
    if isinstance(where, Mapping):
        for k, v in where.items():
            if v:
                console.print(f"  {k}: {v}", markup=False)
    else:
        console.print(f"  where: {where}", markup=False)
    base = doc.get("last_base_backup")
    if isinstance(base, Mapping):
        console.print(
            f"  last base backup {human(base.get('id'))}, finished {human(base.get('finished_at'))}"
            f" ({megabytes(base.get('size_bytes'))})",
            markup=False,
        )
    elif base:
        console.print(f"  last base backup {base}", markup=False)
    arch = doc.get("archiver")
    if isinstance(arch, Mapping):
        state = (
            "streaming"
            if arch.get("streaming")
            else "running"
            if arch.get("running")
            else "STOPPED"
        )
        progress = (
            f", flushed up to {arch.get('flushed_lsn')}, {human(arch.get('lag_bytes'))} bytes"
            " behind"
            if arch.get("running")
            else ""
        )
        console.print(
            f"  WAL archiver {state}{progress}; archived up to"
            f" {human((doc.get('archived_up_to') or {}).get('segment'))}",
            markup=False,
        )
    for c in doc.get("chains") or []:
        console.print(
            f"  chain {c['id']} ({c['reason']}, timeline {c['timeline']}): {human(c['first'])} .."
            f" {human(c['last'])}, {len(c['base_backups'])} base backup(s), {c['wal_segments']}"
            f" WAL segment(s), {megabytes(c['size_bytes'])}",
            markup=False,
        )
    for w in doc.get("warnings") or []:
        console.print(f"  warning: {w}", markup=False)
    if window.get("first"):
        console.print(advice("restore: imctl restore --to-time TIME   (or latest)"))


def _render_base(console: Any, doc: Mapping[str, Any]) -> None:
    console.print(
        f"[green]✓[/green] base backup [bold]{doc['id']}[/bold] (chain {doc['chain']}):"
        f" {megabytes(doc['size_bytes'])} in {doc['seconds']:.1f}s, checked with pg_verifybackup"
    )
    console.print(f"  {doc['path']}", markup=False)


@app.command("status")
def status(
    tctx: typer.Context,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 10 when archiving is stopped or behind.")
    ] = False,
    outputs: OutputsFile = None,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: YesAccepted = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """The recoverable window (first and last time a restore can reach), where the backups
    are, the last base backup and how far WAL is archived.

    \b
    Examples:
      imctl backup status
      imctl backup status --check -o json || exit $?   # exit 10 when at risk
      imctl backup status --cloud aws -s prod
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> Result:
        return target_for(ctx, outputs=outputs).backup_status(check)

    run(ctx, "backup status", {"check": check}, body, _render_status, mutating=False)


@app.command("base")
def base(
    tctx: typer.Context,
    timeout: Timeout = None,
    outputs: OutputsFile = None,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: YesAccepted = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Take a base backup now (pg_basebackup, checked with pg_verifybackup).

    A restore replays the WAL archived since the newest base backup before the target time:
    more base backups, shorter restores. Deploy takes one when the newest is older than
    --base-every.

    \b
    Examples:
      imctl backup base
      imctl backup base -o json --timeout 600
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> Result:
        return target_for(ctx, outputs=outputs).backup_base(timeout, ctx.operator)

    run(ctx, "backup base", {"timeout": timeout}, body, _render_base, mutating=True)
