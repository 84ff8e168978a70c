"""imctl failover: move the primary role to the standby region.

Planned (default): the primary is healthy; its nodes drain, the standby replays everything,
then it is promoted and the old primary rejoins as the standby. No acked message is lost.
Forced (--force): the primary is lost; it is fenced first, then the standby is promoted, and
the data-loss bound is reported. Both show the plan and the bound and ask before acting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cli.errors import ExitStatus, ImctlError
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


def describe_bound(bound: Mapping[str, Any]) -> str:
    acked = bound.get("acked_messages")
    wal = bound.get("wal_bytes")
    parts = [f"acked messages lost: {'unknown' if acked is None else acked}"]
    if wal is not None:
        parts.append(f"WAL not received by the standby: {wal} bytes")
    if bound.get("why"):
        parts.append(str(bound["why"]))
    return "; ".join(parts)


def _render_failover(console: Any, doc: Mapping[str, Any]) -> None:
    if doc.get("dry_run"):
        console.print(
            f"[bold]plan[/bold] ({doc['mode']}): {doc['from_region']} -> {doc['to_region']}"
        )
        for s in doc["steps"]:
            console.print(f"  • {s}")
        console.print(f"data-loss bound: {describe_bound(doc['data_loss_bound'])}")
        return
    console.print(
        f"[green]✓[/green] {doc['mode']} failover {doc['from_region']} -> {doc['to_region']}"
        f" in {doc['rto_seconds']:.2f}s (promoted after {doc['promote_seconds']:.2f}s)"
    )
    console.print(f"  data-loss bound: {describe_bound(doc['data_loss_bound'])}")
    if doc["mode"] == "planned":
        state = "rejoined as standby" if doc["rejoined"] else "NOT rejoined"
        console.print(f"  {doc['from_region']}: {state}")
    else:
        console.print(
            f"  {doc['from_region']} is fenced: imctl standby rebuild --region {doc['from_region']}"
        )
    console.print(f"  endpoint {doc['status']['endpoint']} now served by {doc['to_region']}")


def failover(
    tctx: typer.Context,
    to_region: Annotated[str, typer.Option(help="The standby region to promote.")],
    force: Annotated[
        bool, typer.Option(help="The primary is lost: fence it and promote without it.")
    ] = False,
    max_lag: Annotated[
        int, typer.Option(help="Planned: refuse when the standby is more bytes behind.")
    ] = 16 * 1024 * 1024,
    dry_run: Annotated[bool, typer.Option(help="Print the plan and its bound only.")] = False,
    timeout: Annotated[
        float | None,
        typer.Option(help="Give up (exit 9) after this many seconds (local 120, clouds 1800)."),
    ] = None,
    outputs: OutputsFile = None,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Promote the standby region (planned switchover, or --force after losing the primary)."""
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)
    args = {"to_region": to_region, "force": force, "max_lag": max_lag, "dry_run": dry_run}

    def body() -> DocResult:
        if ctx.cloud != "local":
            from cli.errors import Partial
            from cli.targets.cloud.factory import cloud_ops

            ops = cloud_ops(ctx, outputs)
            mode = "forced" if force else "planned"
            ctx.out.confirm(
                f"{mode.capitalize()} failover of the {ctx.cloud} stack to {to_region}?",
                details=[
                    "fence the old region's im-server (scale to 0), "
                    + (
                        "promote without waiting" if force else "wait for zero replica lag, promote"
                    ),
                    "scale the new region up and point DNS at it",
                    "data-loss bound: cloud replicas are asynchronous; the last measured lag is"
                    " reported",
                ],
            )
            managed = outputs is None and not ctx.env.environ.get("IMCTL_OUTPUTS_FILE")
            try:
                doc = ops.failover(to_region, force, ctx.out.info, timeout or 1800)
            except Partial as exc:
                # Past the promotion: the roles have moved even though a later step failed.
                if managed:
                    written: dict[str, Any] = {}
                    if record_roles(ctx, to_region, written) is not ExitStatus.OK:
                        exc.hint = f"{exc.hint}; and {written['hint']}"
                    exc.details = {**(exc.details or {}), **written}
                raise exc
            except ImctlError as exc:
                # Gave up (timeout) or does not know whether the promotion went through: if it
                # did, the next deploy must know, or it would undo the failover.
                if managed and (exc.status is ExitStatus.TIMEOUT or exc.code == "outcome_unknown"):
                    exc.hint = f"{exc.hint}; {_if_promoted(ctx, to_region)}"
                raise
            doc = {"cloud": ctx.cloud, **doc}
            if not managed:
                doc["config_written"] = False  # not an imctl-managed stack: nothing to write to
                return DocResult(doc)
            return DocResult(doc, record_roles(ctx, to_region, doc))
        from cli.targets.local.target import LocalTarget

        target = LocalTarget(StackFiles(ctx.stack_dir))
        if dry_run:
            _, _, _, info = target.failover_plan(to_region, force, max_lag)
            return DocResult({**info, "dry_run": True})

        def confirm(info: dict[str, Any]) -> None:
            ctx.out.confirm(
                f"{info['mode'].capitalize()} failover {info['from_region']} ->"
                f" {info['to_region']}?",
                details=[
                    *info["steps"],
                    f"data-loss bound: {describe_bound(info['data_loss_bound'])}",
                ],
            )

        doc = target.failover(
            to_region, force=force, max_lag=max_lag, confirm=confirm, step=ctx.out.info,
            timeout=timeout or 120,
        )  # fmt: skip
        return DocResult(doc)

    run(ctx, "failover", args, body, _render, mutating=True, create_stack=ctx.cloud != "local")


def _render(console: Any, doc: Mapping[str, Any]) -> None:
    if doc.get("cloud", "local") != "local":
        from cli.targets.cloud.factory import render_cloud

        render_cloud(console, doc)
    else:
        _render_failover(console, doc)


def _count_for(ctx: Any, to_region: str) -> tuple[int, bool]:
    """(the ``failovers`` count that makes ``to_region`` the writer, whether the stack config
    already says so)."""
    from cli import engine
    from cli.engine import StackOutputs

    config = engine.config_values(ctx.stack, home=ctx.env.home, env=ctx.env.environ)
    writer, failovers = StackOutputs(values={}, config=config).configured_writer()
    return (failovers, True) if writer == to_region else (failovers + 1, False)


def record_roles(ctx: Any, to_region: str, doc: dict[str, Any]) -> ExitStatus:
    """Count the failover in the stack config, so the next deploy keeps ``to_region`` as the
    writer (and builds a new replica in the old region) instead of undoing the failover.

    Idempotent: a failover resumed after a partial run finds the count already naming
    ``to_region`` and leaves it."""
    from cli import engine

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
        doc["config_written"] = False
        doc["config_error"] = exc.message
        doc["hint"] = (
            f"record it before the next deploy: imctl deploy --set failovers=<n> where the new"
            f" count makes {to_region} the writer (odd: standbyRegion)"
        )
        return ExitStatus.PARTIAL
    doc["config_written"] = changed
    doc["failovers"] = failovers
    steps = doc.setdefault("next_steps", [])
    steps.insert(
        0,
        f"imctl deploy -s {ctx.stack} when both regions are reachable: it keeps {to_region} as"
        " the writer and makes a new standby replica",
    )
    return ExitStatus.OK


def _if_promoted(ctx: Any, to_region: str) -> str:
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
