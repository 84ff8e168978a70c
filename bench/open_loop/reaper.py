"""Stops what a harness run started if the harness itself dies without cleaning up (kill -9).

The harness starts this as a child in its own session, with a pipe on its stdin, and writes one
JSON line per thing it starts: ``{"pid": n, "create_time": t}`` (a process to SIGTERM),
``{"pg": data_dir}`` (a PostgreSQL to stop) or ``{"tmp": dir}`` (a directory to remove). The pipe
reaches EOF when the harness exits, however it exits; then everything listed that is still
there is stopped. After a normal run the harness has already done it all, and this finds
nothing. Only what was listed is touched: a PID counts only with its start time (PID reuse).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
from pathlib import Path

import orjson

from cli.targets.local import procs
from cli.targets.local.postgres import PgInstance


def main() -> int:
    # Ctrl-C goes to the whole foreground group; this must outlive the harness, not die with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pids: list[procs.PidInfo] = []
    pgs: list[Path] = []
    tmps: list[Path] = []
    for line in sys.stdin.buffer:
        with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
            item = orjson.loads(line)
            if "pid" in item:
                pids.append(procs.PidInfo(int(item["pid"]), float(item["create_time"]), []))
            elif "pg" in item:
                pgs.append(Path(item["pg"]))
            elif "tmp" in item:
                tmps.append(Path(item["tmp"]))
    for info in pids:
        with contextlib.suppress(Exception):
            procs.terminate(info, 10)
    for data_dir in pgs:
        pg = PgInstance(data_dir=data_dir, port=0)
        with contextlib.suppress(Exception):
            if pg.pid() is not None:
                try:
                    pg.stop(mode="fast", timeout=20)
                except Exception:
                    pg.kill9()
    for tmp in tmps:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
