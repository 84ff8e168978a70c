"""imctl snapshot: take, list, show, verify, delete and prune snapshots of a stack's data.

create, delete and prune take the stack lock and are journalled; list, show and verify only
read. An unknown snapshot id exits 1 (code ``snapshot_not_found``): 6 stays "no such stack".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cli.context import Context
from cli.deadline import Deadline
from cli.errors import UsageError
from cli.options import (
    GROUP_EPILOG,
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
from cli.snapshots import (
    TIMEOUT_HINT,
    CreateResult,
    DeleteResult,
    ListResult,
    ShowResult,
    SnapshotStore,
    VerifyResult,
)
from cli.state import StackFiles

app = typer.Typer(
    name="snapshot",
    help="Take, list, check and delete snapshots of a stack's data (restore: imctl restore).",
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


def store(ctx: Context) -> SnapshotStore:
    """The local target's SnapshotStore (clouds go through their ops: see _cloud)."""
    if ctx.cloud != "local":
        raise UsageError(
            f"this snapshot command is local-only; on --cloud {ctx.cloud} use create, list,"
            " show and delete (the cloud's own retention prunes, its backups are checksummed)",
        )
    from cli.targets.local.snapshots import LocalSnapshots

    return LocalSnapshots(StackFiles(ctx.stack_dir))


def cloud_ops_for(ctx: Context, outputs: str | None) -> Any:
    from cli.targets.cloud.factory import cloud_ops

    return cloud_ops(ctx, outputs)


def render_either(render: Any) -> Any:
    """A renderer that hands cloud documents to the generic cloud renderer."""

    def pick(console: Any, doc: Mapping[str, Any]) -> None:
        if doc.get("cloud", "local") != "local":
            from cli.targets.cloud.factory import render_cloud

            render_cloud(console, doc)
        else:
            render(console, doc)

    return pick


def deadline(timeout: float | None) -> Deadline:
    if timeout is not None and timeout <= 0:
        raise UsageError(f"--timeout must be more than 0 seconds, got {timeout:g}")
    return Deadline(timeout, hint=TIMEOUT_HINT)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


# --- create ---------------------------------------------------------------------------------


def _render_create(console: Any, doc: Mapping[str, Any]) -> None:
    console.print(
        f"[green]✓[/green] snapshot [bold]{doc['id']}[/bold]: {doc['messages']} messages in "
        f"{doc['conversations']} conversations, {_mb(doc['size_bytes'])} "
        f"({doc['duration_s']:.1f}s)"
    )
    console.print(f"  {doc['location']}")


@app.command("create")
def create(
    tctx: typer.Context,
    note: Annotated[str | None, typer.Option(help="A note kept with the snapshot.")] = None,
    timeout: Timeout = None,
    outputs: OutputsFile = None,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Take a consistent snapshot of the primary's data while traffic flows."""
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> CreateResult | DocResult:
        if note is not None and len(note) > MAX_NOTE:
            raise UsageError(f"--note is limited to {MAX_NOTE} characters")
        limit = deadline(timeout)
        if ctx.cloud != "local":
            doc = cloud_ops_for(ctx, outputs).snapshot_create(note, ctx.out.info, timeout or 3600)
            return DocResult({"cloud": ctx.cloud, **doc})
        return store(ctx).create(note, limit, ctx.out.step)

    args = {"note": note, "timeout": timeout}
    run(ctx, "snapshot create", args, body, render_either(_render_create), mutating=True,
        create_stack=ctx.cloud != "local")  # fmt: skip


# --- list / show ----------------------------------------------------------------------------


def _render_list(console: Any, doc: Mapping[str, Any]) -> None:
    from rich.table import Table

    if not doc["snapshots"]:
        console.print("no snapshots (take one: imctl snapshot create)")
    else:
        t = Table("id", "created", "messages", "size", "note")
        for s in doc["snapshots"]:
            t.add_row(s["id"], s["created_at"], str(s["messages"]), _mb(s["size_bytes"]),
                      s["note"] or "")  # fmt: skip
        console.print(t)
    for name in doc["incomplete"]:
        console.print(f"[yellow]incomplete:[/yellow] {name} (`imctl snapshot prune` removes it)")
    for p in doc["previous_data"]:
        console.print(
            f"kept by a restore: {p['path']} ({_mb(p['size_bytes'])}; "
            "`imctl snapshot prune --previous-data` removes it)"
        )


@app.command("list")
def list_(
    tctx: typer.Context,
    outputs: OutputsFile = None,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """List the stack's snapshots, oldest first."""
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> ListResult | DocResult:
        if ctx.cloud != "local":
            return DocResult({"cloud": ctx.cloud, **cloud_ops_for(ctx, outputs).snapshot_list()})
        return store(ctx).list()

    run(ctx, "snapshot list", {}, body, render_either(_render_list), mutating=False,
        create_stack=ctx.cloud != "local")  # fmt: skip


def _render_show(console: Any, doc: Mapping[str, Any]) -> None:
    m = doc["manifest"]
    content = m["content"]
    console.print(f"snapshot [bold]{doc['id']}[/bold]  ({doc['stack']}/{doc['region']})")
    console.print(f"  created      {doc['created_at']}")
    console.print(f"  location     {doc['location']}")
    console.print(f"  note         {doc['note'] or '-'}")
    console.print(f"  postgresql   {m['postgresql']['server_version']} ({m['format']}, "
                  f"{m['compression']})")  # fmt: skip
    console.print(
        f"  content      {content['messages']} messages, {content['conversation_count']} "
        f"conversations, {content['members']} memberships"
    )
    for f in m["files"]:
        console.print(f"  file         {f['name']}  {_mb(f['size'])}  sha256 {f['sha256']}")


@app.command("show")
def show(
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
    """Show one snapshot: where it is and its manifest (-o json has the per-conversation
    digest)."""
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> ShowResult | DocResult:
        if ctx.cloud != "local":
            doc = cloud_ops_for(ctx, outputs).snapshot_show(snapshot_id)
            return DocResult({"cloud": ctx.cloud, **doc})
        return store(ctx).show(snapshot_id)

    args = {"id": snapshot_id}
    run(ctx, "snapshot show", args, body, render_either(_render_show), mutating=False,
        create_stack=ctx.cloud != "local")  # fmt: skip


# --- delete / prune -------------------------------------------------------------------------


def _render_delete(console: Any, doc: Mapping[str, Any]) -> None:
    for name in doc["deleted"]:
        console.print(f"[green]✓[/green] deleted {name}")
    for path in doc["previous_data_deleted"]:
        console.print(f"[green]✓[/green] deleted {path}")
    if doc["kept"]:
        console.print(f"kept {', '.join(doc['kept'])}")
    if not doc["deleted"] and not doc["previous_data_deleted"]:
        console.print("nothing to delete")
    else:
        console.print(f"freed {_mb(doc['freed_bytes'])}")


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
    """Delete one snapshot."""
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> DeleteResult | DocResult:
        if ctx.cloud != "local":
            doc = cloud_ops_for(ctx, outputs).snapshot_delete(snapshot_id, ctx.out.info, 1800)
            return DocResult({"cloud": ctx.cloud, **doc})
        return store(ctx).delete(snapshot_id)

    run(ctx, "snapshot delete", {"id": snapshot_id}, body, render_either(_render_delete),
        mutating=True, create_stack=ctx.cloud != "local")  # fmt: skip


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
    """Keep the newest N snapshots, delete the rest (and unfinished ones)."""
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> DeleteResult:
        return store(ctx).prune(keep, previous_data)

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
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Check a snapshot's files against its manifest (exit 10 when anything differs)."""
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> VerifyResult:
        limit = deadline(timeout)
        return store(ctx).verify(snapshot_id, deep, limit, ctx.out.step)

    args = {"id": snapshot_id, "deep": deep, "timeout": timeout}
    run(ctx, "snapshot verify", args, body, _render_verify, mutating=False)
