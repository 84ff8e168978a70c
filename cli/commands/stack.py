"""imctl stack ls: every stack under $IMCTL_HOME, its target, regions, state and endpoint.

Nothing is asked over the network (cli/targets/inventory.py says where each state comes from);
``imctl status`` is the command that checks a stack's health.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import typer

from cli.options import (
    GROUP_EPILOG,
    CloudAccepted,
    NoColor,
    Output,
    StackAccepted,
    Verbose,
    YesAccepted,
    make_context,
)
from cli.runner import run
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
    return ", ".join(f"{r['name']} ({r['role']})" for r in regions) or "-"


def _render_ls(console: Any, doc: Mapping[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    if not doc["stacks"]:
        console.print(f"no stacks in {escape(doc['home'])} (create one: imctl deploy)")
        return
    table = Table("stack", "target", "regions", "state")
    # whole, on one line, even in a narrow terminal: it is there to be copied
    widest = max(len(s["endpoint"] or "-") for s in doc["stacks"])
    table.add_column("endpoint", no_wrap=True, min_width=widest)
    for s in doc["stacks"]:
        style = _STYLE.get(s["state"])
        state = f"[{style}]{s['state']}[/{style}]" if style else s["state"]
        table.add_row(escape(s["stack"]), s["target"], escape(_regions(s["regions"])), state,
                      escape(s["endpoint"] or "-"))  # fmt: skip
    console.print(table)
    for s in doc["stacks"]:
        if s["why"] and s["state"] in ("degraded", "unknown"):
            console.print(f"{escape(s['stack'])} ({s['target']}): {escape(s['why'])}")


@app.command("ls")
def ls(
    tctx: typer.Context,
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
    imctl status --cloud X does); destroyed (known from the journal).

    \b
    Examples:
      imctl stack ls
      imctl stack ls -o json | jq -r '.stacks[] | select(.state=="degraded") | .stack'
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> StackList:
        return list_stacks(ctx.env.home, ctx.env.environ)

    run(ctx, "stack ls", {}, body, _render_ls, mutating=False, create_stack=True)
