"""Orchestration: start each system, drive the sweep, account CPU and memory, judge, print."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psutil  # type: ignore[import-untyped, unused-ignore]

from bench import raise_fd_limit
from bench.open_loop import report
from bench.open_loop.driver import BODY_BYTES, Generator, Step, step_stats
from bench.open_loop.systems import (
    CONN_HEADROOM,
    ImSystem,
    Postgres,
    RelaySystem,
    Sample,
    System,
    affinities,
    rss_kib,
)
from bench.stack_compare import versions, wait_quiet

ROOT = Path(__file__).resolve().parents[2]
SETUPS = ("relay", "im1", "im2")
# Up to 15,000: the bare relay's knee on a quiet machine is about 10,000, and a knee at the
# sweep's top rate is only a lower bound.
DEFAULT_RATES = "500,1000,2500,5000,7500,10000,12500,15000"
# Before each step, wait (at most --quiet-wait s) until the whole machine uses less than this
# many cores: the box is shared, and a step next to someone's test suite measures the suite.
QUIET = 0.3
# The hardening issue's per-session limit (IM_RATE_PER_SEC), left on for the run: a sweep that
# asks more of one sender would be measuring rate_limited answers.
SESSION_RATE_LIMIT = 200.0
START_S = 60.0  # bound on starting a system (initdb, migrate, nodes ready)
CONNECT_S = 120.0  # bound on opening every session
WARM_S = 30.0  # bound on the conversation warm-up


def budget_s(a: argparse.Namespace) -> float:
    """Upper bound of the whole run; it is cancelled past it."""
    per_step = float(a.quiet_wait + a.lead_in + a.duration + a.drain + 1.0)
    per_setup = START_S + CONNECT_S + WARM_S + len(a.rates) * per_step + 30.0
    return len(a.setups) * per_setup


def costs(
    s0: Sample, s1: Sample, step: Step, server_cpus: set[int] | None, client_cpus: set[int] | None
) -> dict[str, Any]:
    """CPU of each process group over the window, per message delivered in it, and what the
    rest of the machine took from each side's cores."""
    wall = max(1e-6, s1.t - s0.t)
    n = step.delivered_in_window
    out: dict[str, Any] = {}
    ours_server_side = 0.0
    for g, v1 in s1.groups.items():
        d = v1 - s0.groups.get(g, v1)
        ours_server_side += d
        out[f"{g}_cores"] = round(d / wall, 3)
        out[f"{g}_us_per_msg"] = round(d / n * 1e6, 1) if n else None
    busy = {c: (s1.cores[c] - s0.cores.get(c, s1.cores[c])) / wall for c in s1.cores}
    out["core_busy"] = {str(c): round(v, 3) for c, v in sorted(busy.items())}
    if server_cpus is None or client_cpus is None:
        return out  # unpinned: nothing tells whose core another process took
    loadgen_cores = step.cpu_s / wall
    server_busy = sum(busy.get(c, 0.0) for c in server_cpus)
    client_busy = sum(busy.get(c, 0.0) for c in client_cpus)
    # Includes softirq time for loopback TCP, which the kernel charges to no process.
    out["others_cores"] = {
        "server_core": round(max(0.0, server_busy - ours_server_side / wall), 3),
        "client_core": round(max(0.0, client_busy - loadgen_cores), 3),
    }
    return out


class Reaper:
    """The child that stops what this run started should this process die uncleanly
    (``bench.open_loop.reaper``); its own session, so a signal to our group spares it."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.open_loop.reaper"],
            stdin=subprocess.PIPE,
            cwd=ROOT,
            start_new_session=True,
        )

    def register(self, **item: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps(item) + b"\n")
        self.proc.stdin.flush()

    def process(self, pid: int) -> None:
        with contextlib.suppress(psutil.Error):
            self.register(pid=pid, create_time=psutil.Process(pid).create_time())

    def close(self) -> None:
        """After our own cleanup: it finds nothing left and exits."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def run_setup(
    system: System,
    a: argparse.Namespace,
    server_cpus: set[int] | None,
    client_cpus: set[int] | None,
    reaper: Reaper | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    names = [f"u{i}" for i in range(a.connections)]
    gen: Generator | None = None
    try:
        async with asyncio.timeout(START_S):
            await system.start()
        if reaper is not None:
            for group, pids in system.groups().items():
                if group != "postgres":  # stopped by its data directory
                    for pid in pids:
                        reaper.process(pid)
        rss0 = rss_kib(system.server_pids())
        gen = Generator(system.url, system.credentials(names), names, a.senders, a.peers)
        async with asyncio.timeout(CONNECT_S):
            connected = await gen.connect(a.connect_concurrency)
        rss_conn = rss_kib(system.server_pids())
        warm = await gen.warm(a.warm_rate, WARM_S)
        if progress:
            print(
                f"{system.name}: {connected['connections']} sessions in"
                f" {connected['connect_s']} s, warm-up {warm['complete']}/{warm['messages']}"
                f" conversations in {warm['seconds']} s",
                file=sys.stderr,
            )
            print(report.HEADER, file=sys.stderr)
        rows: list[dict[str, Any]] = []
        skipped: list[float] = []
        for rate in a.rates:
            streak = 0
            for r in reversed(rows):
                if not r["overloaded"]:
                    break
                streak += 1
            if a.stop_after and streak >= a.stop_after:
                # The server fell behind twice in a row: higher rates only pile up a backlog
                # (for minutes, at the top of the sweep) and say nothing new.
                skipped.append(rate)
                continue
            others_before = await wait_quiet(a.quiet_wait, QUIET) if a.quiet_wait > 0 else None
            edges: dict[str, Sample] = {}

            def on_edge(edge: str, edges: dict[str, Sample] = edges) -> None:
                edges[edge] = system.sample()

            errors_before = dict(gen.errors)
            st = await gen.step(rate, a.lead_in, a.duration, a.drain, on_edge)
            row = step_stats(st, a.duration)
            # Answers to an earlier step's backlog land here too; the step's own are in it.
            row["errors"] = {
                k: n - errors_before.get(k, 0)
                for k, n in sorted(gen.errors.items())
                if n != errors_before.get(k, 0)
            }
            if "start" in edges and "end" in edges:
                row |= costs(edges["start"], edges["end"], st, server_cpus, client_cpus)
            row["rss_kib_per_conn"] = round(
                (rss_kib(system.server_pids()) - rss0) / a.connections, 2
            )
            row["machine_busy_before"] = others_before
            row["generator_limited"] = report.generator_verdict(row)
            row["disturbed"] = report.disturbance(row)
            row["overloaded"] = report.overloaded(row)
            row["verdict"] = report.verdict(row, a.min_delivered_pct, a.p99_limit_ms)
            rows.append(row)
            if progress:
                print(report.row_line(row), file=sys.stderr)
        groups = system.groups()
        pinned = {g: affinities(p) for g, p in groups.items()}
        pinned["loadgen"] = sorted(os.sched_getaffinity(0))
        return {
            "name": system.name,
            "url": system.url,
            **connected,
            "rss_kib_idle": rss0,
            "rss_kib_per_conn_after_connect": round((rss_conn - rss0) / a.connections, 2),
            "warmup": warm,
            "pinned": pinned,
            "errors": dict(sorted(gen.errors.items())),
            "other_frames": gen.other_frames,
            "steps": rows,
            "skipped_rates": skipped,
            "knee": report.knee(rows),
        }
    finally:
        if gen is not None:
            await gen.close()
        await system.stop()


def _cpus(spec: str) -> set[int]:
    return {int(x) for x in spec.split(",") if x != ""}


async def amain(a: argparse.Namespace) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    # A SIGTERM (a CI timeout, an impatient operator) unwinds like Ctrl-C: every process this
    # run started is stopped by the finally blocks, the temp dir removed.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    limit = raise_fd_limit()
    need = a.connections + CONN_HEADROOM
    if limit < need:
        raise SystemExit(f"open-files hard limit {limit} < {need} needed for the sessions")
    server_cpus = None if a.no_pin else _cpus(a.server_cpus)
    client_cpus = None if a.no_pin else _cpus(a.client_cpus)
    if client_cpus is not None:
        # The generator is this process; children started from here (initdb, pg_ctl) start on
        # its core too and are moved to the server core once up.
        os.sched_setaffinity(0, client_cpus)
    tmp = Path(tempfile.mkdtemp(prefix="imctl-open-loop-"))
    tmp.chmod(0o711)  # PostgreSQL runs as its own user and must reach its data dir
    pg = Postgres(tmp, server_cpus)
    reaper = Reaper()
    reaper.register(pg=str(pg.data_dir))
    reaper.register(tmp=str(tmp))
    budget = budget_s(a)
    doc: dict[str, Any] = {
        "config": {
            k: v
            for k, v in vars(a).items()
            if k not in ("json", "smoke", "server_cpus", "client_cpus")
        }
        | {
            "body_bytes": BODY_BYTES,
            "server_cpus": sorted(server_cpus) if server_cpus is not None else "unpinned",
            "client_cpus": sorted(client_cpus) if client_cpus is not None else "unpinned",
            "im_max_connections": a.connections + CONN_HEADROOM,
            "budget_s": round(budget),
        },
        "machine": {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            "versions": versions(),
        },
        "setups": {},
    }
    t0 = time.monotonic()
    try:
        async with asyncio.timeout(budget):
            for key in a.setups:
                sub = tmp / key
                sub.mkdir()
                sub.chmod(0o711)
                system: System
                if key == "relay":
                    system = RelaySystem(a.relay_stack, a.relay_loop, _first(server_cpus), budget)
                else:
                    system = ImSystem(1 if key == "im1" else 2, sub, pg, a.connections, server_cpus)
                try:
                    doc["setups"][key] = await run_setup(
                        system, a, server_cpus, client_cpus, reaper
                    )
                except (ConnectionError, RuntimeError, OSError, TimeoutError) as exc:
                    # One system failing to start or connect still lets the others be measured.
                    doc["setups"][key] = {
                        "name": system.name,
                        "error": f"{type(exc).__name__}: {exc}",
                    }
                    print(f"{system.name}: {doc['setups'][key]['error']}", file=sys.stderr)
        if pg.pg is not None:
            with contextlib.suppress(Exception):
                doc["machine"]["versions"]["postgresql"] = pg.pg.server_version()
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        reaper.close()
    doc["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["elapsed_s"] = round(time.monotonic() - t0, 1)
    relay = doc["setups"].get("relay", {})
    if "knee" in relay:
        doc["ratios"] = {
            k: report.ratio(s["knee"], relay["knee"])
            for k, s in doc["setups"].items()
            if k != "relay" and "knee" in s
        }
    return doc


def _first(cpus: set[int] | None) -> int | None:
    return min(cpus) if cpus else None


def _rates(spec: str) -> list[float]:
    return [float(x) for x in spec.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.open_loop",
        description="Open-loop rate sweep: N sessions, K senders x P fixed peers, server and"
        " PostgreSQL on one core, a bare relay in the same run.",
    )
    p.add_argument("--connections", type=int, default=5000, help="sessions (N)")
    p.add_argument("--senders", type=int, default=500, help="sessions that send (K)")
    p.add_argument("--peers", type=int, default=5, help="fixed peers per sender (P)")
    p.add_argument("--rates", type=_rates, default=_rates(DEFAULT_RATES), help="msgs/s, ascending")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per rate")
    p.add_argument("--lead-in", type=float, default=1.0, help="unmeasured seconds before each")
    p.add_argument("--drain", type=float, default=5.0, help="max seconds to wait for late replies")
    p.add_argument(
        "--stop-after",
        type=int,
        default=2,
        help="skip a setup's higher rates after this many overloaded steps in a row (the"
        " server fell behind the offered rate; 0: never)",
    )
    p.add_argument(
        "--quiet-wait", type=float, default=5.0, help="max s to wait for an idle machine per step"
    )
    p.add_argument("--warm-rate", type=float, default=1000.0, help="msgs/s of the warm-up")
    p.add_argument(
        "--setups",
        type=lambda s: [x for x in s.split(",") if x],
        default=list(SETUPS),
        help="relay (bare relay), im1 (one im-server), im2 (two nodes + NATS); default: all",
    )
    p.add_argument(
        "--relay-stack", default="websockets", choices=("websockets", "aiohttp", "picows")
    )
    p.add_argument("--relay-loop", default="uvloop", choices=("uvloop", "asyncio"))
    p.add_argument("--server-cpus", default="0", help="CPU(s) of the servers, PG and NATS")
    p.add_argument("--client-cpus", default="1", help="CPU(s) of the load generator")
    p.add_argument("--no-pin", action="store_true", help="pin nothing (1-CPU machines)")
    p.add_argument("--p99-limit-ms", type=float, default=50.0, help="knee: p99 send->deliver below")
    p.add_argument("--min-delivered-pct", type=float, default=99.9, help="knee: delivered at least")
    p.add_argument("--connect-concurrency", type=int, default=64)
    p.add_argument("--json", help="write the whole JSON document here")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny liveness run: 50 sessions, 10 senders, 100 and 200 msgs/s, 2 s each",
    )
    a = p.parse_args(argv)
    if a.smoke:
        a.connections, a.senders, a.rates = 50, 10, [100.0, 200.0]
        a.duration, a.lead_in, a.warm_rate, a.quiet_wait = 2.0, 0.5, 200.0, 0.0
    bad = [s for s in a.setups if s not in SETUPS]
    if bad:
        p.error(f"unknown setup(s) {bad}; choose from {', '.join(SETUPS)}")
    if not 0 < a.senders < a.connections or a.peers < 1:
        p.error("need 0 < --senders < --connections and --peers >= 1")
    if a.rates != sorted(a.rates) or not a.rates or a.rates[0] <= 0:
        p.error("--rates must be positive and ascending (an overloaded step leaks into the next)")
    per_sender = a.rates[-1] / a.senders
    if per_sender > SESSION_RATE_LIMIT:
        p.error(
            f"{per_sender:.0f} msgs/s per sender exceeds the server's per-session limit"
            f" ({SESSION_RATE_LIMIT:.0f}/s, IM_RATE_PER_SEC); use more --senders"
        )
    if (os.cpu_count() or 1) < 2:
        a.no_pin = True
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    import uvloop

    try:
        doc = uvloop.run(amain(a))
    except (asyncio.CancelledError, KeyboardInterrupt):
        # SIGTERM/Ctrl-C: the finally blocks have stopped what was started; no report.
        print("interrupted: everything this run started was stopped", file=sys.stderr)
        return 130
    if a.json:
        Path(a.json).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    print(report.table(doc))
    print(f"elapsed {doc['elapsed_s']} s", file=sys.stderr)
    return 0 if all("error" not in s for s in doc["setups"].values()) else 1
