"""imctl snapshot: take, list, show, verify, delete and prune snapshots of a stack's data.

create, delete and prune take the stack lock and are journalled; list, show and verify only
read. An unknown snapshot id exits 1 (code ``snapshot_not_found``): 6 stays "no such stack".
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cli.errors import UsageError
from cli.hints import advice
from cli.options import (
    GROUP_EPILOG,
    Cloud,
    NoColor,
    NoHeaders,
    Output,
    OutputsFile,
    Stack,
    Verbose,
    Yes,
    YesAccepted,
    make_context,
)
from cli.results import Result
from cli.runner import run
from cli.tables import Column, print_table
from cli.targets.choose import target_for

app = typer.Typer(
    name="snapshot",
    help="""Take, list, check and delete snapshots of a stack's data (restore: imctl restore).

    \b
    Examples:
      imctl snapshot create --note "before the upgrade"
      imctl snapshot list
      imctl snapshot verify ID --deep
    """,
    epilog=GROUP_EPILOG + " An unknown snapshot id exits 1 (code snapshot_not_found).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

Timeout = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        help="Give up after this long (exit 9); the partial work is cleaned up.",
    ),
]
SnapshotId = Annotated[str, typer.Argument(metavar="ID", help="Snapshot id (imctl snapshot list).")]
MAX_NOTE = 500


def megabytes(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def _count(n: Any) -> str:
    return "-" if n is None else str(n)


# --- create ---------------------------------------------------------------------------------


def _render_create(console: Any, doc: Mapping[str, Any]) -> None:
    from rich.markup import escape

    if "messages" in doc and "duration_s" in doc:  # counted while it was taken
        console.print(
            f"[green]✓[/green] snapshot [bold]{doc['id']}[/bold]: {doc['messages']} messages in "
            f"{doc['conversations']} conversations, {megabytes(doc['size_bytes'])} "
            f"({doc['duration_s']:.1f}s)"
        )
    else:  # a cloud's backup: the digest read just before it is what a restore checks
        digest = doc.get("digest") or {}
        held = f"at least {digest['messages']} messages" if digest else "no content digest"
        console.print(
            f"[green]✓[/green] snapshot [bold]{doc['id']}[/bold] {doc.get('status') or ''}: {held}"
        )
    console.print(f"  {doc.get('location') or '-'}", markup=False)
    for w in doc.get("warnings") or []:
        console.print(f"  [yellow]warning[/yellow] {escape(w)}")


@app.command("create")
def create(
    tctx: typer.Context,
    note: Annotated[
        str | None, typer.Option(metavar="NOTE", help="A note kept with the snapshot.")
    ] = None,
    timeout: Timeout = None,
    outputs: OutputsFile = None,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: YesAccepted = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Take a consistent snapshot of the primary's data while traffic flows.

    \b
    Examples:
      imctl snapshot create
      imctl snapshot create --note "before the upgrade" -o json
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> Result:
        if note is not None and len(note) > MAX_NOTE:
            raise UsageError(f"--note is limited to {MAX_NOTE} characters")
        return target_for(ctx, outputs=outputs).snapshot_create(note, timeout, ctx.operator)

    args = {"note": note, "timeout": timeout}
    run(ctx, "snapshot create", args, body, _render_create, mutating=True)


# --- list / show ----------------------------------------------------------------------------


def _render_list(console: Any, doc: Mapping[str, Any], *, no_headers: bool = False) -> None:
    if not doc["snapshots"]:
        console.print(advice("no snapshots (take one: imctl snapshot create)"))
    else:
        rows = [
            [s["id"], s.get("created_at") or "-", s.get("status") or "complete",
             _count(s.get("messages")), megabytes(s.get("size_bytes")), s.get("note") or "-"]
            for s in doc["snapshots"]
        ]  # fmt: skip
        columns: list[str | Column] = [
            "id",
            "created",
            "status",
            Column("messages", "right"),
            "size",
            "note",
        ]
        print_table(console, columns, rows, no_headers=no_headers)
    if no_headers or not console.is_terminal:
        return  # rows only, for a pipe; -o json has the notes below
    for name in doc.get("incomplete") or []:
        console.print(
            advice(f"[yellow]incomplete:[/yellow] {name} (`imctl snapshot prune` removes it)")
        )
    for p in doc.get("previous_data") or []:
        console.print(
            advice(
                f"kept by a restore: {p['path']} ({megabytes(p['size_bytes'])}; "
                "`imctl snapshot prune --previous-data` removes it)"
            )
        )


@app.command("list")
def list_(
    tctx: typer.Context,
    no_headers: NoHeaders = False,
    outputs: OutputsFile = None,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: YesAccepted = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """List the stack's snapshots, oldest first.

    \b
    Examples:
      imctl snapshot list
      imctl snapshot list --cloud aws -s prod -o json
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> Result:
        return target_for(ctx, outputs=outputs).snapshot_list()

    render = functools.partial(_render_list, no_headers=no_headers)
    run(ctx, "snapshot list", {}, body, render, mutating=False)


def _render_show(console: Any, doc: Mapping[str, Any]) -> None:
    console.print(
        f"snapshot [bold]{doc['id']}[/bold]  ({doc.get('stack') or '-'}/{doc.get('region') or '-'})"
    )
    console.print(f"  created      {doc.get('created_at') or '-'}")
    console.print(f"  location     {doc.get('location') or '-'}", markup=False)
    console.print(f"  note         {doc.get('note') or '-'}", markup=False)
    m = doc.get("manifest")
    if m is None:  # a cloud's backup: what the cloud says of it, and the recorded digest
        console.print(f"  status       {doc.get('status') or '-'}")
        digest = doc.get("digest")
        if digest:
            console.print(
                f"  digest       at least {digest['messages']} messages in"
                f" {digest['conversations']} conversations"
            )
        else:
            console.print("  digest       none recorded: a restore cannot check the content")
        return
    content = m["content"]
    console.print(f"  postgresql   {m['postgresql']['server_version']} ({m['format']}, "
                  f"{m['compression']})")  # fmt: skip
    console.print(
        f"  content      {content['messages']} messages, {content['conversation_count']} "
        f"conversations, {content['members']} memberships"
    )
    for f in m["files"]:
        console.print(f"  file         {f['name']}  {megabytes(f['size'])}  sha256 {f['sha256']}")


@app.command("show")
def show(
    tctx: typer.Context,
    snapshot_id: SnapshotId,
    outputs: OutputsFile = None,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: YesAccepted = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Show one snapshot: where it is and its manifest (-o json has the per-conversation
    digest).

    \b
    Examples:
      imctl snapshot show 20250101T120000Z-ab12cd
      imctl snapshot show 20250101T120000Z-ab12cd -o json
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> Result:
        return target_for(ctx, outputs=outputs).snapshot_show(snapshot_id)

    run(ctx, "snapshot show", {"id": snapshot_id}, body, _render_show, mutating=False)


# --- delete / prune -------------------------------------------------------------------------


def _render_delete(console: Any, doc: Mapping[str, Any]) -> None:
    for name in doc["deleted"]:
        console.print(f"[green]✓[/green] deleted {name}")
    previous = doc.get("previous_data_deleted") or []
    for path in previous:
        console.print(f"[green]✓[/green] deleted {path}")
    if doc.get("kept"):
        console.print(f"kept {', '.join(doc['kept'])}")
    if not doc["deleted"] and not previous:
        console.print("nothing to delete")
    elif doc.get("freed_bytes") is not None:
        console.print(f"freed {megabytes(doc['freed_bytes'])}")


@app.command("delete")
def delete(
    tctx: typer.Context,
    snapshot_id: SnapshotId,
    outputs: OutputsFile = None,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Delete one snapshot. Asks first; --yes in scripts.

    \b
    Examples:
      imctl snapshot delete 20250101T120000Z-ab12cd
      imctl snapshot delete 20250101T120000Z-ab12cd --yes -o json   # in a script
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> Result:
        return target_for(ctx, outputs=outputs).snapshot_delete(snapshot_id, None, ctx.operator)

    run(ctx, "snapshot delete", {"id": snapshot_id}, body, _render_delete, mutating=True)


@app.command("prune")
def prune(
    tctx: typer.Context,
    keep: Annotated[int, typer.Option("--keep", metavar="N", help="Snapshots to keep (newest).")],
    previous_data: Annotated[
        bool,
        typer.Option(
            "--previous-data",
            help="Also delete the data directories that restores replaced and kept.",
        ),
    ] = False,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Keep the newest N snapshots, delete the rest (and unfinished ones). Asks first; --yes
    in scripts.

    \b
    Examples:
      imctl snapshot prune --keep 7 --yes
      imctl snapshot prune --keep 3 --previous-data    # also what restores replaced
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> Result:
        return target_for(ctx).snapshot_prune(keep, previous_data, ctx.operator)

    args = {"keep": keep, "previous_data": previous_data}
    run(ctx, "snapshot prune", args, body, _render_delete, mutating=True)


# --- verify ---------------------------------------------------------------------------------


def _render_verify(console: Any, doc: Mapping[str, Any]) -> None:
    for f in doc["files"]:
        mark = "[green]✓[/green]" if f["ok"] else "[red]✗[/red]"
        console.print(f"{mark} {f['name']} {f['problem'] or 'sha256 matches'}")
    c = doc["content"]
    if c is not None:
        console.print(
            f"  scratch restore: {c['messages']} messages, {c['conversations']} conversations, "
            f"dense: {'yes' if c['dense'] else 'NO'}, matches the manifest: "
            f"{'yes' if c['matches_manifest'] else 'NO'}"
        )
    if doc["ok"]:
        depth = "files and content" if doc["deep"] else "files (add --deep to restore-check)"
        console.print(f"[green]✓[/green] snapshot {doc['id']} verified: {depth}")
    else:
        console.print(f"[red]✗[/red] snapshot {doc['id']} FAILED verification:")
        for p in doc["problems"]:
            console.print(f"  - {p}")


@app.command("verify")
def verify(
    tctx: typer.Context,
    snapshot_id: SnapshotId,
    deep: Annotated[
        bool,
        typer.Option(
            "--deep",
            help="Also restore into a scratch PostgreSQL and compare every conversation.",
        ),
    ] = False,
    timeout: Timeout = None,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: YesAccepted = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Check a snapshot's files against its manifest (exit 10 when anything differs).

    \b
    Examples:
      imctl snapshot verify 20250101T120000Z-ab12cd
      imctl snapshot verify 20250101T120000Z-ab12cd --deep   # restore-check into a scratch cluster
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> Result:
        return target_for(ctx).snapshot_verify(snapshot_id, deep, timeout, ctx.operator)

    args = {"id": snapshot_id, "deep": deep, "timeout": timeout}
    run(ctx, "snapshot verify", args, body, _render_verify, mutating=False)
