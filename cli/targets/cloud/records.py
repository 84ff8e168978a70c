"""What the stack config records after a cloud day-2 operation, so the next deploy builds on
it instead of undoing it: the roles after a failover, the sizes after a scale, the instance the
workload runs on after a restore.

Each write-back runs after the cloud has changed. A failed write does not hide that change: the
result says what was done, what was not recorded and the command that records it, and the
operation exits 7 (partial). Pulumi loads only when a write-back runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cli.errors import ExitStatus, ImctlError
from cli.targets.base import RestoreWhere

if TYPE_CHECKING:
    from cli.targets.choose import Invocation


def _count_for(ctx: Invocation, to_region: str) -> tuple[int, bool]:
    """(the ``failovers`` count that makes ``to_region`` the writer, whether the stack config
    already says so)."""
    from cli import engine

    config = engine.config_values(ctx.stack, home=ctx.env.home, env=ctx.env.environ)
    writer, failovers = engine.StackOutputs(values={}, config=config).configured_writer()
    return (failovers, True) if writer == to_region else (failovers + 1, False)


def record_roles(ctx: Invocation, to_region: str, doc: dict[str, Any]) -> ExitStatus:
    """Count the failover in the stack config, so the next deploy keeps ``to_region`` as the
    writer (and builds a new replica in the old region) instead of undoing the failover.

    Idempotent: a failover resumed after a partial run finds the count already naming
    ``to_region`` and leaves it. What was written goes under ``details`` (the failover
    document's common keys are the same on every target)."""
    from cli import engine

    details = doc.setdefault("details", {})
    try:
        failovers, _ = _count_for(ctx, to_region)
        changed = engine.set_config(
            ctx.stack,
            ctx.cloud,
            {"failovers": str(failovers)},
            home=ctx.env.home,
            env=ctx.env.environ,
        )
    except ImctlError as exc:
        # The cloud has failed over; only the record failed. Say so, and how to finish.
        details["config_written"] = False
        details["config_error"] = exc.message
        details["hint"] = (
            f"record it before the next deploy: imctl deploy --set failovers=<n> where the new"
            f" count makes {to_region} the writer (odd: standbyRegion)"
        )
        return ExitStatus.PARTIAL
    details["config_written"] = changed
    details["failovers"] = failovers
    steps = doc.setdefault("next_steps", [])
    steps.insert(
        0,
        f"imctl deploy -s {ctx.stack} when both regions are reachable: it keeps {to_region} as"
        " the writer and makes a new standby replica",
    )
    return ExitStatus.OK


def if_promoted(ctx: Invocation, to_region: str) -> str:
    """What to do when nobody knows whether the promotion happened: the count that would make
    ``to_region`` the writer, for the operator to record once they have checked."""
    check = f"if {to_region} was promoted (imctl status --cloud {ctx.cloud})"
    try:
        failovers, already = _count_for(ctx, to_region)
    except ImctlError:
        return f"{check}, record it before any deploy: imctl deploy --set failovers=<n+1>"
    if already:
        return f"the stack config already names {to_region} the writer"
    return f"{check}, record it before any deploy: imctl deploy --set failovers={failovers}"


def write_back(
    ctx: Invocation, doc: dict[str, Any], nodes: int | None, min_: int | None, max_: int | None
) -> ExitStatus:
    """Record the new sizes in the stack's config, so the next deploy keeps them."""
    from cli import engine

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


def record_restore(
    ctx: Invocation, where: RestoreWhere, instance: str, doc: dict[str, Any]
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
