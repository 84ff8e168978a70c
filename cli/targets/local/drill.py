"""A failover drill: real clients stream through the global endpoint while the primary role
moves, then every acked message is looked up in the new primary.

RTO here is what a user sees: from the start of the failover to the first ack served by a node
of the new primary region.

Drill traffic is written by drill users only (``imctl-drill.<run>.s<i>`` to
``imctl-drill.<run>.r<i>``, a prefix ``imctl token`` refuses), in direct conversations between
two of them, so ``imctl drill clean`` can remove exactly that and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets as secrets_mod
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from cli.errors import ExitStatus, UsageError
from cli.progress import Note, Step
from cli.results import DocResult, Result
from cli.state import StackConfig
from cli.targets.base import Operator
from cli.targets.local.drill_users import conversations_like, drill_users
from cli.targets.local.target import LocalTarget
from im_server import auth
from im_server.client import Ack, Client, Message

DRILL_MAX_LAG = 16 * 1024 * 1024


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


@dataclass
class _Load:
    acks: list[tuple[float, str | None, Ack]] = field(default_factory=list)
    seen: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    errors: int = 0


async def _sender(c: Client, peer: str, load: _Load, stop: asyncio.Event) -> None:
    i = 0
    while not stop.is_set():
        try:
            ack = await c.send({"drill": i}, to=peer, timeout=60)
        except Exception:
            load.errors += 1
            continue
        load.acks.append((time.monotonic(), c.node, ack))
        i += 1
        await asyncio.sleep(0.005)


async def _receiver(name: str, c: Client, load: _Load, stop: asyncio.Event) -> None:
    got = load.seen.setdefault(name, [])
    while not stop.is_set() or not c.messages.empty():
        try:
            m: Message = await asyncio.wait_for(c.messages.get(), 0.2)
        except TimeoutError:
            continue
        got.append((m.conv, m.seq))


def kill_region(target: LocalTarget, cfg: StackConfig, region: str) -> list[int]:
    """kill -9 every process of a region: what losing it looks like."""
    r = next(x for x in target.regions(cfg) if x.cfg.name == region)
    return r.fence(kill_db=True)


async def drill(
    target: LocalTarget,
    to_region: str,
    *,
    force: bool,
    pairs: int = 4,
    warmup: float = 1.0,
    after: float = 1.0,
    step: Note,
    phase: Step,
) -> dict[str, Any]:
    """Run a drill. The caller has checked the plan (``target.failover_plan``): nothing here
    may be the first to find out that the failover cannot happen."""
    cfg = target.files.load_config()
    secrets = target.files.load_secrets()
    url = target.endpoint(cfg)
    from_region = cfg.primary.name
    run_id = secrets_mod.token_hex(4)
    users = drill_users(run_id, pairs)
    load = _Load()
    stop = asyncio.Event()
    clients: list[Client] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for s_user, r_user in users:
            s = Client(url, auth.mint(secrets.jwt_secret, s_user, 3600), backoff_max=0.5)
            r = Client(url, auth.mint(secrets.jwt_secret, r_user, 3600), backoff_max=0.5)
            clients += [s, r]
            await s.connect()
            await r.connect()
            tasks.append(asyncio.create_task(_sender(s, r_user, load, stop)))
            tasks.append(asyncio.create_task(_receiver(r_user, r, load, stop)))
        step(f"{pairs} clients streaming through {url}")
        await asyncio.sleep(warmup)
        t0 = time.monotonic()
        if force:
            step(f"losing region {from_region}: kill -9 of all its processes")
            kill_region(target, cfg, from_region)
        info = await asyncio.to_thread(
            target.failover_sequence().run,
            to_region,
            force=force,
            max_lag=DRILL_MAX_LAG,
            confirm=lambda _: None,
            step=step,
            phase=phase,
        )
        failover_s = time.monotonic() - t0
        await asyncio.sleep(after)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 90)
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        for c in clients:
            with contextlib.suppress(Exception):
                await c.close()

    prefix = f"{to_region}-"
    served = [t for t, node, _ in load.acks if t >= t0 and node and node.startswith(prefix)]
    rto = round(min(served) - t0, 3) if served else None
    primary = next(r for r in target.regions(target.files.load_config()) if r.cfg.name == to_region)
    conn = await asyncpg.connect(primary.dsn())
    try:
        rows = await conn.fetch(
            "SELECT conv, seq FROM messages WHERE conv LIKE $1 ORDER BY conv, seq",
            conversations_like(run_id),
        )
    finally:
        await conn.close()
    stored = {(r["conv"], r["seq"]) for r in rows}
    by_conv: dict[str, list[int]] = {}
    for r in rows:
        by_conv.setdefault(r["conv"], []).append(r["seq"])
    acked = [(a.conv, a.seq) for _, _, a in load.acks]
    observed_dups = sum(len(v) - len(set(v)) for v in load.seen.values())
    return {
        "stack": cfg.stack,
        "run": run_id,
        "drill_users": [u for pair in users for u in pair],
        "drill_conversations": len(by_conv),
        "clean_with": f"imctl drill clean --run {run_id} -s {cfg.stack}",
        "from_region": from_region,
        "to_region": to_region,
        "mode": "forced" if force else "planned",
        "rto_seconds": rto,
        "failover_seconds": round(failover_s, 3),
        "acked": len(acked),
        "acked_missing": sum(a not in stored for a in acked),
        "duplicates": (len(acked) - len(set(acked))) + observed_dups,
        "seq_gaps": sum(s != list(range(1, len(s) + 1)) for s in by_conv.values()),
        "send_errors": load.errors,
        "data_loss_bound": info["data_loss_bound"],
    }


async def drill_traffic(dsn: str, run: str | None) -> dict[str, int]:
    """How many drill conversations and messages there are (of one run, or of all)."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS convs, coalesce(sum(c.last_seq), 0) AS messages"
            " FROM conversations c WHERE c.id LIKE $1",
            conversations_like(run),
        )
    finally:
        await conn.close()
    return {"conversations": int(row["convs"]), "messages": int(row["messages"])}


async def clean(dsn: str, run: str | None) -> dict[str, int]:
    """Delete drill conversations (members and messages go with them), and nothing else: a
    conversation is a drill's only if it is the direct conversation of two drill users."""
    # Bounded: with writes blocked (a lost synchronous standby) the DELETE would wait forever.
    conn = await asyncpg.connect(dsn, command_timeout=60)
    try:
        async with conn.transaction():
            rows = await conn.fetch(
                "DELETE FROM conversations WHERE id LIKE $1 RETURNING last_seq",
                conversations_like(run),
            )
    finally:
        await conn.close()
    return {"conversations": len(rows), "messages": sum(int(r["last_seq"]) for r in rows)}


def run(
    target: LocalTarget, to_region: str | None, force: bool, pairs: int, op: Operator
) -> Result:
    """``imctl drill failover``: every check the failover makes, then the question, then the
    drill. Nothing is written or killed before the plan has passed."""
    if not 1 <= pairs <= 64:
        raise UsageError(f"--pairs must be between 1 and 64, got {pairs}")
    cfg = target.files.load_config()
    standbys = [r.name for r in cfg.regions if r.role == "standby"]
    dest = to_region or (standbys[0] if len(standbys) == 1 else None)
    if dest is None:
        raise UsageError(
            "name the standby with --to-region",
            f"standbys: {', '.join(standbys) or 'none (deploy with --standby-region)'}",
        )
    _, src, _, info = target.failover_sequence().plan(dest, force, DRILL_MAX_LAG)
    what = "kill -9 every process of" if force else "switch over from"
    op.confirm(
        f"Drill: {what} region {src.cfg.name} to {dest} under load?",
        details=[
            "this is a real failover of this stack",
            f"{pairs} drill user pair(s) write to their own conversations;"
            " remove them later with `imctl drill clean`",
            *info["steps"],
        ],
    )
    kind = "forced" if force else "planned"
    with op.step(f"drill: {kind} failover {src.cfg.name} -> {dest} under load"):
        run = drill(target, dest, force=force, pairs=pairs, step=op.note, phase=op.step)
        doc = asyncio.run(run)
    return DrillResult(doc)


def clean_run(target: LocalTarget, run_id: str | None, op: Operator) -> Result:
    """``imctl drill clean``: count, ask, then delete the drill conversations of one run (or of
    all runs)."""
    if run_id is not None and not re.fullmatch(r"[0-9a-f]{8}", run_id):
        raise UsageError(
            f"--run must be the 8 hex digits a drill reported, got {run_id!r}",
            "`imctl history` lists past drills",
        )
    cfg = target.files.load_config()
    primary = next(r for r in target.regions(cfg) if r.cfg.name == cfg.primary.name)
    found = asyncio.run(drill_traffic(primary.dsn(), run_id))
    doc: dict[str, Any] = {"stack": cfg.stack, "run": run_id, **found}
    if not found["conversations"]:
        return DocResult(doc)
    op.confirm(
        f"Delete {found['conversations']} drill conversation(s) with {found['messages']}"
        f" message(s) from stack {cfg.stack!r}?",
        details=["only direct conversations between two drill users (imctl-drill.*)"],
    )
    return DocResult({**doc, **asyncio.run(clean(primary.dsn(), run_id))})
