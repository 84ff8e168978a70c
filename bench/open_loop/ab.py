"""A/B of im-server variants on the open-loop shape, interleaved in one run.

On a shared machine two runs minutes apart differ more than most changes do, so the variants are
measured side by side: every variant's node is started (one PostgreSQL for all of them, a
database each, everything pinned to the server core), its sessions connected and its
conversations warmed up, and then the steps alternate between variants (ABBA order per
repetition). The node not being measured is SIGSTOPped, so its health probe, timers and idle
sessions cost nothing while another is measured.

A variant is ``name[@code_dir]:KEY=VALUE,...``: ``IM_*`` keys go to the node's environment,
``pg.NAME`` keys are set with ALTER SYSTEM (reloadable settings only) before each of its steps
and reset after, and ``code_dir`` runs another tree's ``im_server`` (e.g. a ``git archive`` of
the baseline commit).

Per step, besides the harness's latencies and CPU: commits of sends and messages per commit (the
batcher's histogram, from /metrics), transactions per second of the variant's database, WAL
records, bytes and fsyncs (pg_stat_wal, pg_stat_io), checkpoints. PostgreSQL publishes its
counters at most once a second, so they are sampled after a second of quiet before and after
each step; per-second figures divide by the step's sending time (lead-in + window).

    python -m bench.open_loop.ab --variant base@/tmp/base --variant new --rates 1000,2500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench import raise_fd_limit
from bench.open_loop.driver import Generator, step_stats
from bench.open_loop.run import Reaper, costs
from bench.open_loop.systems import ImSystem, Postgres, Sample
from bench.stack_compare import wait_quiet

QUIET = 0.3
SETTLE_S = 2.0
STATS_FLUSH_S = 1.1  # PostgreSQL backends publish their counters at most once a second


@dataclass
class Variant:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    pg: dict[str, str] = field(default_factory=dict)
    code: Path | None = None
    system: ImSystem | None = None
    gen: Generator | None = None
    db: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)


def parse_variant(spec: str) -> Variant:
    head, _, tail = spec.partition(":")
    name, _, code = head.partition("@")
    v = Variant(name, code=Path(code).resolve() if code else None)
    for kv in filter(None, tail.split(",")):
        k, _, val = kv.partition("=")
        if k.startswith("pg."):
            v.pg[k[3:]] = val
        else:
            v.env[k] = val
    return v


async def pg_counters(conn: asyncpg.Connection, db: str) -> dict[str, float]:
    row = await conn.fetchrow(
        "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = $1) AS xact,"
        " w.wal_records, w.wal_bytes, w.wal_buffers_full,"
        " (SELECT coalesce(sum(fsyncs), 0) FROM pg_stat_io WHERE object = 'wal') AS wal_fsyncs,"
        " (SELECT coalesce(sum(writes), 0) FROM pg_stat_io WHERE object = 'wal') AS wal_writes,"
        " (SELECT num_timed + num_requested FROM pg_stat_checkpointer) AS checkpoints"
        " FROM pg_stat_wal w",
        db,
    )
    return {k: float(v or 0) for k, v in dict(row).items()}


async def batch_counters(http: aiohttp.ClientSession, port: int) -> tuple[float, float]:
    """(batches, messages) committed by the node so far."""
    async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    n = s = 0.0
    for line in text.splitlines():
        if line.startswith("im_send_batch_size_count"):
            n = float(line.split()[-1])
        elif line.startswith("im_send_batch_size_sum"):
            s = float(line.split()[-1])
    return n, s


def start_profilers(
    a: argparse.Namespace, v: Variant, rate: float
) -> list[subprocess.Popen[bytes]]:
    """Profilers over the measured window, outputs in --profile-dir: py-spy on the node
    (``pyspy``), perf on the whole server core, kernel and PostgreSQL included (``perf``), the
    node's syscalls (``strace``; it slows the node, so not in the same run as figures)."""
    assert v.system is not None
    out = Path(a.profile_dir)
    out.mkdir(parents=True, exist_ok=True)
    pid = str(v.system.nodes[0].proc.pid if v.system.nodes[0].proc else 0)
    secs = max(1, int(a.duration) - 1)
    tag = f"{v.name}-{int(rate)}-{len(v.rows)}"
    cmds = {
        "pyspy": [str(Path(sys.executable).parent / "py-spy"), "record", "-p", pid, "-d",
                  str(secs), "-r", "200", "-f", "raw", "-o", str(out / f"pyspy-{tag}.txt")],
        "perf": ["perf", "record", "-C", a.server_cpu, "-F", "499", "-g", "-o",
                 str(out / f"perf-{tag}.data"), "--", "sleep", str(secs)],
        "strace": ["timeout", "-s", "INT", str(secs), "strace", "-c", "-f", "-p", pid,
                   "-o", str(out / f"strace-{tag}.txt")],
    }  # fmt: skip
    procs = []
    for kind in a.profile.split(","):
        log = (out / f"{kind}-{tag}.log").open("wb")
        procs.append(subprocess.Popen(cmds[kind], stdout=log, stderr=log))
    return procs


def signal_nodes(v: Variant, sig: int, a: argparse.Namespace) -> None:
    if a.no_stop:
        return
    assert v.system is not None
    for n in v.system.nodes:
        if n.proc is not None and n.proc.returncode is None:
            os.kill(n.proc.pid, sig)


async def set_pg(conn: asyncpg.Connection, values: dict[str, str], reset: set[str]) -> None:
    for k in sorted(reset - set(values)):
        await conn.execute(f"ALTER SYSTEM RESET {k}")
    for k, val in values.items():
        literal = "'" + val.replace("'", "''") + "'"
        await conn.execute(f"ALTER SYSTEM SET {k} = {literal}")
    await conn.execute("SELECT pg_reload_conf()")


async def measure(
    v: Variant,
    rate: float,
    a: argparse.Namespace,
    admin: asyncpg.Connection,
    http: aiohttp.ClientSession,
    all_pg: set[str],
    cpus: tuple[set[int], set[int]],
) -> dict[str, Any]:
    assert v.system is not None and v.gen is not None
    system, gen = v.system, v.gen
    port = system.nodes[0].port
    await set_pg(admin, v.pg, all_pg)
    signal_nodes(v, signal.SIGCONT, a)
    try:
        # A node stopped for longer than aiohttp's 30 s heartbeat pings all its sessions at
        # once when it resumes: a burst no running node sees, let it pass.
        await asyncio.sleep(SETTLE_S)
        busy = await wait_quiet(a.quiet_wait, QUIET) if a.quiet_wait > 0 else None
        await asyncio.sleep(STATS_FLUSH_S)
        pg0, b0 = await pg_counters(admin, v.db), await batch_counters(http, port)
        edges: dict[str, Sample] = {}

        profilers: list[subprocess.Popen[bytes]] = []

        def on_edge(edge: str) -> None:
            edges[edge] = system.sample()
            if edge == "start" and a.profile:
                profilers.extend(start_profilers(a, v, rate))

        errors_before = dict(gen.errors)
        st = await gen.step(rate, a.lead_in, a.duration, a.drain, on_edge)
        for prof in profilers:
            await asyncio.to_thread(prof.wait, 30)
        await asyncio.sleep(STATS_FLUSH_S)
        pg1, b1 = await pg_counters(admin, v.db), await batch_counters(http, port)
    finally:
        signal_nodes(v, signal.SIGSTOP, a)
    row = step_stats(st, a.duration)
    row["errors"] = {k: n - errors_before.get(k, 0) for k, n in gen.errors.items()}
    row["errors"] = {k: n for k, n in row["errors"].items() if n}
    row |= costs(edges["start"], edges["end"], st, *cpus)
    span = a.lead_in + a.duration
    d = {k: pg1[k] - pg0[k] for k in pg0}
    batches, msgs = b1[0] - b0[0], b1[1] - b0[1]
    row |= {
        "variant": v.name,
        "machine_busy_before": busy,
        "loadavg": round(os.getloadavg()[0], 2),
        "send_batches_per_s": round(batches / span, 1),
        "msgs_per_batch": round(msgs / batches, 2) if batches else None,
        "xact_per_s": round(d["xact"] / span, 1),
        "wal_fsyncs_per_s": round(d["wal_fsyncs"] / span, 1),
        "wal_writes_per_s": round(d["wal_writes"] / span, 1),
        "wal_kib_per_msg": round(d["wal_bytes"] / 1024 / msgs, 3) if msgs else None,
        "wal_records_per_msg": round(d["wal_records"] / msgs, 2) if msgs else None,
        "checkpoints": d["checkpoints"],
    }
    v.rows.append(row)
    return row


def line(r: dict[str, Any]) -> str:
    oc = r.get("others_cores", {})
    return (
        f"{r['variant']:>10} {r['offered_per_s']:>7.0f}/s del {r['delivered_pct']:6.2f}%"
        f" p50 {r['deliver']['p50_ms']:7.2f} p99 {r['deliver']['p99_ms']:8.2f} ms"
        f" srv {r.get('server_us_per_msg')} pg {r.get('postgres_us_per_msg')} us/msg"
        f" | {r['send_batches_per_s']} commits/s x {r['msgs_per_batch']} msgs,"
        f" {r['xact_per_s']} xact/s, {r['wal_fsyncs_per_s']} wal fsync/s"
        f" | others core0 {oc.get('server_core')} core1 {oc.get('client_core')}"
        f" load {r['loadavg']} {r['errors'] or ''}"
    )


KEYS: tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...] = (
    ("p50_ms", lambda r: r["deliver"]["p50_ms"]),
    ("p99_ms", lambda r: r["deliver"]["p99_ms"]),
    ("ack_p99_ms", lambda r: r["ack"]["p99_ms"]),
    ("delivered_pct", lambda r: r["delivered_pct"]),
    ("server_us", lambda r: r.get("server_us_per_msg")),
    ("pg_us", lambda r: r.get("postgres_us_per_msg")),
    ("server_plus_pg_us", lambda r: (r.get("server_us_per_msg") or 0)
        + (r.get("postgres_us_per_msg") or 0)),
    ("commits_per_s", lambda r: r["send_batches_per_s"]),
    ("msgs_per_commit", lambda r: r["msgs_per_batch"]),
    ("wal_fsyncs_per_s", lambda r: r["wal_fsyncs_per_s"]),
    ("others_core0", lambda r: r.get("others_cores", {}).get("server_core")),
)  # fmt: skip


def summary(variants: list[Variant], rates: list[float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rate in rates:
        per: dict[str, dict[str, float | None]] = {}
        for v in variants:
            rows = [r for r in v.rows if r["offered_per_s"] == rate]
            med: dict[str, float | None] = {}
            for key, get in KEYS:
                vals = [x for x in (get(r) for r in rows) if x is not None]
                med[key] = round(statistics.median(vals), 3) if vals else None
            per[v.name] = med
        base = per[variants[0].name]
        for v in variants[1:]:
            ratios: dict[str, float | None] = {}
            for key, _ in KEYS:
                b, c = base.get(key), per[v.name].get(key)
                ratios[key] = round(c / b, 3) if b and c is not None else None
            per[v.name + "/" + variants[0].name] = ratios
        out[str(int(rate))] = per
    return out


async def amain(a: argparse.Namespace) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    raise_fd_limit()
    server_cpus, client_cpus = {int(a.server_cpu)}, {int(a.client_cpu)}
    os.sched_setaffinity(0, client_cpus)
    variants = [parse_variant(s) for s in a.variant]
    all_pg = {k for v in variants for k in v.pg}
    tmp = Path(tempfile.mkdtemp(prefix="imctl-ab-"))
    tmp.chmod(0o711)
    pg = Postgres(tmp, server_cpus)
    reaper = Reaper()
    reaper.register(pg=str(pg.data_dir))
    reaper.register(tmp=str(tmp))
    doc: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "argv": sys.argv,
        "loadavg_start": os.getloadavg(),
    }
    names = [f"u{i}" for i in range(a.connections)]
    admin: asyncpg.Connection | None = None
    try:
        async with asyncio.timeout(a.budget), aiohttp.ClientSession() as http:
            for i, v in enumerate(variants):
                sub = tmp / f"v{i}"
                sub.mkdir()
                sub.chmod(0o711)
                v.system = ImSystem(1, sub, pg, a.connections, server_cpus, v.env, v.code)
                await v.system.start()
                for pid in v.system.server_pids():
                    reaper.process(pid)
                v.db = v.system.env["IM_DATABASE_URL"].rsplit("/", 1)[1]
                v.gen = Generator(
                    v.system.url, v.system.credentials(names), names, a.senders, a.peers
                )
                c = await v.gen.connect(64)
                w = await v.gen.warm(a.warm_rate, 30)
                print(f"{v.name}: {c} warm {w}", file=sys.stderr)
                signal_nodes(v, signal.SIGSTOP, a)
            assert pg.pg is not None
            admin = await asyncpg.connect(pg.pg.dsn("postgres"))
            for rep in range(a.reps):
                for rate in a.rates:
                    order = variants if rep % 2 == 0 else variants[::-1]
                    for v in order:
                        row = await measure(
                            v, rate, a, admin, http, all_pg, (server_cpus, client_cpus)
                        )
                        print(line(row), file=sys.stderr)
    finally:
        for v in variants:
            with contextlib.suppress(Exception):
                signal_nodes(v, signal.SIGCONT, a)
            if v.gen is not None:
                with contextlib.suppress(Exception):
                    await v.gen.close(5)
            if v.system is not None:
                with contextlib.suppress(Exception):
                    await v.system.stop()
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        reaper.close()
    doc["loadavg_end"] = os.getloadavg()
    doc["summary"] = summary(variants, a.rates)
    doc["rows"] = [r for v in variants for r in v.rows]
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.open_loop.ab")
    p.add_argument("--variant", action="append", required=True, help="name[@dir]:K=V,...")
    p.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[1000.0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--lead-in", type=float, default=1.0)
    p.add_argument("--drain", type=float, default=3.0)
    p.add_argument("--quiet-wait", type=float, default=2.0)
    p.add_argument("--connections", type=int, default=5000)
    p.add_argument("--senders", type=int, default=500)
    p.add_argument("--peers", type=int, default=5)
    p.add_argument("--warm-rate", type=float, default=1000.0)
    p.add_argument("--server-cpu", default="0")
    p.add_argument("--client-cpu", default="1")
    p.add_argument("--budget", type=float, default=600.0, help="whole run, seconds")
    p.add_argument("--profile", default="", help="pyspy,perf,strace over each window")
    p.add_argument("--profile-dir", default="/tmp/imctl-ab-profile")
    p.add_argument(
        "--no-stop",
        action="store_true",
        help="leave the idle nodes running: what happens over tens of seconds (timers that a"
        " stop would bunch up) stays as it is, at the cost of their idle load",
    )
    p.add_argument("--json")
    a = p.parse_args(argv)
    import uvloop

    t0 = time.monotonic()
    try:
        doc = uvloop.run(amain(a))
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("interrupted: everything this run started was stopped", file=sys.stderr)
        return 130
    doc["elapsed_s"] = round(time.monotonic() - t0, 1)
    if a.json:
        Path(a.json).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    print(orjson.dumps(doc["summary"], option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
