"""imctl deploy: create or reconcile a stack (idempotent: re-running changes only what drifted).

On a cloud it previews first and shows the plan before asking (``--preview`` stops there)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cli.hints import advice
from cli.options import Cloud, NoColor, Output, Stack, Verbose, Yes, make_context, parse_sets
from cli.results import Result
from cli.runner import run
from cli.targets.base import DeployRequest
from cli.targets.choose import target_for


def _render_deploy(console: Any, doc: Mapping[str, Any]) -> None:
    if doc["changed"]:
        verb = "deployed" if doc["created"] else "reconciled"
        console.print(f"[green]✓[/green] stack [bold]{doc['stack']}[/bold] {verb}")
    else:
        console.print(f"[green]✓[/green] stack [bold]{doc['stack']}[/bold]: no changes")
    for r in doc["regions"]:
        ready = sum(1 for n in r["nodes"] if n["ready"])
        nodes = (
            f"{ready}/{r['replicas']} im-server nodes ready"
            if r["role"] == "primary"
            else "no nodes until promoted"
        )
        console.print(
            f"  region {r['name']} ({r['role']}): {nodes},"
            f" PostgreSQL :{r['database']['port']}, NATS :{r['bus']['port']}"
        )
    from cli.commands.status import render_problems

    render_problems(console, doc.get("problems", []))
    for w in doc.get("warnings") or []:
        console.print(f"  warning: {w}", markup=False)
    console.print(f"\nendpoint  [bold]{doc['endpoint']}[/bold]")
    console.print(advice("connect   imctl token --user alice   # then hello with that token"))


def deploy(
    tctx: typer.Context,
    region: Annotated[
        str | None, typer.Option(metavar="NAME", help="Region name (local: a label).")
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option(metavar="N", help="im-server processes (default 2; kept on re-deploy)."),
    ] = None,
    port: Annotated[
        int | None, typer.Option(metavar="PORT", help="Endpoint port (default 8700).")
    ] = None,
    standby_region: Annotated[
        str | None,
        typer.Option(
            metavar="NAME", help="Also run a standby region (streaming replica), for failover."
        ),
    ] = None,
    replication: Annotated[
        str | None,
        typer.Option(metavar="sync|async", help="sync (default: no acked loss) or async."),
    ] = None,
    sync_policy: Annotated[
        str | None,
        typer.Option(
            "--sync-policy",
            metavar="wait|degrade",
            help="When the sync standby is lost: wait (writes stop; default) or degrade"
            " (async after --sync-degrade-after seconds, until it is back).",
        ),
    ] = None,
    sync_degrade_after: Annotated[
        float | None,
        typer.Option(
            "--sync-degrade-after",
            metavar="SECONDS",
            help="Seconds before degrade acts (default 5).",
        ),
    ] = None,
    archiving: Annotated[
        str | None,
        typer.Option(
            "--archiving",
            metavar="async|sync|off",
            help="Local: continuous backup for point-in-time restore. async (default): WAL"
            " archived as it is written; sync: a commit also waits for the archive (nothing"
            " acked is missing from it); off.",
        ),
    ] = None,
    keep_days: Annotated[
        float | None,
        typer.Option(
            "--keep-days",
            metavar="DAYS",
            help="Local: keep base backups and WAL to restore any time in the last DAYS"
            " (default 7).",
        ),
    ] = None,
    base_every: Annotated[
        float | None,
        typer.Option(
            "--base-every",
            metavar="HOURS",
            help="Local: a deploy or `imctl backup base` takes a base backup when the newest"
            " is older than this (default 24).",
        ),
    ] = None,
    backup_url: Annotated[
        str | None,
        typer.Option(
            "--backup-url",
            metavar="s3://BUCKET/PREFIX",
            help="Local: also copy base backups and WAL to this S3-compatible bucket (AWS_*"
            " variables; pip install 'imctl[backup]'); '' stops copying.",
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", metavar="KEY=VALUE", help="Clouds: override a stack config key (repeatable)."
        ),
    ] = None,
    preview: Annotated[
        bool,
        typer.Option(
            "--preview",
            help="Clouds: show what the deploy would create, update, replace and delete (asking"
            " the cloud), change nothing, exit 0.",
        ),
    ] = False,
    refuse_replace: Annotated[
        bool,
        typer.Option(
            "--refuse-replace",
            help="Clouds: exit 10 before applying anything if the preview replaces or deletes a"
            " stateful resource (database, bucket, cluster, key, zone).",
        ),
    ] = False,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Deploy the IM server, or bring an existing stack back to what it should be.

    Idempotent: running it again starts only what is missing or dead and changes nothing that
    already matches. On a cloud it previews first and asks before applying.

    \b
    Examples:
      imctl deploy                                  # this machine, ws://127.0.0.1:8700/ws
      imctl deploy --region a --standby-region b    # add a standby region, for failover
      imctl deploy --cloud aws --region us-east-1 --preview   # what would change; changes nothing
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)
    args = {
        "region": region,
        "replicas": replicas,
        "port": port,
        "standby_region": standby_region,
        "replication": replication,
        "sync_policy": sync_policy,
        "sync_degrade_after": sync_degrade_after,
        "archiving": archiving,
        "keep_days": keep_days,
        "base_every": base_every,
        "backup_url": backup_url,
        "preview": preview,
        "refuse_replace": refuse_replace,
    }

    def show(plan: Mapping[str, Any]) -> None:
        # Before the question, on stderr: stdout carries the result only.
        ctx.out.aside(plan, render_preview)

    def body() -> Result:
        target = target_for(
            ctx, port=port, replication=replication, sync_policy=sync_policy,
            sync_degrade_after=sync_degrade_after, archiving=archiving, keep_days=keep_days,
            base_every=base_every, backup_url=backup_url, set=set_, preview=preview,
            refuse_replace=refuse_replace,
        )  # fmt: skip
        req = DeployRequest(
            region, standby_region, replicas, port, replication, sync_policy, sync_degrade_after,
            archiving, keep_days, base_every, backup_url,
            parse_sets(set_ or []), preview_only=preview, refuse_replace=refuse_replace,
            show_preview=None if ctx.json else show,
        )  # fmt: skip
        return target.deploy(req, ctx.operator)

    run(ctx, "deploy", args, body, _render, mutating=True, create_stack=True)


_SIGN = {"create": "+", "update": "~", "replace": "+-", "delete": "-", "import": "="}
_STYLE = {"create": "green", "update": "yellow", "replace": "magenta", "delete": "red"}


def _rank(op: str) -> int:
    order = [*_SIGN, "same"]
    return order.index(op) if op in order else len(order)


def _counted(changes: Mapping[str, int]) -> str:
    ops = sorted((op for op in changes if changes[op]), key=_rank)
    words = [f"{changes[op]} {'unchanged' if op == 'same' else 'to ' + op}" for op in ops]
    return ", ".join(words) or "no changes"


def render_preview(console: Any, doc: Mapping[str, Any]) -> None:
    """A cloud preview: every planned change by resource, grouped create, update, replace,
    delete; a stateful resource replaced or deleted in bold red, with why."""
    from rich.markup import escape

    new = " (new stack)" if doc.get("new_stack") else ""
    console.print(
        f"[bold]Preview of {doc['cloud']} stack {escape(doc['stack'])}{new}:[/bold]"
        f" {_counted(doc.get('changes') or {})}"
    )
    steps = sorted(doc.get("steps") or [], key=lambda s: _rank(s["op"]))
    losses = 0
    for step in steps:
        op = step["op"]
        line = f"{_SIGN.get(op, '?'):>2} {op:<7} {escape(step['type'])} {escape(step['name'])}"
        if op != "create":
            line += f": {escape(step['why'])}"
        if step["stateful"] and op in ("replace", "delete"):
            losses += 1
            console.print(f"[bold red]! {line} (stateful)[/bold red]")
        else:
            console.print(f"  [{_STYLE.get(op, 'default')}]{line}[/]")
    if doc.get("config_changed"):
        console.print(f"config to write: {', '.join(doc['config_changed'])}")
    if losses:
        console.print(
            advice(
                f"[bold red]{losses} stateful resource(s) replaced or deleted (marked !): the"
                " data does not move to a replacement.[/bold red] Take a snapshot first"
                " (imctl snapshot create); --refuse-replace stops a deploy here (exit 10)."
            )
        )


def _render(console: Any, doc: Mapping[str, Any]) -> None:
    if "regions" in doc:  # the local target: each region's processes
        _render_deploy(console, doc)
        return
    if doc.get("operation") == "preview":  # --preview
        render_preview(console, doc)
        console.print("nothing was changed; deploy without --preview to apply")
        return
    res = doc.get("resources", {})
    console.print(
        f"[green]✓[/green] {doc['cloud']} stack [bold]{doc['stack']}[/bold]: {doc['result']},"
        f" {res.get('done', 0)}/{res.get('total', 0)} resources in"
        f" {doc.get('duration_seconds') or 0:.0f}s; {_counted(doc.get('changes') or {})}"
    )
    outputs = doc.get("outputs", {})
    if outputs.get("endpoint"):  # the stack says how clients connect (wss:// since issue 13)
        console.print(f"endpoint  {outputs['endpoint']}")
    elif outputs.get("dns_name"):
        console.print(f"endpoint  ws://{outputs['dns_name']}/ws")
