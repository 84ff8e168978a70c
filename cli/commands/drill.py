"""imctl drill failover: a failover under a built-in client load, measured."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from cli.errors import ExitStatus, UsageError
from cli.options import GROUP_EPILOG, Cloud, NoColor, Output, Stack, Verbose, Yes, make_context
from cli.runner import run
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
        from cli.targets.local.drill import drill
        from cli.targets.local.target import LocalTarget

        target = LocalTarget(StackFiles(ctx.stack_dir))
        cfg = target.files.load_config()
        standbys = [r.name for r in cfg.regions if r.role == "standby"]
        dest = to_region or (standbys[0] if len(standbys) == 1 else None)
        if dest is None:
            raise UsageError("name the standby with --to-region", f"standbys: {standbys}")
        what = "kill -9 every process of" if force else "switch over from"
        ctx.out.confirm(
            f"Drill: {what} region {cfg.primary.name} to {dest} under load?",
            details=["this is a real failover of this stack"],
        )
        return DrillResult(
            asyncio.run(drill(target, dest, force=force, pairs=pairs, step=ctx.out.info))
        )

    run(ctx, "drill-failover", {"to_region": to_region, "force": force}, body, _render_drill,
        mutating=True)  # fmt: skip
