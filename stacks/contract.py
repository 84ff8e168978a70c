"""What a cloud package hands to the cloud-agnostic program, and what the program exports.

Each cloud package (``stacks.aws``, ``stacks.gcp``, ``stacks.alicloud``) has a ``stack`` module
with ``deploy(config, secrets) -> CloudInfra``, ``global_dns(config, infra, endpoints) ->
GlobalDns`` and ``dns01(config, infra, dns, region) -> Dns01``; the program runs the shared
workload on every cluster between the first two, and cert-manager after the zone exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import pulumi

from stacks.config import StackConfig
from stacks.workload_contract import DB_NAME, DB_PORT, DB_USER

if TYPE_CHECKING:
    from stacks.config import Role
    from stacks.workload.secrets import AppSecrets
    from stacks.workload.tls import Dns01


@dataclass(frozen=True, slots=True)
class RegionInfra:
    region: str
    role: Role
    cluster_name: pulumi.Output[str]
    nodegroup_name: pulumi.Output[str]
    db_instance_id: pulumi.Output[str]
    db_host: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    # The cluster component: the Kubernetes provider is parented to it, so the plan can tell
    # which region every Kubernetes object lands in.
    cluster: pulumi.Resource
    # The id the cloud's cluster API takes, where that is not the name (GKE, ACK).
    cluster_id: pulumi.Output[str] | None = None
    db_port: int = DB_PORT


@dataclass(frozen=True, slots=True)
class CloudInfra:
    regions: Mapping[str, RegionInfra]  # primary first
    backup_bucket: pulumi.Output[str]
    providers: Mapping[str, pulumi.ProviderResource]
    # PromQL for the standby's replication lag, from the exporter that cloud's metrics need.
    replication_lag_expr: str
    service_annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GlobalDns:
    hosted_zone_id: pulumi.Output[str]
    dns_name: str


class CloudStack(Protocol):
    def deploy(self, config: StackConfig, secrets: AppSecrets) -> CloudInfra: ...

    def global_dns(
        self, config: StackConfig, infra: CloudInfra, endpoints: Mapping[str, pulumi.Output[str]]
    ) -> GlobalDns: ...

    # TLS (issue 13): how cert-manager in ``region`` answers DNS-01 in the stack's zone.
    def dns01(
        self, config: StackConfig, infra: CloudInfra, dns: GlobalDns, region: str
    ) -> Dns01: ...


def database_url(
    host: pulumi.Input[str], port: int, password: pulumi.Input[str]
) -> pulumi.Output[str]:
    """The server's IM_DATABASE_URL; TLS required, since the managed databases all offer it."""
    return pulumi.Output.secret(
        pulumi.Output.concat(
            "postgresql://",
            DB_USER,
            ":",
            password,
            "@",
            host,
            ":",
            str(port),
            "/",
            DB_NAME,
            "?sslmode=require",
        )
    )
