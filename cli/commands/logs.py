"""imctl logs: the im-server nodes' logs (``--follow`` keeps printing until Ctrl-C)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.errors import UsageError
from cli.options import Cloud, NoColor, Output, Stack, Verbose, Yes, make_context
from cli.runner import DocResult, run
from cli.state import StackFiles


def _render_logs(console: Any, doc: Mapping[str, Any]) -> None:
    for entry in doc["logs"]:
        for line in entry["lines"]:
            console.print(f"[dim]{entry['region']}/{entry['node']}[/dim] {line}", highlight=False)


def _tail(path: Path, lines: int) -> list[str]:
    from cli.targets.local import procs  # psutil: not for `imctl --help`

    if not lines or not path.exists():
        return []
    return procs.log_tail(path, lines).splitlines()


def logs(
    tctx: typer.Context,
    node: Annotated[
        str | None, typer.Option(help="Only this node (e.g. n1, or nats, postgres).")
    ] = None,
    region: Annotated[str | None, typer.Option(help="Only this region.")] = None,
    lines: Annotated[int, typer.Option("-n", "--lines", help="Lines per log.")] = 50,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new lines.")
    ] = False,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Show recent log lines of the stack's processes."""
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def sources() -> list[tuple[str, str, Path]]:
        from cli.targets.local.target import LocalTarget

        files = StackFiles(ctx.stack_dir)
        cfg = files.load_config()
        found = []
        for r in LocalTarget(files).regions(cfg):
            if region and r.cfg.name != region:
                continue
            named = {n: r.node_log(n) for n in r.node_ids()}
            named["nats"] = r.nats().log_file
            named["postgres"] = r.pg().log_file
            for name, path in named.items():
                if node is None and name in ("nats", "postgres"):
                    continue  # the im-server nodes unless asked
                if node is None or node == name:
                    found.append((r.cfg.name, name, path))
        if node is not None and not found:
            raise UsageError(f"no log for {node!r}", "see `imctl status` for node ids")
        return found

    def body() -> DocResult:
        if lines < 0:
            raise UsageError("--lines must be 0 or more")
        srcs = sources()
        doc: dict[str, Any] = {
            "stack": ctx.stack,
            "logs": [
                {"region": r, "node": n, "path": str(p), "lines": _tail(p, lines)}
                for r, n, p in srcs
            ],
        }
        if follow:
            if ctx.output == "json":
                raise UsageError("--follow streams lines; it has no JSON form", "drop -o json")
            for entry in doc["logs"]:
                for line in entry["lines"]:
                    ctx.env.stdout.write(f"{entry['region']}/{entry['node']} {line}\n")
            _follow(ctx, srcs)
        return DocResult(doc)

    run(ctx, "logs", {"node": node, "follow": follow}, body, _render_logs, mutating=False)


def _follow(ctx: Any, srcs: list[tuple[str, str, Path]]) -> None:
    offsets = {p: (p.stat().st_size if p.exists() else 0) for _, _, p in srcs}
    while True:  # ends with Ctrl-C (exit 130), like tail -f
        for r, n, p in srcs:
            if not p.exists():
                continue
            with p.open("rb") as fh:
                fh.seek(offsets[p])
                chunk = fh.read()
                offsets[p] = fh.tell()
            for line in chunk.decode(errors="replace").splitlines():
                ctx.env.stdout.write(f"{r}/{n} {line}\n")
            ctx.env.stdout.flush()
        time.sleep(0.25)
