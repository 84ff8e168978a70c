"""imctl doctor: are the prerequisites for a target in place? Each failed check says how to fix it.

Read-only and offline: nothing is installed, imported (provider SDKs are only looked up with
find_spec) or contacted. Exit 10 when a required check fails; optional ones only warn. The
checks are the target's (cli/prereqs.py and each target's prereqs module).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import typer

from cli.options import Cloud, NoColor, Output, Stack, Verbose, YesAccepted, make_context
from cli.results import Result
from cli.runner import run
from cli.targets.choose import target_for

# --- the command ------------------------------------------------------------------------------


def _render_doctor(console: Any, doc: Mapping[str, Any]) -> None:
    from rich.markup import escape

    console.print(f"imctl doctor: target [bold]{escape(doc['cloud'])}[/bold]")
    for c in doc["checks"]:
        if c["ok"]:
            mark = "[green]✓[/green]"
        else:
            mark = "[red]✗[/red]" if c["required"] else "[yellow]![/yellow]"
        console.print(f"{mark} {escape(c['name'])}: {escape(c['detail'])}")
        if not c["ok"] and c["fix"]:
            console.print(f"    [cyan]fix:[/cyan] {escape(c['fix'])}")
    if doc["ok"]:
        console.print("[green]ready[/green]")
    else:
        console.print("[red]not ready[/red]: fix the checks marked ✗ (exit 10)")


def doctor(
    tctx: typer.Context,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: YesAccepted = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Check the prerequisites for a target (--cloud); each failure comes with a fix.

    Exit 10 when a required check fails; optional ones (kubectl) only warn.

    \b
    Examples:
      imctl doctor                  # this machine: PostgreSQL, NATS, ports, disk
      imctl doctor --cloud aws      # Pulumi CLI, the aws extras, credentials, buildx
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)
    args = {"cloud": ctx.cloud}

    def body() -> Result:
        return target_for(ctx).doctor(ctx.env.home)

    # create_stack=True: doctor runs before the first deploy; it only peeks at the config.
    run(ctx, "doctor", args, body, _render_doctor, mutating=False, create_stack=True)
