"""Judging a sweep (valid steps, the knee) and printing it; pure functions of the JSON document."""

from __future__ import annotations

from typing import Any

from bench.open_loop.driver import LOOKAHEAD

# The generator is one process on one core driving every session. Past these it may be the
# limit rather than the server, and the step's figures say nothing about the server.
GEN_CPU_LIMIT = 0.85  # share of its core
GEN_LAG_LIMIT_MS = 5.0  # p99 of its scheduler's wakeups behind plan
LOOKAHEAD_MS = LOOKAHEAD * 1000.0
# Other processes on the server core above this (cores) mark a step as disturbed.
DISTURBED_CORES = 0.2


def generator_verdict(row: dict[str, Any]) -> str | None:
    """Why the generator may have been the limit in a step, or None."""
    reasons = []
    if row["loadgen_cpu"] >= GEN_CPU_LIMIT:
        reasons.append(f"generator used {row['loadgen_cpu']:.2f} of its core")
    if row["send_lag_p99_ms"] >= GEN_LAG_LIMIT_MS:
        why = f"generator ran {row['send_lag_p99_ms']:.1f} ms behind schedule (p99)"
        others = row.get("others_cores", {}).get("client_core")
        if others is not None and others >= 0.2:
            why += f" while other processes took {others:.2f} of its core"
        reasons.append(why)
    return "; ".join(reasons) or None


def passes(row: dict[str, Any], min_delivered_pct: float, p99_limit_ms: float) -> bool:
    return bool(
        row["delivered_pct"] >= min_delivered_pct and row["deliver"]["p99_ms"] < p99_limit_ms
    )


def verdict(row: dict[str, Any], min_delivered_pct: float, p99_limit_ms: float) -> str:
    """pass, fail, or inconclusive.

    Latency counts from the scheduled send time, so a generator that falls behind can only
    make the server look worse, and by at most its longest stall (a stalled generator sends
    late and reads late by that much): a pass holds whatever the generator did, and a fail holds
    when p99 minus that stall still misses the bound. Otherwise the miss may be the generator's:
    inconclusive."""
    if passes(row, min_delivered_pct, p99_limit_ms):
        return "pass"
    if generator_verdict(row) is None:
        return "fail"
    # The lookahead: the scheduler's lag is read at wakeups up to 2 ms apart.
    stall = row["send_lag_max_ms"] + LOOKAHEAD_MS
    if row["deliver"]["p99_ms"] - stall >= p99_limit_ms:
        return "fail"
    if row["delivered_pct"] < min_delivered_pct and row["loadgen_cpu"] < GEN_CPU_LIMIT:
        return "fail"  # a generator with CPU to spare loses nothing in a 5 s drain
    return "inconclusive"


def overloaded(row: dict[str, Any]) -> bool:
    """The server did not keep up with the offered rate: a backlog grew during the window."""
    return bool(
        row["delivered_in_window_per_s"] < 0.9 * row["offered_per_s"] or row["drain_s"] >= 1.0
    )


def disturbance(row: dict[str, Any]) -> str | None:
    """Other processes' share of the server core in the window, when it is large enough to
    matter (the server side then had less than its core)."""
    others = row.get("others_cores", {}).get("server_core")
    if others is not None and others >= DISTURBED_CORES:
        return f"others took {others:.2f} of the server core"
    return None


def knee(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The highest offered rate that passed.

    ``capped``: it is the sweep's top rate, so the true knee is at least that (a ratio against it
    is a bound, not a figure). ``inconclusive_above``: a higher rate failed while the generator
    was the limit, so the knee may be higher. ``non_monotone``: a lower rate failed for real,
    which on a shared machine is usually another process's burst; the rows say which."""
    ok = [r["offered_per_s"] for r in rows if r["verdict"] == "pass"]
    if not ok:
        k = None
        capped = non_monotone = False
        above = any(r["verdict"] == "inconclusive" for r in rows)
    else:
        k = max(ok)
        capped = k >= max(r["offered_per_s"] for r in rows)
        non_monotone = any(r["verdict"] == "fail" and r["offered_per_s"] < k for r in rows)
        above = any(r["verdict"] == "inconclusive" and r["offered_per_s"] > k for r in rows)
    return {"rate": k, "capped": capped, "inconclusive_above": above, "non_monotone": non_monotone}


def ratio(im: dict[str, Any], relay: dict[str, Any]) -> dict[str, Any]:
    """knee(im)/knee(relay), with what kind of figure it is."""
    ki, kr = im["rate"], relay["rate"]
    if not kr:
        return {"value": None, "kind": "the relay has no knee in this sweep"}
    if not ki:
        return {"value": 0.0, "kind": "im-server has no knee in this sweep"}
    value = round(ki / kr, 3)
    im_low = im["capped"] or im["inconclusive_above"]
    relay_low = relay["capped"] or relay["inconclusive_above"]
    if im_low and relay_low:
        kind = "both knees are lower bounds: no figure (extend --rates, or a quieter machine)"
    elif relay_low:
        kind = "upper bound (the relay's knee is a lower bound)"
    elif im_low:
        kind = "lower bound (im-server's knee is a lower bound)"
    else:
        kind = "measured"
    return {"value": value, "kind": kind}


def _f(x: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


HEADER = (
    f"{'offered/s':>9} {'deliv%':>7} {'p50':>7} {'p99':>7} {'p99.9':>7} {'ack p99':>7} │"
    f" {'server':>6} {'PG':>6} {'NATS':>5} µs/msg │ {'RSS':>5} │"
    f" {'gen cpu':>7} {'gen µs':>6} {'lag p99':>7} │ {'others c0/c1':>12} │ verdict"
)


def row_line(r: dict[str, Any]) -> str:
    d, a = r["deliver"], r["ack"]
    notes = []
    if r.get("generator_limited"):
        # The step's latencies are not the server's alone; the verdict already allows for it.
        bound = r["send_lag_max_ms"] + LOOKAHEAD_MS
        notes.append(
            f"generator-limited, latencies invalid (overstated by up to {bound:.0f} ms):"
            f" {r['generator_limited']}"
        )
    if r.get("disturbed"):
        notes.append(f"disturbed: {r['disturbed']}")
    if r.get("overloaded"):
        notes.append("overloaded: a backlog grew")
    if r.get("errors"):
        notes.append("errors " + ", ".join(f"{k} {n}" for k, n in r["errors"].items()))
    verdict = r["verdict"] + (f" ({'; '.join(notes)})" if notes else "")
    others = r.get("others_cores", {})
    o_srv, o_cli = _f(others.get("server_core"), "{:.2f}"), _f(others.get("client_core"), "{:.2f}")
    return (
        f"{r['offered_per_s']:>9,.0f} {r['delivered_pct']:>7.2f} {d['p50_ms']:>7.2f}"
        f" {d['p99_ms']:>7.2f} {d['p999_ms']:>7.2f} {a['p99_ms']:>7.2f} │"
        f" {_f(r.get('server_us_per_msg')):>6} {_f(r.get('postgres_us_per_msg')):>6}"
        f" {_f(r.get('nats_us_per_msg')):>5}        │ {_f(r.get('rss_kib_per_conn')):>5} │"
        f" {r['loadgen_cpu']:>7.2f} {r['loadgen_us_per_msg']:>6.1f} {r['send_lag_p99_ms']:>7.2f} │"
        f" {o_srv:>5}/{o_cli:<6} │"
        f" {verdict}"
    )


def table(doc: dict[str, Any]) -> str:
    cfg = doc["config"]
    lines = [
        f"open loop: {cfg['connections']:,} connections, {cfg['senders']:,} senders x"
        f" {cfg['peers']} fixed peers, {cfg['body_bytes']}-byte bodies, {cfg['duration']:g} s per"
        f" rate (after {cfg['lead_in']:g} s unmeasured); server side on CPU {cfg['server_cpus']},"
        f" generator on CPU {cfg['client_cpus']}",
        "latencies in ms from the scheduled send time; µs/msg = CPU per message delivered in the"
        " window; RSS = server KiB per connection; others = cores used by anything not ours",
    ]
    for key, setup in doc["setups"].items():
        lines.append("")
        if "error" in setup:
            lines.append(f"{key}: ERROR {setup['error']}")
            continue
        k = setup["knee"]
        if k["rate"] is None:
            knee_s = "none"
        else:
            knee_s = f"{'>=' if k['capped'] or k['inconclusive_above'] else ''}{k['rate']:,.0f}/s"
        if k["capped"]:
            knee_s += " (the top rate passed)"
        if k["inconclusive_above"]:
            knee_s += " (a higher rate was inconclusive)"
        if k["non_monotone"]:
            knee_s += " (a lower rate failed: noise?)"
        lines.append(f"{setup['name']}: knee {knee_s}; pinned {setup['pinned']}")
        lines.append(HEADER)
        lines += [row_line(r) for r in setup["steps"]]
        if setup.get("skipped_rates"):
            rates = ", ".join(f"{x:,.0f}" for x in setup["skipped_rates"])
            lines.append(f"  not run (past the knee): {rates}")
    if doc.get("ratios"):
        lines.append("")
        for key, r in doc["ratios"].items():
            lines.append(f"knee({key})/knee(relay) = {_f(r['value'], '{:.2f}')} ({r['kind']})")
    return "\n".join(lines)
