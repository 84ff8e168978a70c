"""imctl restore: bring a snapshot back, verified, with the old data kept unless asked.

Every restore checks the snapshot's files, restores next to the live data, compares every
conversation with the snapshot's digest, and only then switches and smoke-tests a send. A failed
check exits 10 and leaves the current data in service; nothing here ever exits 0 on a restore
that did not verify.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from cli.commands.snapshot import Timeout
from cli.errors import UsageError
from cli.hints import advice
from cli.options import (
    STACK_RE,
    Cloud,
    NoColor,
    Output,
    OutputsFile,
    Stack,
    Verbose,
    Yes,
    make_context,
)
from cli.results import Result
from cli.runner import run
from cli.targets.base import RestoreRequest, RestoreWhere, TimeRestoreRequest
from cli.targets.choose import target_for
from cli.words import human


class Target(enum.StrEnum):
    NEW = "new"
    IN_PLACE = "in-place"


def parse_time(text: str) -> datetime | None:
    """``latest`` (None) or an ISO 8601 time with its zone, as UTC. A time without a zone is
    refused: read as local or as UTC, one of the two would restore the wrong hour."""
    if text.strip().lower() == "latest":
        return None
    try:
        at = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--to-time {text!r} is not a time",
            "give an ISO 8601 time with its zone, e.g. 2026-12-03T14:04:59Z, or latest",
        ) from None
    if at.tzinfo is None:
        raise UsageError(
            f"--to-time {text!r} has no time zone",
            f"say which: {text}Z for UTC, or an offset such as {text}+01:00",
        )
    return at.astimezone(UTC)


def _render_time_restore(console: Any, doc: Mapping[str, Any]) -> None:
    t = doc["timings"]
    console.print(
        f"[green]✓[/green] restored stack [bold]{doc['stack']}[/bold] to {doc['to_time']}"
        f" (newest message committed {human(doc['recovered_to'])}): {doc['messages']} messages"
        f" in {doc['conversations']} conversations, seqs dense"
        + (", every live message up to then present" if doc["checks"]["live_compared"] else "")
    )
    console.print(
        f"  from base backup {doc['base_backup']} + WAL: recovery {t['recovery_s']:.1f}s,"
        f" nodes unavailable {t['unavailable_s']:.1f}s"
    )
    if doc["checks"]["deleted_since"]:
        console.print(
            f"  {doc['checks']['deleted_since']} conversation(s) at that time no longer exist in"
            " the replaced data (deleted since): they are back"
        )
    for name in doc["standbys_rebuilt"]:
        console.print(f"  standby region {name} rebuilt from the restored primary")
    console.print(f"  smoke test: send acked in {doc['smoke']['ack_ms']:.0f} ms")
    if doc["previous_data"]:
        console.print(
            f"  the replaced data is kept in {doc['previous_data']} "
            + advice("(`imctl snapshot prune --keep N --previous-data` removes it)")
        )
    for w in doc.get("warnings") or []:
        console.print(f"  warning: {w}", markup=False)


def _render_restore(console: Any, doc: Mapping[str, Any]) -> None:
    if "to_time" in doc and doc.get("cloud") == "local":
        _render_time_restore(console, doc)
        return
    if "timings" not in doc:
        _render_cloud_restore(console, doc)
        return
    t = doc["timings"]
    if doc.get("stack_created"):
        console.print(
            f"[green]✓[/green] created stack [bold]{doc['stack']}[/bold] at {doc['endpoint']}"
            f" (from stack {doc['from_stack']}'s snapshot)"
        )
    console.print(
        f"[green]✓[/green] restored snapshot [bold]{doc['id']}[/bold] into region "
        f"{doc['region']}: {doc['messages']} messages in {doc['conversations']} conversations, "
        "verified against the snapshot's digest"
    )
    console.print(
        f"  pg_restore {t['pg_restore_s']:.1f}s ({doc['restore_mb_per_s']} MB/s), "
        f"nodes unavailable {t['unavailable_s']:.1f}s"
    )
    if doc["nodes_killed"]:
        console.print(
            f"  [yellow]{', '.join(doc['nodes_killed'])} outlived the drain grace and were "
            "killed[/yellow] (clients reconnect and resend; nothing acked is lost)"
        )
    smoke = doc["smoke"]
    console.print(f"  smoke test: send acked in {smoke['ack_ms']:.0f} ms")
    if doc["previous_data"]:
        console.print(
            f"  the replaced data is kept in {doc['previous_data']} "
            + advice("(`imctl snapshot prune --keep N --previous-data` removes it)")
        )
    for w in doc.get("warnings") or []:
        console.print(f"  note: {w}", markup=False)


def _render_cloud_restore(console: Any, doc: Mapping[str, Any]) -> None:
    from rich.markup import escape

    what = (
        f"the data as of [bold]{doc['to_time']}[/bold]"
        if doc.get("to_time")
        else f"snapshot [bold]{doc.get('snapshot_id')}[/bold]"
    )
    console.print(
        f"[green]✓[/green] restored {what} into"
        f" {human(doc.get('instance_id'))} ({human(doc.get('target'))}),"
        f" in {human(doc.get('duration_s'))}s"
    )
    verified = doc.get("verified") or {}
    if verified:
        facts = human({k: v for k, v in verified.items() if not isinstance(v, Mapping)})
        console.print(f"  verified: {facts}", markup=False)
    if doc.get("previous_instance_id"):
        console.print(f"  the previous instance {doc['previous_instance_id']} is kept, untouched")
    for w in doc.get("warnings") or []:
        console.print(f"  [yellow]warning[/yellow] {escape(w)}")
    for step in doc.get("next_steps") or []:
        console.print(f"  next: {step}", markup=False)


def restore(
    tctx: typer.Context,
    snapshot_id: Annotated[
        str | None,
        typer.Argument(
            metavar="ID", help="Snapshot id (imctl snapshot list); or give --to-time instead."
        ),
    ] = None,
    to_time: Annotated[
        str | None,
        typer.Option(
            "--to-time",
            metavar="TIME|latest",
            help="Point-in-time restore from the continuous backup: an ISO 8601 time with its"
            " zone (2026-12-03T14:04:59Z), or latest. `imctl backup status` shows the window.",
        ),
    ] = None,
    target: Annotated[
        Target,
        typer.Option(
            "--target",
            case_sensitive=False,
            help="new: restore next to the live data and switch, keeping the old data; "
            "in-place: replace the live database (asks for the stack name).",
        ),
    ] = Target.NEW,
    from_stack: Annotated[
        str | None,
        typer.Option(
            "--from-stack",
            metavar="NAME",
            help="Local: restore a snapshot of stack NAME (a destroyed stack's, say) instead"
            " of one of this stack's own; a stack that does not exist is created.",
        ),
    ] = None,
    timeout: Timeout = None,
    outputs: OutputsFile = None,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Restore snapshot ID, or the data as it was at --to-time, into the stack: verify,
    restore, compare, switch, smoke-test.

    Asks first (in-place: type the stack name); --yes in scripts.

    \b
    Examples:
      imctl restore 20250101T120000Z-ab12cd     # next to the live data, then switch
      imctl restore 20250101T120000Z-ab12cd -s new --from-stack old   # creates stack new
      imctl restore --to-time 2026-12-03T14:04:59Z   # as it was then (backup status: window)
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)
    where: RestoreWhere = "in-place" if target is Target.IN_PLACE else "new"

    def body() -> Result:
        if (snapshot_id is None) == (to_time is None):
            raise UsageError(
                "give a snapshot ID or --to-time, not both"
                if snapshot_id
                else "give a snapshot ID or --to-time TIME",
                "`imctl snapshot list` lists snapshots; `imctl backup status` shows the times"
                " --to-time can reach",
            )
        if to_time is not None:
            if from_stack is not None:
                raise UsageError(
                    "--from-stack is for snapshots; --to-time restores the stack's own backups"
                )
            at = parse_time(to_time)
            time_req = TimeRestoreRequest(at, where, timeout)
            return target_for(ctx, outputs=outputs).restore_to_time(time_req, ctx.operator)
        assert snapshot_id is not None
        if from_stack is not None and not STACK_RE.fullmatch(from_stack):
            raise UsageError(f"invalid stack name {from_stack!r} for --from-stack")
        req = RestoreRequest(snapshot_id, where, timeout, from_stack)
        return target_for(ctx, outputs=outputs, from_stack=from_stack).restore(req, ctx.operator)

    args = {
        "id": snapshot_id,
        "to_time": to_time,
        "target": where,
        "timeout": timeout,
        "from_stack": from_stack,
    }
    # The stack need not exist when the snapshot comes from elsewhere (--from-stack) or it was
    # destroyed with its snapshots kept; a mistyped -s still finds "stack not found" (exit 6)
    # and leaves no journal behind.
    create = from_stack is not None or ctx.stack_dir.is_dir()
    run(ctx, "restore", args, body, _render_restore, mutating=True, create_stack=create or None)
