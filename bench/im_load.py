"""Load the durable IM server and, in the same run, a bare relay (the baseline).

    python -m bench.im_load                 # about 2 minutes
    python -m bench.im_load --quick         # about 40 s, smaller numbers

Reports acked msgs/s and deliveries/s (1:1 and group fan-out), p50/p99 send->ack and
send->deliver at a fixed open-loop rate, and RSS per idle connection. The relay (no database,
same aiohttp stack, same frames) runs in the same invocation, so the ratio durable/relay is
meaningful on a noisy machine where absolute numbers are not. Prints one JSON document and a
one-line summary (on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from bench.loadgen import Event, ImProtocol, open_connections, run_load
from bench.stack_compare import rss_kb, start_relay
from cli.targets.local.postgres import PgInstance
from cli.targets.local.procs import free_port
from im_server import auth
from im_server.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
SERVER_CPU = 0
CLIENT_CPU = 1


class DurableProtocol(ImProtocol):
    """The real server's frames: pushes carry (conv, seq), which the ack of the send returned."""

    def __init__(self, groups: dict[str, str] | None = None) -> None:
        self.groups = groups or {}
        # The generator numbers cids from 1 in every run, and the server is idempotent on
        # (sender, cid): a second run by the same users would only get duplicate acks.
        self.tag = secrets.token_hex(4) + "."

    def send(self, cid: str, to: str) -> bytes:
        group = self.groups.get(to)
        target = {"conv": group} if group else {"to": to}
        frame = {"type": "send", "cid": self.tag + cid, **target, "body": {"text": "hi"}}
        return orjson.dumps(frame)

    def decode(self, payload: bytes | memoryview) -> Event:
        obj = orjson.loads(payload)
        kind = obj.get("type")
        if kind == "ack":
            if obj.get("duplicate"):
                return ("error", None, None)  # a repeated cid: the run would measure nothing
            return ("ack", obj["cid"].removeprefix(self.tag), (obj["conv"], obj["seq"]))
        if kind == "msg":
            return ("msg", None, (obj["conv"], obj["seq"]))
        if kind in ("welcome", "error"):
            return (kind, obj.get("cid"), None)
        return ("other", None, None)


def raise_fds(n: int = 65536) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, n), max(hard, n)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the worker: a load run in its own process (pinned to the client CPU) -------------------


def worker(spec_json: str) -> int:
    spec = orjson.loads(spec_json)
    os.sched_setaffinity(0, {CLIENT_CPU})
    raise_fds()
    users = [(u, t) for u, t in spec["users"]]
    proto = DurableProtocol(spec.get("groups")) if spec["protocol"] == "im" else ImProtocol()

    async def go() -> dict[str, Any]:
        listeners = None
        if spec.get("listeners"):
            listeners = await open_connections(spec["url"], spec["listeners"], protocol=proto)
        try:
            res = await run_load(
                spec["url"],
                users,
                pairs=spec["pairs"],
                rate=spec.get("rate"),
                window=spec.get("window"),
                duration=spec["duration"],
                warmup=spec["warmup"],
                protocol=proto,
            )
        finally:
            if listeners is not None:
                await listeners.close()
        return res.to_dict()

    import uvloop

    doc = uvloop.run(go())
    sys.stdout.buffer.write(orjson.dumps(doc) + b"\n")
    return 0


async def run_worker(
    spec: dict[str, Any], budget: float, module: str = "bench.im_load"
) -> dict[str, Any]:
    """Run one load in ``python -m <module> --worker <spec>``; another benchmark passes its own
    module when its worker adds something (e.g. routing receivers to a second node)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, "--worker", orjson.dumps(spec).decode(),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), budget)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"error": f"load worker exceeded {budget:.0f}s"}
    try:
        result: dict[str, Any] = orjson.loads(out)
        return result
    except orjson.JSONDecodeError:
        return {"error": f"worker rc={proc.returncode}: {err.decode(errors='replace')[-1500:]}"}


# --- the system under test ------------------------------------------------------------------


def _cpu_set(cpus: str) -> set[int]:
    """taskset's list syntax ("0", "0,1", "0-3")."""
    out: set[int] = set()
    for part in cpus.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


class Node:
    """``im_server serve`` pinned to ``cpus``; ``args`` adds serve options (e.g. --health-port).

    ``die_with_parent``: the node gets SIGTERM when this process dies, however it dies, so a
    benchmark killed mid-run leaves no server behind.
    """

    def __init__(
        self,
        env: dict[str, str],
        port: int,
        log: Path,
        *,
        cpus: str = str(SERVER_CPU),
        args: Sequence[str] = (),
        die_with_parent: bool = False,
        cwd: Path | None = None,
    ) -> None:
        self.env, self.port, self.log = env, port, log
        # `python -m im_server` imports the package from its working directory first: another
        # directory runs another tree's code (bench.open_loop.ab's baseline).
        self.cwd = cwd
        self.cpus, self.args = cpus, list(args)
        self.die_with_parent = die_with_parent
        self.proc: asyncio.subprocess.Process | None = None

    def _child_setup(self, pin: bool) -> None:
        """Runs in the child between fork and exec."""
        raise_fds()
        if pin:
            os.sched_setaffinity(0, _cpu_set(self.cpus))
        if self.die_with_parent:
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)

    async def start(self) -> None:
        ready = self.log.with_suffix(".port")
        # A restarted node must not be taken for ready by the previous run's file.
        ready.unlink(missing_ok=True)
        # taskset where there is one (what the docs' commands show); the same affinity set by
        # hand where there is not.
        has_taskset = shutil.which("taskset") is not None
        prefix = ["taskset", "-c", self.cpus] if has_taskset else []
        with self.log.open("ab") as fh:
            self.proc = await asyncio.create_subprocess_exec(
                *prefix,
                sys.executable, "-m", "im_server", "serve", "--port", str(self.port),
                "--ready-file", str(ready), *self.args,
                env=self.env, stdout=fh, stderr=fh, cwd=self.cwd,
                preexec_fn=lambda: self._child_setup(not has_taskset),
            )  # fmt: skip
        for _ in range(300):
            if ready.exists() and ready.read_text():
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"im-server did not start; see {self.log}")

    async def kill9(self) -> None:
        """SIGKILL, as a crash would: no drain, no goodbye to the sessions."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def metric(port: int, name: str, label: str = "") -> float:
    """Sum of a Prometheus sample from the node's /metrics (no client library needed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
    data = (await reader.read()).decode()
    writer.close()
    total = 0.0
    for line in data.splitlines():
        if line.startswith(name) and label in line and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def create_groups(dsn: str, members_of: dict[str, list[str]]) -> dict[str, str]:
    """Groups made directly in the database (setup, not measured): owner -> conv id."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    convs = {}
    try:
        for owner, members in members_of.items():
            conv = "g:" + secrets.token_hex(10)
            await conn.execute(
                "INSERT INTO conversations (id, kind, title, created_by)"
                " VALUES ($1, 'group', 'bench', $2)",
                conv,
                owner,
            )
            await conn.executemany(
                "INSERT INTO members (conv, user_id) VALUES ($1, $2)",
                [(conv, m) for m in [owner, *members]],
            )
            convs[owner] = conv
    finally:
        await conn.close()
    return convs


def _pick(r: dict[str, Any]) -> dict[str, Any]:
    if "error" in r:
        return r
    keys = ("acked_per_s", "delivered_per_s", "unacked", "undelivered", "errors", "loadgen_cpu")
    out = {k: r[k] for k in keys}
    out["ack_ms"] = {k: r["ack"][k] for k in ("p50_ms", "p99_ms", "max_ms")}
    out["deliver_ms"] = {k: r["deliver"][k] for k in ("p50_ms", "p99_ms", "max_ms")}
    out["error_kinds"] = r["error_kinds"]
    return out


async def amain(a: argparse.Namespace) -> dict[str, Any]:
    raise_fds()
    tmp = Path(tempfile.mkdtemp(prefix="imctl-bench-"))
    tmp.chmod(0o711)
    secret = secrets.token_urlsafe(24)
    pg = PgInstance(data_dir=tmp / "pg", port=free_port())
    pg.init(secrets.token_urlsafe(16))
    pg.start()
    relay = None
    node = None
    try:
        pg.create_database("im")
        dsn = pg.dsn("im")
        await migrate(dsn)
        pairs = a.pairs
        users = [(f"u{i}", auth.mint(secret, f"u{i}", 7200)) for i in range(2 * pairs)]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("IM_")},
            "IM_DATABASE_URL": dsn,
            "IM_JWT_SECRET": secret,
            "IM_RATE_PER_SEC": "100000",
            "IM_RATE_BURST": "100000",
            "IM_MAX_SESSIONS_PER_USER": "10000",
            "IM_LOG_LEVEL": "WARNING",
            "IM_BATCH_LINGER_MS": str(a.linger),
            "IM_SEND_WORKERS": str(a.workers),
        }
        node = Node(env, free_port(), tmp / "node.log")
        await node.start()
        relay = await start_relay("aiohttp", "uvloop", cpu=SERVER_CPU, max_seconds=900)
        im_url = f"ws://127.0.0.1:{node.port}/ws"
        relay_url = f"ws://127.0.0.1:{relay.port}/ws"
        base = {"pairs": pairs, "duration": a.duration, "warmup": a.warmup}
        budget = a.duration + a.warmup + 60
        out: dict[str, Any] = {"config": vars(a) | {"cpus": os.cpu_count()}}

        def relay_users() -> list[tuple[str, str]]:
            return [(u, u) for u, _ in users]

        phases = set(a.only.split(","))

        async def pair(spec: dict[str, Any], name: str) -> None:
            """The relay and the durable server under the same load, back to back."""
            relay_spec = {**spec, "url": relay_url, "users": relay_users(), "protocol": "relay"}
            out[f"relay_{name}"] = _pick(await run_worker(relay_spec, budget))
            im_spec = {**spec, "url": im_url, "users": users, "protocol": "im"}
            out[f"im_{name}"] = _pick(await run_worker(im_spec, budget))

        if "max" in phases:  # 1. saturation, 1:1
            await pair({**base, "window": a.window}, "max")
        if "rate" in phases:  # 2. latency at a fixed offered load (open loop)
            await pair({**base, "rate": a.rate}, "rate")
        # 3. Group fan-out: each sender writes to a group of its peer plus listeners.
        if "group" in phases:
            await group_phase(a, out, users, secret, dsn, node, im_url, base, budget)
        # 4. Idle connections: RSS per session after hello.
        if "idle" in phases and a.idle:
            out["im_idle"] = await idle_phase(a, secret, node, im_url)
        return out
    finally:
        if node is not None:
            await node.stop()
        if relay is not None:
            await relay.stop()
        with contextlib.suppress(Exception):
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def group_phase(
    a: argparse.Namespace,
    out: dict[str, Any],
    users: list[tuple[str, str]],
    secret: str,
    dsn: str,
    node: Node,
    im_url: str,
    base: dict[str, Any],
    budget: float,
) -> None:
    pairs = a.pairs
    g = a.group_size
    gp = max(1, pairs // 5)
    extra = [(f"l{i}", auth.mint(secret, f"l{i}", 7200)) for i in range(gp * (g - 2))]
    members = {
        users[2 * p][0]: [users[2 * p + 1][0]]
        + [u for u, _ in extra[p * (g - 2) : (p + 1) * (g - 2)]]
        for p in range(gp)
    }
    groups = await create_groups(dsn, members)
    by_peer = {users[2 * p + 1][0]: groups[users[2 * p][0]] for p in range(gp)}
    before = await metric(node.port, "im_frames_out_total", 'type="msg"')
    t0 = time.monotonic()
    gres = await run_worker(
        {**base, "pairs": gp, "window": a.window, "url": im_url, "users": users[: 2 * gp],
         "protocol": "im", "groups": by_peer, "listeners": [t for _, t in extra]},
        budget,
    )  # fmt: skip
    pushed = await metric(node.port, "im_frames_out_total", 'type="msg"') - before
    out["im_group"] = _pick(gres) | {
        "group_size": g,
        "groups": gp,
        "server_pushes_per_s": round(pushed / (time.monotonic() - t0), 1),
    }


async def idle_phase(a: argparse.Namespace, secret: str, node: Node, im_url: str) -> dict[str, Any]:
    before_kb = rss_kb(node.proc.pid) if node.proc else 0
    idle_users = [auth.mint(secret, f"i{i}", 7200) for i in range(a.idle)]
    pool = await open_connections(im_url, idle_users, protocol=DurableProtocol())
    await asyncio.sleep(1.0)
    after_kb = rss_kb(node.proc.pid) if node.proc else 0
    opened = len(pool)
    await pool.close()
    return {
        "connections": opened,
        "rss_delta_kib": after_kb - before_kb,
        "kib_per_connection": round((after_kb - before_kb) / max(1, opened), 2),
    }


def summary(doc: dict[str, Any]) -> str:
    parts = []
    rm, im = doc.get("relay_max", {"error": 1}), doc.get("im_max", {"error": 1})
    if "error" not in rm and "error" not in im:
        ratio = im["acked_per_s"] / max(1.0, rm["acked_per_s"])
        parts.append(
            f"durable 1:1 {im['acked_per_s']:.0f} acked/s = {ratio:.2f}x relay"
            f" ({rm['acked_per_s']:.0f}/s)"
        )
    ir, rr = doc.get("im_rate", {"error": 1}), doc.get("relay_rate", {"error": 1})
    if "error" not in ir and "error" not in rr:
        parts.append(
            f"@{doc['config']['rate']:.0f}/s p99 ack {ir['ack_ms']['p99_ms']:.1f} ms"
            f" (relay {rr['ack_ms']['p99_ms']:.1f}), deliver {ir['deliver_ms']['p99_ms']:.1f} ms"
        )
    gr = doc.get("im_group", {"error": 1})
    if "error" not in gr:
        parts.append(f"group({gr['group_size']}) {gr['server_pushes_per_s']:.0f} pushes/s")
    if "im_idle" in doc:
        i = doc["im_idle"]
        parts.append(f"idle {i['kib_per_connection']} KiB/conn ({i['connections']} conns)")
    return "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.im_load", description=__doc__.split("\n")[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="shorter runs, 2,000 idle connections")
    p.add_argument("--pairs", type=int, default=50)
    p.add_argument("--window", type=int, default=8, help="in-flight sends per sender (saturation)")
    p.add_argument("--rate", type=float, default=5000.0, help="open-loop msgs/s for latency")
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--group-size", type=int, default=10)
    p.add_argument("--idle", type=int, default=20500, help="idle connections for the RSS figure")
    p.add_argument("--linger", type=float, default=0.0, help="group-commit linger (ms)")
    p.add_argument("--workers", type=int, default=4, help="concurrent commit pipelines")
    p.add_argument(
        "--only", default="max,rate,group,idle", help="phases to run: max,rate,group,idle"
    )
    a = p.parse_args(argv)
    if a.worker:
        return worker(a.worker)
    if a.quick:
        a.duration, a.warmup, a.idle = 4.0, 1.0, 2000
    doc = asyncio.run(amain(a))
    print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    print(summary(doc), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
