"""imctl stack ls: every stack under $IMCTL_HOME, its target, regions, state and endpoint.

Nothing is asked over the network (cli/targets/inventory.py says where each state comes from);
``imctl status`` is the command that checks a stack's health.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import typer

from cli.hints import advice
from cli.options import (
    GROUP_EPILOG,
    CloudAccepted,
    NoColor,
    NoHeaders,
    Output,
    StackAccepted,
    Verbose,
    YesAccepted,
    make_context,
)
from cli.runner import run
from cli.tables import Cell, print_table
from cli.targets.inventory import StackList, list_stacks

app = typer.Typer(
    help="""The stacks under $IMCTL_HOME (default ~/.imctl).

    \b
    Examples:
      imctl stack ls
      imctl stack ls -o json
    """,
    no_args_is_help=True,
    epilog=GROUP_EPILOG,
    rich_markup_mode=None,
)

_STYLE = {"running": "green", "deployed": "green", "degraded": "yellow", "unknown": "yellow"}


def _regions(regions: list[Mapping[str, Any]]) -> str:
    # No spaces: a piped row splits into its columns on whitespace (awk '{print $3}').
    return ",".join(f"{r['name']}:{r['role']}" for r in regions) or "-"


def _render_ls(console: Any, doc: Mapping[str, Any], no_headers: bool = False) -> None:
    from rich.markup import escape

    if not doc["stacks"]:
        console.print(advice(f"no stacks in {escape(doc['home'])} (create one: imctl deploy)"))
        return
    rows = [
        [s["stack"], s["target"], _regions(s["regions"]),
         Cell(s["state"], _STYLE.get(s["state"], "")), s["endpoint"] or "-"]
        for s in doc["stacks"]
    ]  # fmt: skip
    print_table(
        console, ["stack", "target", "regions", "state", "endpoint"], rows, no_headers=no_headers
    )
    if no_headers or not console.is_terminal:
        return  # rows only: `... --no-headers | awk '{print $1}'` must print stack names alone
    for s in doc["stacks"]:
        if s["why"] and s["state"] in ("degraded", "unknown", "destroyed"):
            console.print(f"{escape(s['stack'])} ({s['target']}): {escape(s['why'])}")


@app.command("ls")
def ls(
    tctx: typer.Context,
    no_headers: NoHeaders = False,
    stack: StackAccepted = None,
    cloud: CloudAccepted = None,
    output: Output = None,
    yes: YesAccepted = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """List every stack: target, regions, state, endpoint; an empty list is not an error.

    State: running, degraded or stopped (local: from its processes); deployed, destroyed or
    unknown (a cloud: from the Pulumi state on this machine; the cloud itself is not asked:
    imctl status --cloud X does); destroyed (known from the journal). Why a stack is degraded,
    unknown or destroyed follows the table on a terminal (not with --no-headers); -o json has it.

    \b
    Examples:
      imctl stack ls
      imctl stack ls --no-headers | awk '{print $1}'
      imctl stack ls -o json | jq -r '.stacks[] | select(.state=="degraded") | .stack'
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> StackList:
        return list_stacks(ctx.env.home, ctx.env.environ)

    render = functools.partial(_render_ls, no_headers=no_headers)
    run(ctx, "stack ls", {}, body, render, mutating=False, create_stack=True)
