"""The GCP program: one provider per region, the global VPC, then subnet, GKE and Cloud SQL per
region, the backup bucket in the primary, and Cloud DNS failover across both."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import pulumi
import pulumi_gcp as gcp

from stacks.config import StackConfig
from stacks.contract import CloudInfra, GlobalDns, RegionInfra
from stacks.gcp.apis import ProjectApis, ProjectApisArgs
from stacks.gcp.backup import BackupBucket, BackupBucketArgs
from stacks.gcp.cluster import GkeCluster, GkeClusterArgs
from stacks.gcp.database import Database, DatabaseArgs
from stacks.gcp.dns import FailoverDns, FailoverDnsArgs
from stacks.gcp.network import Network, NetworkArgs, Subnet, SubnetArgs
from stacks.gcp.tls import dns01 as dns01  # TLS (issue 13): part of the CloudStack
from stacks.gcp.tls import project_id
from stacks.naming import resource_prefix, tags
from stacks.workload.secrets import AppSecrets

# Per region index: nodes, pods, services, GKE control plane. Distinct, in one global VPC.
_RANGES: Final = (
    ("10.10.0.0/20", "10.11.0.0/16", "10.12.0.0/20", "172.16.0.0/28"),
    ("10.20.0.0/20", "10.21.0.0/16", "10.22.0.0/20", "172.16.0.16/28"),
)
# Backend-service based external passthrough load balancer (GKE's recommended L4 LB).
SERVICE_ANNOTATIONS: Final = {"cloud.google.com/l4-rbs": "enabled"}
# From the Stackdriver exporter (Cloud Monitoring's replica_lag, in seconds).
REPLICATION_LAG_EXPR: Final = (
    "max(stackdriver_cloudsql_database_cloudsql_googleapis_com_database_replication_replica_lag)"
    " > 30"
)


def labels(region: str) -> dict[str, str]:
    return {k: v.lower() for k, v in tags(region).items()}


def make_provider(
    region: str, project: str | None, apis: Iterable[pulumi.Resource] = ()
) -> gcp.Provider:
    """One explicit provider per region; no resource falls back to ambient gcloud config for
    its region (the project comes from config, or the provider's usual sources if unset).
    It waits for ``apis``, so whatever is made through it waits for them too."""
    return gcp.Provider(
        f"gcp-{region}",
        project=project,
        region=region,
        default_labels=labels(region),
        opts=pulumi.ResourceOptions(depends_on=list(apis)),
    )


def deploy(config: StackConfig, secrets: AppSecrets) -> CloudInfra:
    apis = ProjectApis("apis", ProjectApisArgs(project=config.gcp_project))
    providers = {
        r: make_provider(r, config.gcp_project, apis.services.values()) for r in config.regions
    }
    prefix = resource_prefix()
    network = Network("vpc", NetworkArgs(provider=providers[config.region]))
    # TLS (issue 13): Workload Identity (cert-manager's DNS-01 identity) needs the project.
    project = project_id(config, providers[config.region])
    clusters: dict[str, GkeCluster] = {}
    # Sites in configured order: ranges and names stay put when a failover swaps the roles.
    for index, region in enumerate(config.regions):
        p = providers[region]
        nodes, pods, services, master = _RANGES[index]
        subnet = Subnet(
            f"{region}-subnet",
            SubnetArgs(
                provider=p,
                region=region,
                network_id=network.network_id,
                nodes_cidr=nodes,
                pods_cidr=pods,
                services_cidr=services,
            ),
        )
        clusters[region] = GkeCluster(
            f"{region}-gke",
            GkeClusterArgs(
                provider=p,
                region=region,
                cluster_name=f"{prefix}-{region}",
                network_id=network.network_id,
                subnet_id=subnet.subnet_id,
                master_cidr=master,
                machine_type=config.node_instance_type,
                node_min=config.node_min,
                node_max=config.node_max,
                node_desired=config.node_desired,
                project=project,
                kubernetes_version=config.cluster_version,
                protect=config.protect_data,
            ),
        )

    regions: dict[str, RegionInfra] = {}
    writer: Database | None = None
    for region in config.writer_first:  # the replica names the writer as its master
        cluster = clusters[region]
        db = Database(
            config.db_name(region),
            DatabaseArgs(
                provider=providers[region],
                region=region,
                network_id=network.network_id,
                private_services=network.private_services,
                tier=config.db_class,
                disk_gb=config.db_storage_gb,
                backup_retention_days=config.db_backup_retention_days,
                password=secrets.db_password,
                master_instance_name=None if writer is None else writer.instance_name,
                promoted=config.db_promoted(region),
                protect=config.protect_data,
            ),
        )
        writer = writer or db
        regions[region] = RegionInfra(
            region=region,
            role=config.role(region),
            cluster_name=cluster.cluster_name,
            nodegroup_name=cluster.nodegroup_name,
            db_instance_id=db.instance_name,
            db_host=db.private_ip,
            kubeconfig=cluster.kubeconfig,
            cluster=cluster,
            cluster_id=cluster.cluster_id,
        )
    backups = BackupBucket(
        "backups",
        BackupBucketArgs(
            provider=providers[config.region],
            location=config.region,
            force_destroy=config.teardown,
        ),
    )
    return CloudInfra(
        regions=regions,
        backup_bucket=backups.bucket_name,
        providers=providers,
        replication_lag_expr=REPLICATION_LAG_EXPR,
        service_annotations=SERVICE_ANNOTATIONS,
    )


def global_dns(
    config: StackConfig, infra: CloudInfra, endpoints: Mapping[str, pulumi.Output[str]]
) -> GlobalDns:
    dns = FailoverDns(
        "global-dns",
        FailoverDnsArgs(
            provider=infra.providers[config.region],
            zone_name=config.domain,
            record_name=config.dns_name,
            primary_region=config.writer_region,
            endpoints=endpoints,
        ),
    )
    return GlobalDns(hosted_zone_id=dns.zone_name, dns_name=config.dns_name)
