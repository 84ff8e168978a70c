"""Prometheus metrics, one registry per server instance (tests run several in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram

from im_server.protocol import CLIENT_FRAME_TYPES

OUT_TYPES = (
    "welcome",
    "ack",
    "msg",
    "batch",
    "error",
    "reconnect",
    "typing",
    "presence",
    "reply",
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge("im_connections", "Open WebSocket sessions", registry=r)
        self.frames_in = Counter(
            "im_frames_in_total", "Client frames received, by type", ["type"], registry=r
        )
        self.frames_out = Counter(
            "im_frames_out_total", "Frames sent to clients, by type", ["type"], registry=r
        )
        self.ack_latency = Histogram(
            "im_ack_latency_seconds",
            "From a send frame's arrival to its ack (after commit)",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.batch_size = Histogram(
            "im_send_batch_size",
            "Sends committed per transaction (group commit)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=r,
        )
        self.db_errors = Counter("im_db_errors_total", "Failed database operations", registry=r)
        self.draining = Gauge("im_draining", "1 while the node drains", registry=r)
        self.bus_connected = Gauge("im_bus_connected", "1 while NATS is connected", registry=r)
        self.errors = Counter("im_errors_total", "Error frames sent, by code", ["code"], registry=r)
        self.dropped_slow = Counter(
            "im_slow_consumer_closes_total", "Sessions closed for not reading", registry=r
        )
        self.db_up = Gauge(
            "im_database_up", "1 while the database answers the probe within 2 s", registry=r
        )
        self.writes_state = Enum(
            "im_writes",
            "Whether commits go through (ok), wait (blocked), or are not replicated"
            " synchronously although the stack wants it (unprotected)",
            states=["unknown", "ok", "blocked", "unprotected"],
            registry=r,
        )
        self.send_timeouts = Counter(
            "im_send_timeouts_total",
            "Sends answered by the send timeout (unavailable or outcome_unknown)",
            registry=r,
        )
        # Resolve label children once: the hot path then costs one inc().
        self.in_by_type = {t: self.frames_in.labels(t) for t in CLIENT_FRAME_TYPES}
        self.in_unknown = self.frames_in.labels("unknown")
        self.out_by_type = {t: self.frames_out.labels(t) for t in OUT_TYPES}
        # bus auth (issue 12): frames from the bus that a node refused to act on.
        self.bus_dropped = Counter(
            "im_bus_dropped",
            "Malformed bus frames dropped, by subject family (user, presence, query, unknown)",
            ["subject"],
            registry=r,
        )
