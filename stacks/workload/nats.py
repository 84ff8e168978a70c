"""A clustered NATS (core, no JetStream) as the fan-out bus between im-server pods.

NATS holds nothing that cannot be rebuilt (clients recover gaps with ``sync``), so the
StatefulSet has no volumes; it is a StatefulSet only for the stable names the routes need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_kubernetes as k8s

from stacks.workload.placement import anti_affinity, restricted_container, restricted_pod

NATS_IMAGE: Final = "nats:2.10.22-alpine"
NATS_REPLICAS: Final = 3
CLIENT_PORT: Final = 4222
CLUSTER_PORT: Final = 6222
MONITOR_PORT: Final = 8222
LABELS: Final = {"app": "nats", "app.kubernetes.io/part-of": "imctl"}


@dataclass(frozen=True, slots=True)
class NatsArgs:
    namespace: str
    provider: pulumi.ProviderResource


def routes(namespace: str, replicas: int = NATS_REPLICAS) -> str:
    return ",".join(
        f"nats://nats-{i}.nats-headless.{namespace}.svc.cluster.local:{CLUSTER_PORT}"
        for i in range(replicas)
    )


class Nats(pulumi.ComponentResource):
    url: str

    def __init__(
        self, name: str, args: NatsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:workload:Nats", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        ns = args.namespace
        port = k8s.core.v1.ServicePortArgs
        self.headless = k8s.core.v1.Service(
            f"{name}-headless",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="nats-headless", namespace=ns, labels=LABELS),
            spec=k8s.core.v1.ServiceSpecArgs(
                cluster_ip="None",
                # Routes must resolve while peers are still starting, or the cluster never forms.
                publish_not_ready_addresses=True,
                selector={"app": "nats"},
                ports=[
                    port(name="client", port=CLIENT_PORT),
                    port(name="cluster", port=CLUSTER_PORT),
                    port(name="monitor", port=MONITOR_PORT),
                ],
            ),
            opts=child,
        )
        self.client = k8s.core.v1.Service(
            f"{name}-client",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="nats", namespace=ns, labels=LABELS),
            spec=k8s.core.v1.ServiceSpecArgs(
                selector={"app": "nats"}, ports=[port(name="client", port=CLIENT_PORT)]
            ),
            opts=child,
        )
        container = k8s.core.v1.ContainerArgs(
            name="nats",
            image=NATS_IMAGE,
            args=[
                "--name=$(POD_NAME)",
                f"--port={CLIENT_PORT}",
                f"--http_port={MONITOR_PORT}",
                "--cluster_name=im",
                f"--cluster=nats://0.0.0.0:{CLUSTER_PORT}",
                f"--routes={routes(ns)}",
            ],
            env=[
                k8s.core.v1.EnvVarArgs(
                    name="POD_NAME",
                    value_from=k8s.core.v1.EnvVarSourceArgs(
                        field_ref=k8s.core.v1.ObjectFieldSelectorArgs(field_path="metadata.name")
                    ),
                )
            ],
            ports=[
                k8s.core.v1.ContainerPortArgs(name="client", container_port=CLIENT_PORT),
                k8s.core.v1.ContainerPortArgs(name="cluster", container_port=CLUSTER_PORT),
                k8s.core.v1.ContainerPortArgs(name="monitor", container_port=MONITOR_PORT),
            ],
            readiness_probe=k8s.core.v1.ProbeArgs(
                http_get=k8s.core.v1.HTTPGetActionArgs(path="/healthz", port=MONITOR_PORT),
                period_seconds=5,
            ),
            liveness_probe=k8s.core.v1.ProbeArgs(
                http_get=k8s.core.v1.HTTPGetActionArgs(path="/healthz", port=MONITOR_PORT),
                initial_delay_seconds=10,
                period_seconds=10,
            ),
            resources=k8s.core.v1.ResourceRequirementsArgs(
                requests={"cpu": "100m", "memory": "128Mi"}, limits={"memory": "512Mi"}
            ),
            security_context=restricted_container(),
        )
        self.statefulset = k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="nats", namespace=ns, labels=LABELS),
            spec=k8s.apps.v1.StatefulSetSpecArgs(
                service_name="nats-headless",
                replicas=NATS_REPLICAS,
                pod_management_policy="Parallel",
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"app": "nats"}),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=LABELS),
                    spec=k8s.core.v1.PodSpecArgs(
                        containers=[container],
                        termination_grace_period_seconds=30,
                        security_context=restricted_pod(),
                        affinity=anti_affinity("nats"),
                    ),
                ),
            ),
            opts=child,
        )
        self.pdb = k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="nats", namespace=ns, labels=LABELS),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"app": "nats"}),
            ),
            opts=child,
        )
        self.url = f"nats://nats.{ns}.svc.cluster.local:{CLIENT_PORT}"
        self.register_outputs({"url": self.url})
