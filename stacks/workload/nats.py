"""A clustered NATS (core, no JetStream) as the fan-out bus between im-server pods.

NATS holds nothing that cannot be rebuilt (clients recover gaps with ``sync``), so the
StatefulSet has no data volumes; it is a StatefulSet only for the stable names the routes need.

Every connection logs in. The whole configuration is a file from the Secret ``nats`` (mode 0440,
group of the pod's fsGroup): clients log in as ``im`` (checked against a bcrypt hash, so the
NATS pods never hold im-server's password), routes between the servers as ``route``. Nothing
secret is in the container's args, which anyone who can read the pod spec sees. The monitoring
port serves the kubelet's probes only: no Service publishes it and no NetworkPolicy opens it.
"""

from __future__ import annotations

import json
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
CLIENT_USER: Final = "im"
ROUTE_USER: Final = "route"
SECRET_NAME: Final = "nats"
CONFIG_KEY: Final = "nats.conf"
CONFIG_DIR: Final = "/etc/nats"


@dataclass(frozen=True, slots=True)
class NatsArgs:
    namespace: str
    provider: pulumi.ProviderResource
    client_password_bcrypt: pulumi.Input[str]
    route_password: pulumi.Input[str]


def routes(namespace: str, route_password: str, replicas: int = NATS_REPLICAS) -> list[str]:
    return [
        f"nats://{ROUTE_USER}:{route_password}@nats-{i}.nats-headless.{namespace}"
        f".svc.cluster.local:{CLUSTER_PORT}"
        for i in range(replicas)
    ]


def config(namespace: str, client_password_bcrypt: str, route_password: str) -> str:
    """nats.conf; the server name comes from the pod (``--name``), the rest from here."""
    q = json.dumps  # a JSON string is a valid quoted string in the NATS config format
    route_list = ", ".join(q(r) for r in routes(namespace, route_password))
    return "\n".join(
        [
            f"port: {CLIENT_PORT}",
            f"http_port: {MONITOR_PORT}",
            "authorization {",
            f"  user: {q(CLIENT_USER)}",
            f"  password: {q(client_password_bcrypt)}",
            "}",
            "cluster {",
            "  name: im",
            f"  listen: {q(f'0.0.0.0:{CLUSTER_PORT}')}",
            "  authorization {",
            f"    user: {q(ROUTE_USER)}",
            f"    password: {q(route_password)}",
            "  }",
            f"  routes: [{route_list}]",
            "}",
            "",
        ]
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
        conf: pulumi.Output[str] = pulumi.Output.all(
            args.client_password_bcrypt, args.route_password
        ).apply(lambda pw: config(ns, pw[0], pw[1]))
        secret_conf: pulumi.Output[str] = pulumi.Output.secret(conf)
        self.secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=SECRET_NAME, namespace=ns, labels=LABELS),
            type="Opaque",
            string_data={CONFIG_KEY: secret_conf},
            opts=child,
        )
        container = k8s.core.v1.ContainerArgs(
            name="nats",
            image=NATS_IMAGE,
            args=[f"--config={CONFIG_DIR}/{CONFIG_KEY}", "--name=$(POD_NAME)"],
            volume_mounts=[
                k8s.core.v1.VolumeMountArgs(name="config", mount_path=CONFIG_DIR, read_only=True)
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
                        # NATS never calls the Kubernetes API; a token would only be loot.
                        automount_service_account_token=False,
                        volumes=[
                            k8s.core.v1.VolumeArgs(
                                name="config",
                                secret=k8s.core.v1.SecretVolumeSourceArgs(
                                    secret_name=SECRET_NAME,
                                    items=[
                                        k8s.core.v1.KeyToPathArgs(key=CONFIG_KEY, path=CONFIG_KEY)
                                    ],
                                    # Owner and the pod's fsGroup (the NATS user) only.
                                    default_mode=0o440,
                                ),
                            )
                        ],
                        termination_grace_period_seconds=30,
                        security_context=restricted_pod(),
                        affinity=anti_affinity("nats"),
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(depends_on=[self.secret])
            ),
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
