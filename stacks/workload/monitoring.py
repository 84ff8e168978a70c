"""Grafana dashboard and Prometheus alert rules for im-server, and the component that ships them.

The metric names are the server's (im_server/metrics.py); a test checks every one is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s

from stacks.workload.prometheus_stack import (
    DASHBOARD_LABEL,
    DASHBOARD_LABEL_VALUE,
    SELECTOR_LABELS,
)

METRICS: Final = (
    "im_connections",
    "im_frames_in_total",
    "im_frames_out_total",
    "im_ack_latency_seconds",
    "im_db_errors_total",
    "im_draining",
    "im_bus_connected",
)

# Alerts select on the job label the PodMonitor sets from the pods' app label.
JOB: Final = 'job="im-server"'


def _panel(
    panel_id: int, title: str, exprs: list[tuple[str, str]], unit: str, x: int, y: int
) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def dashboard(title: str = "im-server") -> dict[str, Any]:
    """A Grafana dashboard model (schemaVersion 39) over the server's metrics."""
    panels = [
        _panel(1, "Open connections", [(f"sum(im_connections{{{JOB}}})", "total")], "short", 0, 0),
        _panel(
            2,
            "Frames in/out by type",
            [
                (f"sum by (type) (rate(im_frames_in_total{{{JOB}}}[5m]))", "in {{type}}"),
                (f"sum by (type) (rate(im_frames_out_total{{{JOB}}}[5m]))", "out {{type}}"),
            ],
            "ops",
            12,
            0,
        ),
        _panel(
            3,
            "Ack latency",
            [
                (
                    f"histogram_quantile({q}, sum by (le) "
                    f"(rate(im_ack_latency_seconds_bucket{{{JOB}}}[5m])))",
                    f"p{int(q * 100)}",
                )
                for q in (0.5, 0.99)
            ],
            "s",
            0,
            8,
        ),
        _panel(
            4,
            "Database errors",
            [(f"sum(rate(im_db_errors_total{{{JOB}}}[5m]))", "errors/s")],
            "ops",
            12,
            8,
        ),
        _panel(
            5,
            "Draining nodes / bus connected",
            [
                (f"sum(im_draining{{{JOB}}})", "draining"),
                (f"min(im_bus_connected{{{JOB}}})", "bus connected (min)"),
            ],
            "short",
            0,
            16,
        ),
    ]
    return {
        "title": title,
        "uid": "imctl-im-server",
        "schemaVersion": 39,
        "tags": ["imctl", "im-server"],
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]
        },
        "panels": panels,
    }


def alert_rules(replication_lag_expr: str) -> list[dict[str, Any]]:
    """PrometheusRule groups. ``replication_lag_expr`` is cloud-specific: the replica's lag comes
    from the cloud's metrics exporter, not from im-server."""

    def rule(name: str, expr: str, for_: str, severity: str, summary: str) -> dict[str, Any]:
        return {
            "alert": name,
            "expr": expr,
            "for": for_,
            "labels": {"severity": severity},
            "annotations": {"summary": summary},
        }

    return [
        {
            "name": "im-server",
            "rules": [
                rule(
                    "ImServerNodeDown",
                    f"up{{{JOB}}} == 0",
                    "2m",
                    "critical",
                    "An im-server pod has not answered /metrics for 2 minutes.",
                ),
                rule(
                    "ImServerAckLatencyHigh",
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(im_ack_latency_seconds_bucket{{{JOB}}}[5m]))) > 0.5",
                    "10m",
                    "warning",
                    "p99 send-to-ack latency above 500 ms for 10 minutes.",
                ),
                rule(
                    "ImServerDatabaseErrors",
                    f"sum(rate(im_db_errors_total{{{JOB}}}[5m])) > 0.1",
                    "5m",
                    "critical",
                    "im-server reports failing database operations.",
                ),
                rule(
                    "ImServerConnectionDrop",
                    f"(sum(im_connections{{{JOB}}} offset 5m) - sum(im_connections{{{JOB}}}))"
                    f" > 0.3 * sum(im_connections{{{JOB}}} offset 5m)"
                    f" and sum(im_connections{{{JOB}}} offset 5m) > 100",
                    "1m",
                    "critical",
                    "More than 30% of connections dropped within 5 minutes.",
                ),
                rule(
                    "ImServerBusDisconnected",
                    f"min(im_bus_connected{{{JOB}}}) == 0 and sum(im_draining{{{JOB}}}) == 0",
                    "2m",
                    "warning",
                    "A node lost NATS: its clients see other nodes' messages only via sync.",
                ),
            ],
        },
        {
            "name": "im-database",
            "rules": [
                rule(
                    "ImDatabaseReplicationLag",
                    replication_lag_expr,
                    "5m",
                    "warning",
                    "The standby database lags the primary: failover would lose recent acks.",
                ),
            ],
        },
    ]


@dataclass(frozen=True, slots=True)
class MonitoringArgs:
    namespace: pulumi.Input[str]
    provider: pulumi.ProviderResource
    replication_lag_expr: str
    # What installs the Prometheus Operator's CRDs (the kube-prometheus-stack release): the
    # PodMonitor and PrometheusRule wait for it. None (monitoring=false): neither is created,
    # only the dashboard ConfigMap and the pods' scrape annotations.
    operator: pulumi.Resource | None = None


class Monitoring(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:workload:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        labels = {"app.kubernetes.io/part-of": "imctl"}
        self.dashboard = k8s.core.v1.ConfigMap(
            f"{name}-dashboard",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="im-server-dashboard",
                namespace=args.namespace,
                # The Grafana sidecar of kube-prometheus-stack loads ConfigMaps with this label.
                labels={**labels, DASHBOARD_LABEL: DASHBOARD_LABEL_VALUE},
            ),
            data={"im-server.json": json.dumps(dashboard(), sort_keys=True)},
            opts=child,
        )
        self.pod_monitor: k8s.apiextensions.CustomResource | None = None
        self.rules: k8s.apiextensions.CustomResource | None = None
        if args.operator is not None:
            # The operator's Prometheus selects by these labels; the CRDs exist only once the
            # release is installed, so the API server would reject the objects before it.
            crd_opts = pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(depends_on=[args.operator])
            )
            selected = {**labels, **SELECTOR_LABELS}
            self.pod_monitor = k8s.apiextensions.CustomResource(
                f"{name}-podmonitor",
                api_version="monitoring.coreos.com/v1",
                kind="PodMonitor",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name="im-server", namespace=args.namespace, labels=selected
                ),
                spec={
                    "jobLabel": "app",
                    "selector": {"matchLabels": {"app": "im-server"}},
                    "podMetricsEndpoints": [
                        {"port": "http", "path": "/metrics", "interval": "15s"}
                    ],
                },
                opts=crd_opts,
            )
            self.rules = k8s.apiextensions.CustomResource(
                f"{name}-rules",
                api_version="monitoring.coreos.com/v1",
                kind="PrometheusRule",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name="im-server", namespace=args.namespace, labels=selected
                ),
                spec={"groups": alert_rules(args.replication_lag_expr)},
                opts=crd_opts,
            )
        self.register_outputs({"dashboard": self.dashboard.metadata.name})
