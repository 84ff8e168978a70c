"""im-server on Kubernetes: Secret, migration Job, Deployment, Service, HPA, PDB, NetworkPolicy.

Shutdown is the part that must line up with the server: Kubernetes runs the preStop sleep (so
load balancers stop routing new connections), then sends SIGTERM; the server drains for
``IM_DRAIN_GRACE_SECONDS`` (readiness false, ``reconnect`` to clients, in-flight sends finish,
close 1012); ``terminationGracePeriodSeconds`` covers both plus a margin before SIGKILL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import pulumi
import pulumi_kubernetes as k8s

from stacks.config import PRESTOP_SLEEP_SECONDS, Role
from stacks.workload.placement import (
    anti_affinity,
    restricted_container,
    restricted_pod,
    zone_spread,
)
from stacks.workload_contract import (
    DEPLOYMENT_NAME,
    HTTP_PORT,
    SECRET_ADMIN_TOKEN_KEY,
    SECRET_DB_URL_KEY,
    SECRET_JWT_KEY,
    SECRET_NAME,
    TLS_PORT,
)

# TLS (issue 13): TLS_PORT is clients' wss:// port in the pod; HTTP_PORT stays plain for
# probes and scrapes.
TLS_MOUNT: Final = "/etc/im-server/tls"
SERVER_UID: Final = 10001  # the non-root user of the Dockerfile
LABELS: Final = {"app": "im-server", "app.kubernetes.io/part-of": "imctl"}
MIGRATE_LABELS: Final = {"app": "im-server-migrate", "app.kubernetes.io/part-of": "imctl"}


@dataclass(frozen=True, slots=True)
class ImServerArgs:
    namespace: str
    provider: pulumi.ProviderResource
    image: pulumi.Input[str]  # repository@sha256:... when the stack built it
    role: Role
    replicas: int
    hpa_min: int
    hpa_max: int
    hpa_cpu_percent: int
    pdb_max_unavailable: int
    drain_grace_seconds: int
    termination_grace_seconds: int
    database_url: pulumi.Input[str]
    jwt_secret: pulumi.Input[str]
    admin_token: pulumi.Input[str]
    nats_url: str
    nats_user: str
    nats_password: pulumi.Input[str]
    service_annotations: Mapping[str, str] = field(default_factory=dict)
    image_pull_secret: str | None = None
    # TLS (issue 13): the Secret (tls.crt, tls.key) cert-manager keeps current; None: no TLS.
    tls_secret: str | None = None
    plaintext: bool = False  # also expose plain HTTP/ws:// on port 80


def _pull_secrets(args: ImServerArgs) -> list[k8s.core.v1.LocalObjectReferenceArgs] | None:
    if args.image_pull_secret is None:
        return None
    return [k8s.core.v1.LocalObjectReferenceArgs(name=args.image_pull_secret)]


def _secret_env(name: str, key: str) -> k8s.core.v1.EnvVarArgs:
    return k8s.core.v1.EnvVarArgs(
        name=name,
        value_from=k8s.core.v1.EnvVarSourceArgs(
            secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=SECRET_NAME, key=key)
        ),
    )


def server_env(args: ImServerArgs) -> list[k8s.core.v1.EnvVarArgs]:
    return [
        _secret_env("IM_DATABASE_URL", SECRET_DB_URL_KEY),
        _secret_env("IM_JWT_SECRET", SECRET_JWT_KEY),
        _secret_env("IM_ADMIN_TOKEN", SECRET_ADMIN_TOKEN_KEY),
        k8s.core.v1.EnvVarArgs(name="IM_NATS_URL", value=args.nats_url),
        # Env from the Secret, not args: the pod spec (args included) is readable more widely
        # than the Secret, and the server reads its bus login from these two variables.
        _secret_env("IM_NATS_USER", "nats-user"),
        _secret_env("IM_NATS_PASSWORD", "nats-password"),
        k8s.core.v1.EnvVarArgs(name="IM_DRAIN_GRACE_SECONDS", value=str(args.drain_grace_seconds)),
        k8s.core.v1.EnvVarArgs(
            name="IM_NODE_ID",
            value_from=k8s.core.v1.EnvVarSourceArgs(
                field_ref=k8s.core.v1.ObjectFieldSelectorArgs(field_path="metadata.name")
            ),
        ),
        *_tls_env(args),
    ]


def _tls_env(args: ImServerArgs) -> list[k8s.core.v1.EnvVarArgs]:
    if args.tls_secret is None:
        return []
    return [
        k8s.core.v1.EnvVarArgs(name="IM_TLS_CERT_FILE", value=f"{TLS_MOUNT}/tls.crt"),
        k8s.core.v1.EnvVarArgs(name="IM_TLS_KEY_FILE", value=f"{TLS_MOUNT}/tls.key"),
        k8s.core.v1.EnvVarArgs(name="IM_TLS_PORT", value=str(TLS_PORT)),
    ]


def _tls_volume(
    secret: str,
) -> tuple[k8s.core.v1.VolumeArgs, k8s.core.v1.VolumeMountArgs]:
    # Mounted as a directory (no subPath): the kubelet then swaps in renewed files, which the
    # server picks up. Until cert-manager has written the Secret the pod waits to start.
    return (
        k8s.core.v1.VolumeArgs(
            name="tls",
            secret=k8s.core.v1.SecretVolumeSourceArgs(secret_name=secret, default_mode=0o440),
        ),
        k8s.core.v1.VolumeMountArgs(name="tls", mount_path=TLS_MOUNT, read_only=True),
    )


def service_ports(args: ImServerArgs) -> list[k8s.core.v1.ServicePortArgs]:
    """443 to the TLS port; 80 to the plain one only when asked for (or without TLS)."""
    ports = []
    if args.tls_secret is not None:
        ports.append(
            k8s.core.v1.ServicePortArgs(name="https", port=443, target_port="https", protocol="TCP")
        )
    if args.plaintext or args.tls_secret is None:
        ports.append(
            k8s.core.v1.ServicePortArgs(name="http", port=80, target_port="http", protocol="TCP")
        )
    return ports


def _tmp_volume() -> tuple[k8s.core.v1.VolumeArgs, k8s.core.v1.VolumeMountArgs]:
    # The root filesystem is read-only; Python and asyncpg still want a writable /tmp.
    return (
        k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
        k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
    )


class ImServer(pulumi.ComponentResource):
    endpoint: pulumi.Output[str]
    deployment_name: str = DEPLOYMENT_NAME

    def __init__(
        self, name: str, args: ImServerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:workload:ImServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        ns = args.namespace
        meta = k8s.meta.v1.ObjectMetaArgs
        tmp_volume, tmp_mount = _tmp_volume()
        volumes, mounts = [tmp_volume], [tmp_mount]
        container_ports = [k8s.core.v1.ContainerPortArgs(name="http", container_port=HTTP_PORT)]
        if args.tls_secret is not None:
            tls_volume, tls_mount = _tls_volume(args.tls_secret)
            volumes.append(tls_volume)
            mounts.append(tls_mount)
            container_ports.append(
                k8s.core.v1.ContainerPortArgs(name="https", container_port=TLS_PORT)
            )

        self.secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata=meta(name=SECRET_NAME, namespace=ns, labels=LABELS),
            type="Opaque",
            string_data={
                SECRET_DB_URL_KEY: args.database_url,
                SECRET_JWT_KEY: args.jwt_secret,
                SECRET_ADMIN_TOKEN_KEY: args.admin_token,
                "nats-user": args.nats_user,
                "nats-password": args.nats_password,
            },
            opts=child,
        )
        self.service_account = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata=meta(name="im-server", namespace=ns, labels=LABELS),
            automount_service_account_token=False,
            opts=child,
        )

        # The standby's database is a read-only replica: migrations run where writes happen.
        self.migration: k8s.batch.v1.Job | None = None
        if args.role == "primary":
            self.migration = k8s.batch.v1.Job(
                f"{name}-migrate",
                # No fixed name: a new image gets a new Job (Jobs are immutable), and Pulumi
                # waits for it to succeed before rolling the Deployment that depends on it.
                metadata=meta(namespace=ns, labels=MIGRATE_LABELS),
                spec=k8s.batch.v1.JobSpecArgs(
                    backoff_limit=3,
                    active_deadline_seconds=900,
                    template=k8s.core.v1.PodTemplateSpecArgs(
                        metadata=meta(labels=MIGRATE_LABELS),
                        spec=k8s.core.v1.PodSpecArgs(
                            restart_policy="Never",
                            service_account_name="im-server",
                            image_pull_secrets=_pull_secrets(args),
                            security_context=restricted_pod(SERVER_UID),
                            volumes=[tmp_volume],
                            containers=[
                                k8s.core.v1.ContainerArgs(
                                    name="migrate",
                                    image=args.image,
                                    command=["im-server"],
                                    args=["migrate"],
                                    env=[_secret_env("IM_DATABASE_URL", SECRET_DB_URL_KEY)],
                                    volume_mounts=[tmp_mount],
                                    security_context=restricted_container(SERVER_UID),
                                    resources=k8s.core.v1.ResourceRequirementsArgs(
                                        requests={"cpu": "100m", "memory": "128Mi"},
                                        limits={"memory": "256Mi"},
                                    ),
                                )
                            ],
                        ),
                    ),
                ),
                # Pulumi waits for a Job to complete, 10 minutes by default; match the deadline.
                opts=pulumi.ResourceOptions.merge(
                    child,
                    pulumi.ResourceOptions(
                        depends_on=[self.secret],
                        custom_timeouts=pulumi.CustomTimeouts(create="16m", update="16m"),
                    ),
                ),
            )

        container = k8s.core.v1.ContainerArgs(
            name="im-server",
            image=args.image,
            command=["im-server"],
            args=["serve", "--host", "0.0.0.0", "--port", str(HTTP_PORT)],
            ports=container_ports,
            env=server_env(args),
            readiness_probe=k8s.core.v1.ProbeArgs(
                http_get=k8s.core.v1.HTTPGetActionArgs(path="/readyz", port="http"),
                period_seconds=5,
                failure_threshold=2,
                timeout_seconds=2,
            ),
            liveness_probe=k8s.core.v1.ProbeArgs(
                http_get=k8s.core.v1.HTTPGetActionArgs(path="/healthz", port="http"),
                initial_delay_seconds=10,
                period_seconds=10,
                failure_threshold=3,
                timeout_seconds=2,
            ),
            lifecycle=k8s.core.v1.LifecycleArgs(
                pre_stop=k8s.core.v1.LifecycleHandlerArgs(
                    exec_=k8s.core.v1.ExecActionArgs(command=["sleep", str(PRESTOP_SLEEP_SECONDS)])
                )
            ),
            resources=k8s.core.v1.ResourceRequirementsArgs(
                requests={"cpu": "500m", "memory": "512Mi"}, limits={"memory": "1Gi"}
            ),
            volume_mounts=mounts,
            security_context=restricted_container(SERVER_UID),
        )
        depends: list[pulumi.Resource] = [self.secret]
        if self.migration is not None:
            depends.append(self.migration)
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta(name=self.deployment_name, namespace=ns, labels=LABELS),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=args.replicas,
                min_ready_seconds=5,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"app": "im-server"}),
                strategy=k8s.apps.v1.DeploymentStrategyArgs(
                    type="RollingUpdate",
                    rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(
                        max_surge="25%", max_unavailable=0
                    ),
                ),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=meta(
                        labels=LABELS,
                        annotations={
                            "prometheus.io/scrape": "true",
                            "prometheus.io/port": str(HTTP_PORT),
                            "prometheus.io/path": "/metrics",
                        },
                    ),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name="im-server",
                        image_pull_secrets=_pull_secrets(args),
                        termination_grace_period_seconds=args.termination_grace_seconds,
                        security_context=restricted_pod(SERVER_UID),
                        affinity=anti_affinity("im-server"),
                        topology_spread_constraints=zone_spread("im-server"),
                        volumes=volumes,
                        containers=[container],
                    ),
                ),
            ),
            # The HPA owns the replica count after the first deploy (and failover scales the
            # standby up); a later `pulumi up` must not reset it.
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(depends_on=depends, ignore_changes=["spec.replicas"])
            ),
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=meta(
                name="im-server",
                namespace=ns,
                labels=LABELS,
                annotations=dict(args.service_annotations),
            ),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="LoadBalancer",
                selector={"app": "im-server"},
                ports=service_ports(args),
            ),
            opts=child,
        )
        self.hpa = k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{name}-hpa",
            metadata=meta(name="im-server", namespace=ns, labels=LABELS),
            spec=k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
                scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(
                    api_version="apps/v1", kind="Deployment", name=self.deployment_name
                ),
                min_replicas=args.hpa_min,
                max_replicas=args.hpa_max,
                metrics=[
                    k8s.autoscaling.v2.MetricSpecArgs(
                        type="Resource",
                        resource=k8s.autoscaling.v2.ResourceMetricSourceArgs(
                            name="cpu",
                            target=k8s.autoscaling.v2.MetricTargetArgs(
                                type="Utilization", average_utilization=args.hpa_cpu_percent
                            ),
                        ),
                    )
                ],
                # Scaling down drains connections (clients reconnect elsewhere); do it slowly.
                behavior=k8s.autoscaling.v2.HorizontalPodAutoscalerBehaviorArgs(
                    scale_down=k8s.autoscaling.v2.HPAScalingRulesArgs(
                        stabilization_window_seconds=300,
                        policies=[
                            k8s.autoscaling.v2.HPAScalingPolicyArgs(
                                type="Pods", value=1, period_seconds=60
                            )
                        ],
                    )
                ),
            ),
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(depends_on=[self.deployment])
            ),
        )
        self.pdb = k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=meta(name="im-server", namespace=ns, labels=LABELS),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=args.pdb_max_unavailable,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"app": "im-server"}),
            ),
            opts=child,
        )
        self.endpoint = self.service.status.apply(_lb_address)
        self.register_outputs({"endpoint": self.endpoint})


def _lb_address(status: object) -> str:
    """The load balancer's hostname (AWS) or IP (GCP, Alibaba Cloud); empty until assigned."""
    ingress = getattr(getattr(status, "load_balancer", None), "ingress", None) or []
    for entry in ingress:
        address = getattr(entry, "hostname", None) or getattr(entry, "ip", None)
        if address:
            return str(address)
    return ""
