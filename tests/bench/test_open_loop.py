"""bench.open_loop: the judging logic on hand-made rows, and a tiny real run (liveness only).

The smoke run asserts that every figure is reported and that messages arrive, never how fast:
the machine is shared, and a timed assertion would fail on someone else's test suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.open_loop import report
from bench.open_loop.driver import sender_peers

ROOT = Path(__file__).resolve().parents[2]


def _row(
    rate: float,
    deliv: float = 100.0,
    p99: float = 5.0,
    cpu: float = 0.2,
    lag: float = 0.5,
    lag_max: float | None = None,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "offered_per_s": rate,
        "delivered_pct": deliv,
        "deliver": {"p99_ms": p99},
        "loadgen_cpu": cpu,
        "send_lag_p99_ms": lag,
        "send_lag_max_ms": lag if lag_max is None else lag_max,
        "others_cores": {"client_core": 0.0},
    }
    row["generator_limited"] = report.generator_verdict(row)
    row["verdict"] = report.verdict(row, 99.9, 50.0)
    return row


def test_peers_are_fixed_receivers_spread_evenly() -> None:
    plan = sender_peers(5000, 500, 5)
    assert len(plan) == 500 and all(len(p) == 5 for p in plan)
    flat = [j for p in plan for j in p]
    assert min(flat) >= 500  # receivers only, never a sender
    assert len(set(flat)) == 2500  # one sender per receiver while there are enough
    small = sender_peers(50, 10, 5)
    assert all(10 <= j < 50 for p in small for j in p)
    with pytest.raises(ValueError):
        sender_peers(10, 10, 5)


def test_verdicts() -> None:
    assert _row(1000)["verdict"] == "pass"
    assert _row(1000, p99=50.0)["verdict"] == "fail"  # the bound is strict: < 50 ms
    assert _row(1000, deliv=99.8)["verdict"] == "fail"
    # A lagging generator only overstates latency, by at most its longest stall: a pass
    # stands; a fail stands if it still fails without that stall; otherwise nothing is proven.
    assert _row(1000, lag=20.0)["verdict"] == "pass"
    assert _row(1000, p99=60.0, lag=20.0, lag_max=25.0)["verdict"] == "inconclusive"
    assert _row(1000, p99=800.0, lag=20.0, lag_max=25.0)["verdict"] == "fail"
    assert _row(1000, p99=60.0, cpu=0.9, lag_max=15.0)["verdict"] == "inconclusive"
    assert _row(1000, p99=60.0, cpu=0.9)["verdict"] == "fail"  # busy, yet it kept schedule
    assert _row(1000, deliv=90.0, lag=20.0)["verdict"] == "fail"  # lag loses no message
    assert _row(1000, deliv=90.0, cpu=0.9)["verdict"] == "inconclusive"


def test_overload_and_disturbance() -> None:
    ok = {"offered_per_s": 1000, "delivered_in_window_per_s": 998.0, "drain_s": 0.0}
    assert not report.overloaded(ok)
    assert report.overloaded(ok | {"delivered_in_window_per_s": 650.0})
    assert report.overloaded(ok | {"drain_s": 2.5})
    assert report.disturbance({"others_cores": {"server_core": 0.05}}) is None
    assert "0.68" in str(report.disturbance({"others_cores": {"server_core": 0.68}}))


def test_knee_and_ratio() -> None:
    im = report.knee([_row(500), _row(1000), _row(2500, p99=60.0), _row(5000, deliv=65.0)])
    assert im == {"rate": 1000, "capped": False, "inconclusive_above": False, "non_monotone": False}
    relay = report.knee([_row(500), _row(1000), _row(2500), _row(5000, p99=70.0)])
    assert report.ratio(im, relay) == {"value": 0.4, "kind": "measured"}
    capped = report.knee([_row(500), _row(1000)])
    assert capped["capped"] and report.ratio(im, capped)["kind"].startswith("upper bound")
    noisy = report.knee([_row(500, p99=90.0), _row(1000), _row(2500, p99=60.0, lag=30.0)])
    assert noisy["rate"] == 1000 and noisy["non_monotone"] and noisy["inconclusive_above"]
    none = report.knee([_row(500, p99=90.0)])
    assert none["rate"] is None and report.ratio(none, relay)["value"] == 0.0


@pytest.mark.slow
def test_smoke_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "open_loop.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.open_loop", "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,  # a hang guard, not a performance bound (a run takes ~30 s)
        env={k: v for k, v in os.environ.items() if not k.startswith("IM_")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = orjson.loads(out.read_bytes())
    assert set(doc["setups"]) == {"relay", "im1", "im2"}
    pinned = (os.cpu_count() or 1) >= 2
    for key, setup in doc["setups"].items():
        assert "error" not in setup, setup
        assert setup["connections"] == 50
        assert setup["warmup"]["complete"] == setup["warmup"]["messages"] == 50
        assert setup["errors"] == {}
        groups = {"relay": {"server"}, "im1": {"server", "postgres"}}.get(
            key, {"server", "postgres", "nats"}
        )
        assert set(setup["pinned"]) == groups | {"loadgen"}
        if pinned:
            assert all(setup["pinned"][g] == [0] for g in groups)
            assert setup["pinned"]["loadgen"] == [1]
        assert [r["offered_per_s"] for r in setup["steps"]] == [100.0, 200.0]
        for row in setup["steps"]:
            assert row["sent"] == pytest.approx(row["offered_per_s"] * 2, abs=2)
            # Liveness: at 100-200 msgs/s everything arrives within the drain.
            assert 99.0 <= row["delivered_pct"] <= 100.0
            assert row["acked_pct"] == 100.0
            for f in ("p50_ms", "p99_ms", "p999_ms"):
                assert row["deliver"][f] > 0
            assert row["ack"]["p99_ms"] > 0
            for g in groups:
                assert row[f"{g}_us_per_msg"] is not None
            assert row["rss_kib_per_conn"] > 0
            assert 0 < row["loadgen_cpu"] < 1.5
            assert row["verdict"] in ("pass", "fail", "inconclusive")
            assert {"overloaded", "disturbed", "generator_limited"} <= set(row)
            assert row["errors"] == {}
        assert set(setup["knee"]) == {"rate", "capped", "inconclusive_above", "non_monotone"}
    assert set(doc["ratios"]) == {"im1", "im2"}
    assert "knee(im1)/knee(relay)" in proc.stdout
