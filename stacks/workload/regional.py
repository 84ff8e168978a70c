"""Everything one region's cluster runs, assembled from the workload parts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from stacks.config import Role, StackConfig
from stacks.image import PullCredentials
from stacks.workload.monitoring import Monitoring, MonitoringArgs
from stacks.workload.nats import CLIENT_USER, Nats, NatsArgs
from stacks.workload.network_policy import NetworkPolicies, NetworkPoliciesArgs
from stacks.workload.prometheus_stack import PrometheusStack, PrometheusStackArgs
from stacks.workload.pull_secret import PULL_SECRET_NAME, pull_secret
from stacks.workload.secrets import AppSecrets
from stacks.workload.server import ImServer, ImServerArgs
from stacks.workload.tls import TLS_SECRET


@dataclass(frozen=True, slots=True)
class WorkloadArgs:
    config: StackConfig
    region: str
    role: Role
    provider: k8s.Provider
    secrets: AppSecrets
    database_url: pulumi.Input[str]
    replication_lag_expr: str
    # The image this region runs (stacks.image: the pushed digest, or config's image=REF).
    image: pulumi.Input[str]
    service_annotations: Mapping[str, str] = field(default_factory=dict)
    image_pull_secret: str | None = None  # an existing Secret the pods pull with
    pull_credentials: PullCredentials | None = None  # a login to make that Secret from


class Workload(pulumi.ComponentResource):
    endpoint: pulumi.Output[str]
    namespace: str
    deployment_name: str

    def __init__(
        self, name: str, args: WorkloadArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:workload:Workload", name, None, opts)
        cfg = args.config
        ns = cfg.namespace
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        self.namespace_resource = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=ns,
                labels={
                    "app.kubernetes.io/part-of": "imctl",
                    "imctl.io/region": args.region,
                    "pod-security.kubernetes.io/enforce": "restricted",
                },
            ),
            opts=child,
        )
        in_ns = pulumi.ResourceOptions(
            parent=self, provider=args.provider, depends_on=[self.namespace_resource]
        )
        self.network_policies = NetworkPolicies(
            f"{name}-netpol", NetworkPoliciesArgs(namespace=ns, provider=args.provider), in_ns
        )
        self.nats = Nats(
            f"{name}-nats",
            NatsArgs(
                namespace=ns,
                provider=args.provider,
                client_password_bcrypt=args.secrets.nats_password_bcrypt,
                route_password=args.secrets.nats_route_password,
            ),
            in_ns,
        )
        server_deps: list[pulumi.Resource] = [self.namespace_resource, self.nats]
        image_pull_secret = args.image_pull_secret
        if args.pull_credentials is not None:
            server_deps.append(pull_secret(f"{name}-pull-secret", ns, args.pull_credentials, in_ns))
            image_pull_secret = PULL_SECRET_NAME
        self.server = ImServer(
            f"{name}-im-server",
            ImServerArgs(
                namespace=ns,
                provider=args.provider,
                image=args.image,
                image_pull_secret=image_pull_secret,
                role=args.role,
                # The standby idles at zero pods (its database is read-only); failover scales
                # it up. A Deployment at zero replicas is left alone by its HPA.
                replicas=cfg.replicas if args.role == "primary" else 0,
                hpa_min=cfg.hpa_min,
                hpa_max=cfg.hpa_max,
                hpa_cpu_percent=cfg.hpa_cpu_percent,
                pdb_max_unavailable=cfg.pdb_max_unavailable,
                drain_grace_seconds=cfg.drain_grace_seconds,
                termination_grace_seconds=cfg.termination_grace_seconds,
                database_url=args.database_url,
                jwt_secret=args.secrets.jwt_secret,
                admin_token=args.secrets.admin_token,
                nats_url=self.nats.url,
                nats_user=CLIENT_USER,
                nats_password=args.secrets.nats_password,
                service_annotations=args.service_annotations,
                tls_secret=TLS_SECRET,
                plaintext=cfg.plaintext,
            ),
            pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=server_deps),
        )
        # monitoring=true: the operator stack comes with the stack, so its CRDs exist before the
        # PodMonitor/PrometheusRule that need them (a fresh cluster has none).
        self.prometheus: PrometheusStack | None = None
        if cfg.monitoring:
            self.prometheus = PrometheusStack(
                f"{name}-prometheus", PrometheusStackArgs(provider=args.provider), child
            )
        self.monitoring = Monitoring(
            f"{name}-monitoring",
            MonitoringArgs(
                namespace=ns,
                provider=args.provider,
                replication_lag_expr=args.replication_lag_expr,
                operator=None if self.prometheus is None else self.prometheus.release,
            ),
            in_ns,
        )
        self.endpoint = self.server.endpoint
        self.namespace = ns
        self.deployment_name = self.server.deployment_name
        self.register_outputs({"endpoint": self.endpoint, "namespace": ns})
