"""Compare WebSocket stacks for the IM server: throughput, CPU per message, tail latency, memory.

For each stack (aiohttp, websockets, picows) on each loop (asyncio, uvloop), in one run:

1. start ``bench.relay`` in a subprocess pinned to CPU 0;
2. (first round) probe HTTP on the WebSocket port: ``GET /healthz`` and ``POST /admin/echo``
   with a JSON body, and memory: open ``--idle-conns`` connections (hello done) and divide the
   server's VmRSS growth by their number;
3. saturation: ``bench.loadgen`` closed loop (``--window`` sends in flight per sender), pinned to
   CPU 1;
4. latency: ``bench.loadgen`` open loop at ``--rate`` msgs/s.

It also checks per stack that two processes can share one port with SO_REUSEPORT.

On 2 cores the generator needs about as much CPU per message as a fast server, so the saturation
figure can be the generator's limit; ``server_cpu`` (cores the server used in the measured window)
and ``server_us_per_msg`` (its CPU per delivered message) tell the stacks apart regardless.

The machine may be shared: each load phase records the CPU used by other processes
(``foreign_cpu``, in cores). All configs run ``--rounds`` times interleaved and each phase keeps
the best of its undisturbed rounds; ``contended`` marks a result disturbed in every round.

Prints the JSON document, then a one-line summary::

    python -m bench.stack_compare --out /tmp/stack_compare.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from bench import raise_fd_limit
from bench.loadgen import open_connections
from bench.relay import STACKS

ROOT = Path(__file__).resolve().parent.parent
LOOPS = ("asyncio", "uvloop")
SERVER_CPU = 0
CLIENT_CPU = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- /proc helpers -----------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a process in seconds, None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # Fields after "(comm)" start at index 3 (state), so utime/stime (14, 15) are at 11, 12.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def system_busy_s() -> float:
    """CPU seconds spent not idle by all CPUs since boot."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(x) for x in parts[:8]]
    idle = vals[3] + vals[4]  # idle + iowait
    return (sum(vals) - idle) / CLK_TCK


async def wait_quiet(budget_s: float, threshold: float = 0.25) -> float:
    """Wait (at most budget_s) until other processes use < threshold cores; return their load."""
    deadline = time.monotonic() + budget_s
    told = False
    while True:
        b0, t0 = system_busy_s(), time.monotonic()
        await asyncio.sleep(0.5)
        load = (system_busy_s() - b0) / (time.monotonic() - t0)
        if load < threshold or time.monotonic() >= deadline:
            return round(load, 3)
        if not told:
            print(f"  machine busy ({load:.2f} cores used by others), waiting", file=sys.stderr)
            told = True


# --- subprocesses ------------------------------------------------------------------------------


@dataclass
class Relay:
    proc: asyncio.subprocess.Process
    port: int
    pid: int
    stderr_path: str

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.stderr_path)


def _read_tail(path: str, n: int = 2000) -> str:
    with open(path, errors="replace") as f:
        return f.read()[-n:]


async def start_relay(
    stack: str,
    loop: str,
    *,
    port: int = 0,
    reuse_port: bool = False,
    cpu: int | None = SERVER_CPU,
    max_seconds: float = 180.0,
) -> Relay:
    args = [sys.executable, "-m", "bench.relay", "--stack", stack, "--port", str(port)]
    args += ["--max-seconds", str(max_seconds)]
    if loop == "uvloop":
        args.append("--uvloop")
    if reuse_port:
        args.append("--reuse-port")
    if cpu is not None:
        args += ["--cpu", str(cpu)]
    fd, err_path = tempfile.mkstemp(prefix=f"relay-{stack}-", suffix=".log")
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=fd
        )
    finally:
        os.close(fd)
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 15.0)
        info = orjson.loads(line)
    except (TimeoutError, orjson.JSONDecodeError) as exc:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        err = _read_tail(err_path)
        os.unlink(err_path)
        raise RuntimeError(f"relay {stack}/{loop} did not start: {exc!r}\n{err}") from None
    return Relay(proc, int(info["port"]), int(info["pid"]), err_path)


async def run_loadgen(
    url: str, server_pid: int, extra: Sequence[str], budget: float, pin: bool
) -> dict[str, Any]:
    """Run bench.loadgen in a subprocess; add the server's CPU use over the measured window."""
    args = [sys.executable, "-m", "bench.loadgen", "--url", url, "--uvloop", "--phase-marks"]
    args += extra
    if pin:
        args += ["--cpu", str(CLIENT_CPU)]
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    stderr = proc.stderr
    # (monotonic time, server CPU s, machine busy CPU s) when the generator opens/closes its window.
    marks: dict[str, tuple[float, float, float]] = {}
    err_tail: list[str] = []

    async def read_stderr() -> None:
        async for line in stderr:
            if line.startswith(b"#phase "):
                cpu = proc_cpu_s(server_pid) or 0.0
                marks[line.split()[1].decode()] = (time.monotonic(), cpu, system_busy_s())
            else:
                err_tail.append(line.decode(errors="replace"))
                del err_tail[:-20]

    async def finish() -> bytes:
        assert proc.stdout is not None
        out, _ = await asyncio.gather(proc.stdout.read(), read_stderr())
        await proc.wait()
        return out

    try:
        out = await asyncio.wait_for(finish(), budget)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return {"error": f"loadgen exceeded {budget:.0f}s"}
    try:
        res: dict[str, Any] = orjson.loads(out)
    except orjson.JSONDecodeError:
        return {"error": f"loadgen rc={proc.returncode}: {''.join(err_tail)[-1500:]}"}
    if "measure_start" in marks and "measure_end" in marks:
        t0, srv0, busy0 = marks["measure_start"]
        t1, srv1, busy1 = marks["measure_end"]
        wall = max(t1 - t0, 1e-6)
        srv = srv1 - srv0
        gen = float(res.get("loadgen_cpu", 0.0)) * float(res.get("duration_s", wall))
        delivered = int(res.get("delivered", 0))
        res["server_cpu"] = round(srv / wall, 3)
        # CPU per message is independent of who saturated first, unlike msgs/s on 2 cores.
        res["server_us_per_msg"] = round(srv / delivered * 1e6, 2) if delivered else None
        res["foreign_cpu"] = round(max(0.0, busy1 - busy0 - srv - gen) / wall, 3)
    return res


# --- phases ------------------------------------------------------------------------------------


async def http_status(port: int, method: str, path: str, body: bytes = b"") -> int | None:
    """Status code of one HTTP/1.1 request, None if the server closed without answering."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5.0)
    except OSError:
        return None
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    try:
        writer.write(head.encode() + body)
        status_line = await asyncio.wait_for(reader.readline(), 5.0)
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    parts = status_line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


async def probe_http(port: int) -> dict[str, int | None]:
    return {
        "get_healthz": await http_status(port, "GET", "/healthz"),
        "post_admin_json": await http_status(port, "POST", "/admin/echo", b'{"ping":1}'),
    }


async def measure_idle(relay: Relay, url: str, n: int) -> dict[str, Any]:
    # A first batch absorbs one-off allocations (imports, buffers, dict growth) so the delta is
    # the steady per-connection cost.
    warm = await open_connections(url, [f"warm{i}" for i in range(100)])
    await asyncio.sleep(0.3)
    before = rss_kb(relay.pid)
    t = time.monotonic()
    pool = await open_connections(url, [f"idle{i}" for i in range(n)])
    connect_s = time.monotonic() - t
    await asyncio.sleep(0.5)
    after = rss_kb(relay.pid)
    opened = len(pool)
    await pool.close()
    await warm.close()
    return {
        "connections": opened,
        "failures": pool.failures,
        "connect_s": round(connect_s, 2),
        "rss_before_kb": before,
        "rss_after_kb": after,
        "kb_per_conn": round((after - before) / opened, 2) if opened else None,
    }


async def check_reuse_port(stack: str) -> bool:
    """True if two relay processes can listen on the same port at once."""
    first = await start_relay(stack, "asyncio", reuse_port=True, cpu=None, max_seconds=30)
    try:
        second = await start_relay(
            stack, "asyncio", port=first.port, reuse_port=True, cpu=None, max_seconds=30
        )
    except RuntimeError:
        await first.stop()
        return False
    ok = await http_status(first.port, "GET", "/healthz") == 200
    await second.stop()
    await first.stop()
    return ok


async def bench_config(
    stack: str, loop: str, a: argparse.Namespace, first_round: bool
) -> dict[str, Any]:
    """One round of one config: a fresh relay, then (first round only) HTTP and memory probes,
    then the closed-loop and the open-loop phase."""
    relay = await start_relay(stack, loop, cpu=None if a.no_pin else SERVER_CPU)
    url = f"ws://127.0.0.1:{relay.port}/ws"
    res: dict[str, Any] = {}
    try:
        if first_round:
            res["http"] = await probe_http(relay.port)
            if a.idle_conns > 0:
                res["idle"] = await measure_idle(relay, url, a.idle_conns)
        res["max"] = await run_loadgen(
            url,
            relay.pid,
            [
                *("--pairs", str(a.pairs), "--window", str(a.window)),
                *("--duration", str(a.max_duration), "--warmup", str(a.warmup)),
                *("--drain", "2", "--user-prefix", "m"),
            ],
            a.max_duration + a.warmup + 40,
            not a.no_pin,
        )
        res["rate"] = await run_loadgen(
            url,
            relay.pid,
            [
                *("--pairs", str(a.pairs), "--rate", str(a.rate)),
                *("--duration", str(a.rate_duration), "--warmup", str(a.warmup)),
                *("--drain", "2", "--user-prefix", "r"),
            ],
            a.rate_duration + a.warmup + 40,
            not a.no_pin,
        )
        per_s = res["rate"].get("deliver_p99_per_s") or []
        res["rate"]["deliver_p99_median_of_seconds_ms"] = (
            round(statistics.median(per_s), 3) if per_s else None
        )
    finally:
        await relay.stop()
    return res


def pick(runs: list[dict[str, Any]], threshold: float, better: str) -> dict[str, Any]:
    """Best of the undisturbed rounds by ``better`` (noise from other processes only ever makes
    a stack look worse); if every round was disturbed, the least disturbed one."""
    ok = [r for r in runs if "error" not in r] or runs
    quiet = [r for r in ok if float(r.get("foreign_cpu") or 0.0) <= threshold]
    if not quiet:
        return min(ok, key=lambda r: float(r.get("foreign_cpu") or 0.0))
    if better == "throughput":
        return max(quiet, key=lambda r: float(r.get("delivered_per_s") or 0.0))
    return min(quiet, key=lambda r: float(r.get("deliver_p99_median_of_seconds_ms") or 1e9))


def name_of(stack: str, loop: str) -> str:
    return f"{stack}+uvloop" if loop == "uvloop" else stack


def print_progress(name: str, r: dict[str, Any]) -> None:
    m, rt = r["max"], r["rate"]
    print(
        f"  {name}: max {m.get('delivered_per_s')}/s (server cpu {m.get('server_cpu')}, "
        f"loadgen cpu {m.get('loadgen_cpu')}, others {m.get('foreign_cpu')}, "
        f"{m.get('server_us_per_msg')} us/msg) | @{rt.get('target_rate')}/s "
        f"p99 {rt.get('deliver', {}).get('p99_ms')}ms, {rt.get('server_us_per_msg')} us/msg, "
        f"others {rt.get('foreign_cpu')}"
        + (f" | idle {r['idle'].get('kb_per_conn')} KB/conn" if "idle" in r else ""),
        file=sys.stderr,
    )


def summary_line(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        m, rate = r["max"], r["rate"]
        rows.append(
            (
                float(m.get("delivered_per_s", 0.0)),
                r["name"],
                rate.get("deliver_p99_median_of_seconds_ms"),
                rate.get("server_us_per_msg"),
                (r.get("idle") or {}).get("kb_per_conn"),
            )
        )
    rows.sort(reverse=True)
    best = rows[0][0] or 1.0
    parts = []
    for i, (tput, name, p99, us, kb) in enumerate(rows):
        unit = " msg/s" if i == 0 else ""
        parts.append(
            f"{name} {tput / 1000:.1f}k{unit} ({tput / best:.2f}x, p99 {p99}ms, "
            f"{us}us/msg, {kb}KB/conn)"
        )
    flagged = [r["name"] for r in results if r.get("contended")]
    note = f" [contended: {', '.join(flagged)}]" if flagged else ""
    return "delivered at saturation: " + " | ".join(parts) + note


def _spread(values: list[float], fmt: str, unit: str = "") -> str:
    if not values:
        return "n/a"
    med = format(statistics.median(values), fmt) + unit
    if len(values) == 1:
        return med
    return f"{med} ({format(min(values), fmt)}-{format(max(values), fmt)}{unit})"


def merge_table(paths: Sequence[str], threshold: float) -> str:
    """Markdown table of median (min-max) over all undisturbed rounds of several runs."""
    rounds: dict[str, list[dict[str, Any]]] = {}
    idle: dict[str, list[float]] = {}
    rates: set[float] = set()
    for path in paths:
        doc = orjson.loads(Path(path).read_bytes())
        rates.add(float(doc["params"]["rate"]))
        for r in doc["results"]:
            rounds.setdefault(r["name"], []).extend(r["all_rounds"])
            kb = (r.get("idle") or {}).get("kb_per_conn")
            if kb is not None:
                idle.setdefault(r["name"], []).append(float(kb))

    def quiet(rs: list[dict[str, Any]], phase: str, key: str) -> list[float]:
        return [
            float(x[key])
            for x in rs
            if x.get(key) is not None and float(x.get(f"{phase}_foreign_cpu") or 0) <= threshold
        ]

    rate = "/".join(f"{r:,.0f}" for r in sorted(rates))
    lines = [
        "| stack | delivered msgs/s at saturation | server us/msg at saturation "
        f"| deliver p99 ms at {rate} msgs/s | server us/msg at {rate} msgs/s "
        "| RSS KB / idle conn | undisturbed rounds (sat/rate) |",
        "|---|---|---|---|---|---|---|",
    ]
    order = sorted(
        rounds,
        key=lambda n: -statistics.median(quiet(rounds[n], "max", "max_delivered_per_s") or [0]),
    )
    for name in order:
        rs = rounds[name]
        tput = [v / 1000 for v in quiet(rs, "max", "max_delivered_per_s")]
        lines.append(
            f"| {name} | {_spread(tput, '.1f', 'k')} "
            f"| {_spread(quiet(rs, 'max', 'max_server_us_per_msg'), '.1f')} "
            f"| {_spread(quiet(rs, 'rate', 'rate_p99_ms'), '.2f')} "
            f"| {_spread(quiet(rs, 'rate', 'rate_server_us_per_msg'), '.0f')} "
            f"| {_spread(idle.get(name, []), '.1f')} "
            f"| {len(tput)}/{len(quiet(rs, 'rate', 'rate_p99_ms'))} of {len(rs)} |"
        )
    return "\n".join(lines)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("aiohttp", "websockets", "picows", "uvloop", "orjson"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


async def amain(a: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit()
    if not a.no_pin:
        # The orchestrator opens the idle connections; keep it off the server's CPU.
        os.sched_setaffinity(0, {CLIENT_CPU})
    t0 = time.monotonic()
    stacks = [s for s in a.stacks.split(",") if s]
    loops = [x for x in a.loops.split(",") if x]
    quiet_left = a.quiet_wait
    configs = [(stack, loop) for stack in stacks for loop in loops]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {c: [] for c in configs}
    reuse: dict[str, bool] = {}
    if a.check_reuse_port:
        for stack in stacks:
            reuse[stack] = await check_reuse_port(stack)
    # Rounds interleave the configs, so a burst of load from another process hits different
    # configs in different rounds; each phase then keeps its best undisturbed round.
    for rnd in range(a.rounds):
        for stack, loop in configs:
            tq = time.monotonic()
            before = await wait_quiet(quiet_left)
            quiet_left = max(0.0, quiet_left - (time.monotonic() - tq))
            r = await bench_config(stack, loop, a, first_round=rnd == 0)
            r["round"] = rnd
            r["foreign_cpu_before"] = before
            runs[(stack, loop)].append(r)
            print_progress(f"round {rnd} {name_of(stack, loop)}", r)
    results: list[dict[str, Any]] = []
    for (stack, loop), rs in runs.items():
        chosen: dict[str, Any] = {
            "stack": stack,
            "loop": loop,
            "name": name_of(stack, loop),
            "reuse_port": reuse.get(stack),
            "http": rs[0].get("http"),
            "idle": rs[0].get("idle"),
            "max": pick([r["max"] for r in rs], a.contention, "throughput"),
            "rate": pick([r["rate"] for r in rs], a.contention, "latency"),
            "all_rounds": [
                {
                    "round": r["round"],
                    "max_delivered_per_s": r["max"].get("delivered_per_s"),
                    "max_server_us_per_msg": r["max"].get("server_us_per_msg"),
                    "max_foreign_cpu": r["max"].get("foreign_cpu"),
                    "rate_p99_ms": r["rate"].get("deliver", {}).get("p99_ms"),
                    "rate_server_us_per_msg": r["rate"].get("server_us_per_msg"),
                    "rate_foreign_cpu": r["rate"].get("foreign_cpu"),
                }
                for r in rs
            ],
        }
        chosen["contended"] = any(
            float(chosen[p].get("foreign_cpu") or 0.0) > a.contention for p in ("max", "rate")
        )
        results.append(chosen)
    return {
        "command": "python -m bench.stack_compare " + " ".join(sys.argv[1:]),
        "versions": versions(),
        "cpus": os.cpu_count(),
        "pinned": not a.no_pin,
        "params": {
            "pairs": a.pairs,
            "window": a.window,
            "max_duration_s": a.max_duration,
            "rate": a.rate,
            "rate_duration_s": a.rate_duration,
            "warmup_s": a.warmup,
            "idle_conns": a.idle_conns,
            "rounds": a.rounds,
        },
        "results": results,
        "elapsed_s": round(time.monotonic() - t0, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.stack_compare", description=__doc__)
    p.add_argument("--stacks", default=",".join(STACKS))
    p.add_argument("--loops", default=",".join(LOOPS))
    p.add_argument("--pairs", type=int, default=50)
    p.add_argument("--window", type=int, default=8, help="closed loop in-flight per sender")
    p.add_argument("--max-duration", type=float, default=3.0)
    p.add_argument("--rate", type=float, default=5000.0, help="open-loop msgs/s for latency")
    p.add_argument("--rate-duration", type=float, default=4.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--idle-conns", type=int, default=5000)
    p.add_argument(
        "--quiet-wait", type=float, default=15.0, help="total s to wait for other load to stop"
    )
    p.add_argument(
        "--contention",
        type=float,
        default=0.1,
        help="cores used by other processes above which a phase counts as disturbed",
    )
    p.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of all configs")
    p.add_argument("--no-reuse-port-check", dest="check_reuse_port", action="store_false")
    p.add_argument("--no-pin", action="store_true", help="do not pin server/loadgen to CPUs")
    p.add_argument("--out", help="also write the JSON document here")
    p.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="run nothing; print a markdown table over the undisturbed rounds of --out files",
    )
    a = p.parse_args(argv)
    if a.merge:
        print(merge_table(a.merge, a.contention))
        return 0
    if os.cpu_count() is not None and (os.cpu_count() or 0) < 2:
        a.no_pin = True
    doc = asyncio.run(amain(a))
    data = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
    if a.out:
        Path(a.out).write_bytes(data)
    sys.stdout.buffer.write(data + b"\n")
    print(summary_line(doc["results"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
