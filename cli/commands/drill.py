"""imctl drill failover: a failover under a built-in client load, measured."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from cli.errors import ExitStatus, UsageError
from cli.options import GROUP_EPILOG, Cloud, NoColor, Output, Stack, Verbose, Yes, make_context
from cli.runner import DocResult, run
from cli.state import StackFiles

app = typer.Typer(
    help="Rehearse operations under load and measure them.",
    no_args_is_help=True,
    epilog=GROUP_EPILOG,
    rich_markup_mode=None,
)


@dataclass
class DrillResult:
    doc: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return self.doc

    @property
    def exit_status(self) -> ExitStatus:
        # A drill that lost or duplicated acked messages failed, whatever else went right.
        bad = self.doc["acked_missing"] or self.doc["duplicates"] or self.doc["seq_gaps"]
        if bad and self.doc["data_loss_bound"].get("acked_messages") == 0:
            return ExitStatus.ERROR
        return ExitStatus.OK


def _render_drill(console: Any, doc: Mapping[str, Any]) -> None:
    from rich.table import Table

    t = Table(title=f"{doc['mode']} failover drill {doc['from_region']} -> {doc['to_region']}")
    t.add_column("measure")
    t.add_column("value", justify="right")
    rto = doc["rto_seconds"]
    t.add_row("RTO (failover start -> first ack from the new primary)", f"{rto}s" if rto else "-")
    t.add_row("failover command", f"{doc['failover_seconds']}s")
    t.add_row("acked messages", str(doc["acked"]))
    t.add_row("acked but missing afterwards", str(doc["acked_missing"]))
    t.add_row("duplicates", str(doc["duplicates"]))
    t.add_row("conversations with seq gaps", str(doc["seq_gaps"]))
    console.print(t)


@app.command("failover")
def failover(
    tctx: typer.Context,
    to_region: Annotated[
        str | None, typer.Option(help="Standby to promote (default: the only standby).")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Kill -9 the primary region first, then fail over with --force.")
    ] = False,
    pairs: Annotated[int, typer.Option(help="Sender/receiver client pairs.")] = 4,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Fail over while clients stream; report RTO, lost and duplicated messages."""
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> DrillResult:
        from cli.targets.local.drill import DRILL_MAX_LAG, drill
        from cli.targets.local.target import LocalTarget

        _local_only(ctx.cloud, "drill failover")
        if not 1 <= pairs <= 64:
            raise UsageError(f"--pairs must be between 1 and 64, got {pairs}")
        target = LocalTarget(StackFiles(ctx.stack_dir))
        cfg = target.files.load_config()
        standbys = [r.name for r in cfg.regions if r.role == "standby"]
        dest = to_region or (standbys[0] if len(standbys) == 1 else None)
        if dest is None:
            raise UsageError(
                "name the standby with --to-region",
                f"standbys: {', '.join(standbys) or 'none (deploy with --standby-region)'}",
            )
        # Every check the failover makes, before anything is written or killed.
        _, src, _, info = target.failover_plan(dest, force, DRILL_MAX_LAG)
        what = "kill -9 every process of" if force else "switch over from"
        ctx.out.confirm(
            f"Drill: {what} region {src.cfg.name} to {dest} under load?",
            details=[
                "this is a real failover of this stack",
                f"{pairs} drill user pair(s) write to their own conversations;"
                " remove them later with `imctl drill clean`",
                *info["steps"],
            ],
        )
        return DrillResult(
            asyncio.run(drill(target, dest, force=force, pairs=pairs, step=ctx.out.info))
        )

    run(ctx, "drill-failover", {"to_region": to_region, "force": force, "pairs": pairs}, body,
        _render_drill, mutating=True)  # fmt: skip


def _local_only(cloud: str, verb: str) -> None:
    if cloud != "local":
        raise UsageError(
            f"`imctl {verb}` is for the local target, not {cloud}",
            "in a cloud, rehearse with `imctl failover --dry-run --cloud ...`",
        )


def _render_clean(console: Any, doc: Mapping[str, Any]) -> None:
    console.print(
        f"removed {doc['conversations']} drill conversation(s) with {doc['messages']}"
        f" message(s) from stack {doc['stack']}"
    )


@app.command("clean")
def clean(
    tctx: typer.Context,
    run_id: Annotated[
        str | None,
        typer.Option("--run", help="Only this drill run (the `run` a drill reported)."),
    ] = None,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Delete what drills wrote: conversations between drill users, and nothing else.

    Example: imctl drill clean --run 1a2b3c4d --yes
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> DocResult:
        from cli.targets.local import drill as drills
        from cli.targets.local.target import LocalTarget

        _local_only(ctx.cloud, "drill clean")
        if run_id is not None and not re.fullmatch(r"[0-9a-f]{8}", run_id):
            raise UsageError(
                f"--run must be the 8 hex digits a drill reported, got {run_id!r}",
                "`imctl history` lists past drills",
            )
        target = LocalTarget(StackFiles(ctx.stack_dir))
        cfg = target.files.load_config()
        primary = next(r for r in target.regions(cfg) if r.cfg.name == cfg.primary.name)
        found = asyncio.run(drills.drill_traffic(primary.dsn(), run_id))
        doc: dict[str, Any] = {"stack": cfg.stack, "run": run_id, **found}
        if not found["conversations"]:
            return DocResult(doc)
        ctx.out.confirm(
            f"Delete {found['conversations']} drill conversation(s) with {found['messages']}"
            f" message(s) from stack {cfg.stack!r}?",
            details=["only direct conversations between two drill users (imctl-drill.*)"],
        )
        return DocResult({**doc, **asyncio.run(drills.clean(primary.dsn(), run_id))})

    run(ctx, "drill-clean", {"run": run_id}, body, _render_clean, mutating=True)
