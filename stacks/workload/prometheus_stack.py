"""The Prometheus Operator (with Prometheus, Alertmanager and Grafana) from the pinned
kube-prometheus-stack Helm chart: what the PodMonitor, the PrometheusRule and the dashboard
ConfigMap of ``stacks.workload.monitoring`` need in a cluster.

One ``helm.v3.Release`` rather than a ``helm.v4.Chart``: Helm installs the chart's CRDs (its
``crds/`` directory) before any template, and the release is a single resource the custom
resources can depend on. A v4 Chart renders every object into its own Pulumi resource, which
needs the chart fetched and rendered at plan time (impossible offline) and turns one install
into hundreds of registrations. The price: Helm installs CRDs once and never upgrades them, so
raising ``CHART_VERSION`` needs the new CRDs applied first (docs/stacks.md, "Monitoring").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s

from stacks.workload.helm import pinned_release

CHART: Final = "kube-prometheus-stack"
# prometheus-operator v0.93.1; tests/stacks/crds holds the CRDs of exactly this chart version.
CHART_VERSION: Final = "88.5.3"
CHART_REPO: Final = "https://prometheus-community.github.io/helm-charts"
# Fixed, not auto-named: the chart labels its objects and selectors with the release name.
RELEASE_NAME: Final = "kube-prometheus-stack"
NAMESPACE: Final = "monitoring"

# What the chart's Prometheus selects PodMonitors and PrometheusRules by (set explicitly in the
# values below, in every namespace); our custom resources carry it.
SELECTOR_LABELS: Final = {"release": RELEASE_NAME}
# What the chart's Grafana dashboard sidecar loads ConfigMaps by (in every namespace).
DASHBOARD_LABEL: Final = "grafana_dashboard"
DASHBOARD_LABEL_VALUE: Final = "1"
# Each apply waits for the release's pods; on a fresh stack the node group may still be coming
# up when the release starts, so allow for the nodes as well as the pods.
TIMEOUT_SECONDS: Final = 900


def values() -> dict[str, Any]:
    """The chart values: everything not set keeps the chart's default."""
    select_ours = {"matchLabels": dict(SELECTOR_LABELS)}
    return {
        "crds": {"enabled": True},
        "prometheus": {
            "prometheusSpec": {
                # Explicit selectors: the objects are picked up by label, whatever the
                # chart's *SelectorNilUsesHelmValues defaults become. {} namespace selectors
                # mean every namespace (the workload lives in its own).
                "podMonitorSelector": select_ours,
                "podMonitorNamespaceSelector": {},
                "ruleSelector": select_ours,
                "ruleNamespaceSelector": {},
            }
        },
        "grafana": {
            "sidecar": {
                "dashboards": {
                    "enabled": True,
                    "label": DASHBOARD_LABEL,
                    "labelValue": DASHBOARD_LABEL_VALUE,
                    "searchNamespace": "ALL",
                }
            }
        },
        # Managed control planes (EKS, GKE, ACK) expose no scheduler, controller-manager or
        # etcd endpoints to scrape, and GKE's Dataplane V2 has no kube-proxy: left on, their
        # scrape jobs only fire TargetDown alerts.
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeEtcd": {"enabled": False},
        "kubeProxy": {"enabled": False},
    }


@dataclass(frozen=True, slots=True)
class PrometheusStackArgs:
    provider: pulumi.ProviderResource


class PrometheusStack(pulumi.ComponentResource):
    """The ``monitoring`` namespace and the Helm release. ``release`` is what every
    ``monitoring.coreos.com`` object must depend on: it installs their CRDs."""

    release: k8s.helm.v3.Release

    def __init__(
        self, name: str, args: PrometheusStackArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:workload:PrometheusStack", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=NAMESPACE,
                labels={
                    "app.kubernetes.io/part-of": "imctl",
                    # node-exporter runs with the host's network, PID namespace and root
                    # filesystem: no Pod Security level below privileged admits it.
                    "pod-security.kubernetes.io/enforce": "privileged",
                },
            ),
            opts=child,
        )
        self.release = pinned_release(
            f"{name}-release",
            name=RELEASE_NAME,
            chart=CHART,
            version=CHART_VERSION,
            repo=CHART_REPO,
            namespace=NAMESPACE,
            values=values(),
            timeout=TIMEOUT_SECONDS,
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(depends_on=[self.namespace])
            ),
        )
        self.register_outputs({"release": self.release.name})
