"""imctl restore: bring a snapshot back, verified, with the old data kept unless asked.

Every restore checks the snapshot's files, restores next to the live data, compares every
conversation with the snapshot's digest, and only then switches and smoke-tests a send. A failed
check exits 10 and leaves the current data in service; nothing here ever exits 0 on a restore
that did not verify.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cli.commands.snapshot import SnapshotId, Timeout, cloud_ops_for, deadline, render_either, store
from cli.errors import ExitStatus, ImctlError, PreconditionFailed
from cli.options import Cloud, NoColor, Output, OutputsFile, Stack, Verbose, Yes, make_context
from cli.runner import DocResult, run
from cli.snapshots import RestoreResult, RestoreTarget


class Target(enum.StrEnum):
    NEW = "new"
    IN_PLACE = "in-place"


def _render_restore(console: Any, doc: Mapping[str, Any]) -> None:
    t = doc["timings"]
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
            "(`imctl snapshot prune --keep N --previous-data` removes it)"
        )


def restore(
    tctx: typer.Context,
    snapshot_id: SnapshotId,
    target: Annotated[
        Target,
        typer.Option(
            "--target",
            case_sensitive=False,
            help="new: restore next to the live data and switch, keeping the old data; "
            "in-place: replace the live database (asks for the stack name).",
        ),
    ] = Target.NEW,
    timeout: Timeout = None,
    outputs: OutputsFile = None,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Restore snapshot ID into the stack: verify, restore, compare, switch, smoke-test."""
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)
    where: RestoreTarget = "in-place" if target is Target.IN_PLACE else "new"

    def body() -> RestoreResult | DocResult:
        deadline(timeout)  # a bad --timeout fails before anyone is asked anything
        if ctx.cloud != "local":
            ops = cloud_ops_for(ctx, outputs)
            plan = [
                f"restore {snapshot_id} into a NEW {ctx.cloud} database instance"
                + (", then swap it in place of the current one" if where == "in-place" else ""),
                "repoint the im-server Secret at it and roll the Deployment",
                "check the restored content through the endpoint (/admin/digest) against the "
                "digest recorded with the snapshot; if it lacks anything, point the Secret back "
                "and roll again (exit 10)",
                "the current instance is kept, untouched",
            ]
            if where == "in-place":
                ctx.out.confirm_typed(ctx.stack, details=plan)
            else:
                ctx.out.confirm(f"Restore {snapshot_id} on {ctx.cloud}?", details=plan)
            from cli.errors import RestoredContentMismatch

            managed = outputs is None and not ctx.env.environ.get("IMCTL_OUTPUTS_FILE")
            recorded: dict[str, Any] = {}

            def switching(instance: str) -> None:
                # Recorded before the Secret moves, so no failure after it (a stuck rollout, a
                # timeout, an unverifiable check) can leave a deploy free to point it back.
                if (
                    managed
                    and where == "new"
                    and record_restore(ctx, where, instance, recorded) is not ExitStatus.OK
                ):
                    raise PreconditionFailed(
                        f"could not record {instance} in the stack config"
                        f" ({recorded['config_error']}); the workload was not switched",
                        recorded["hint"],
                    )

            try:
                doc = ops.restore(snapshot_id, where, ctx.out.info, timeout or 3600, switching)
            except RestoredContentMismatch as exc:
                # Pointed back at the previous database: nothing is left for a deploy to undo.
                if recorded and exc.result.get("rolled_back"):
                    record_restore(ctx, "in-place", "", {})
                raise
            steps = [*recorded.pop("next_steps", []), *doc.get("next_steps", [])]
            doc = {"cloud": ctx.cloud, **doc, **recorded, "next_steps": steps}
            if not managed:
                doc["config_written"] = False  # not an imctl-managed stack: nothing to write to
                return DocResult(doc)
            if where == "in-place":  # the stack's own instance holds the restored data now
                return DocResult(doc, record_restore(ctx, where, str(doc["instance_id"]), doc))
            return DocResult(doc)
        snapshots = store(ctx)
        plan = snapshots.restore_plan(snapshot_id, where)
        if where == "in-place":
            ctx.out.confirm_typed(ctx.stack, details=plan)
        else:
            ctx.out.confirm(f"Restore snapshot {snapshot_id} into stack {ctx.stack!r}?",
                            details=plan)  # fmt: skip
        # The clock starts after the answer: a person reading the plan is not the operation.
        return snapshots.restore(snapshot_id, where, deadline(timeout), ctx.out.step)

    args = {"id": snapshot_id, "target": where, "timeout": timeout}
    run(ctx, "restore", args, body, render_either(_render_restore), mutating=True,
        create_stack=ctx.cloud != "local")  # fmt: skip


def record_restore(
    ctx: Any, where: RestoreTarget, instance: str, doc: dict[str, Any]
) -> ExitStatus:
    """Tell the stack which instance the workload runs on after a cloud restore.

    Into a NEW instance: the stack does not manage it, and a deploy would point the workload
    back at the stack's own instance, losing what was written since; ``restoredInstance``
    makes the program refuse until the operator decides. In place: the stack's instance holds
    the restored data, so the mark (from an earlier restore) is cleared."""
    from cli import engine

    value = instance if where == "new" else ""
    try:
        changed = engine.set_config(
            ctx.stack, ctx.cloud, {"restoredInstance": value}, home=ctx.env.home,
            env=ctx.env.environ,
        )  # fmt: skip
    except ImctlError as exc:
        doc["config_written"] = False
        doc["config_error"] = exc.message
        doc["hint"] = (
            f"record it before any deploy: imctl deploy --set restoredInstance={value}"
            " (the deploy then refuses, so the workload is not pointed back)"
            if value
            else "clear it: imctl deploy --set restoredInstance="
        )
        return ExitStatus.PARTIAL
    doc["config_written"] = changed
    if where == "new":
        doc.setdefault("next_steps", []).insert(
            0,
            f"deploys of stack {ctx.stack} refuse while the workload runs on {instance}, which"
            " the stack does not manage: keep the restore with --target in-place (AWS, GCP), or"
            " go back to the stack's instance with imctl deploy --set restoredInstance=",
        )
    return ExitStatus.OK
