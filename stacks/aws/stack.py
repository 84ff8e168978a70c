"""The AWS program: one provider per region, then network, EKS and database per region, the
backup bucket in the primary, and Route 53 failover across both."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import pulumi
import pulumi_aws as aws

from stacks.aws.backup import BackupBucket, BackupBucketArgs
from stacks.aws.cluster import EksCluster, EksClusterArgs
from stacks.aws.database import Database, DatabaseArgs, DatabaseNetworkArgs, DatabasePlumbing
from stacks.aws.dns import FailoverDns, FailoverDnsArgs
from stacks.aws.network import Network, NetworkArgs
from stacks.aws.tls import dns01 as dns01  # TLS (issue 13): part of the CloudStack
from stacks.config import StackConfig
from stacks.contract import CloudInfra, GlobalDns, RegionInfra
from stacks.naming import bucket_name, final_snapshot_id, resource_prefix, tags
from stacks.workload.secrets import AppSecrets

VPC_CIDRS = ("10.10.0.0/16", "10.20.0.0/16")  # distinct, so the regions can be peered later
ZONES_PER_REGION = 3

# NLB: long-lived WebSocket connections pass through at layer 4 without idle-timeout surprises.
SERVICE_ANNOTATIONS = {
    "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
    "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing",
    "service.beta.kubernetes.io/aws-load-balancer-cross-zone-load-balancing-enabled": "true",
}
# From the YACE CloudWatch exporter (aws_rds_replica_lag_maximum, in seconds).
REPLICATION_LAG_EXPR = "max(aws_rds_replica_lag_maximum) > 30"


def make_provider(region: str) -> aws.Provider:
    """One explicit provider per region; no resource falls back to ambient AWS config."""
    return aws.Provider(
        f"aws-{region}",
        region=region,
        default_tags=aws.ProviderDefaultTagsArgs(tags=tags(region)),
    )


def deploy(config: StackConfig, secrets: AppSecrets) -> CloudInfra:
    providers = {region: make_provider(region) for region in config.regions}
    prefix = resource_prefix()
    account = aws.get_caller_identity(opts=pulumi.InvokeOptions(provider=providers[config.region]))
    sites: dict[str, tuple[EksCluster, DatabasePlumbing, DatabaseNetworkArgs]] = {}
    # Sites in configured order: VPC ranges and names stay put when a failover swaps the roles.
    for index, region in enumerate(config.regions):
        p = providers[region]
        zones = aws.get_availability_zones(
            state="available", opts=pulumi.InvokeOptions(provider=p)
        ).names[:ZONES_PER_REGION]
        if len(zones) < 2:
            raise pulumi.RunError(f"{region} reports {len(zones)} availability zone(s); need 2+")
        cluster_name = f"{prefix}-{region}"
        network = Network(
            f"{region}-network",
            NetworkArgs(provider=p, cidr=VPC_CIDRS[index], zones=zones, cluster_name=cluster_name),
        )
        cluster = EksCluster(
            f"{region}-eks",
            EksClusterArgs(
                provider=p,
                region=region,
                cluster_name=cluster_name,
                private_subnet_ids=network.private_subnet_ids,
                instance_type=config.node_instance_type,
                node_min=config.node_min,
                node_max=config.node_max,
                node_desired=config.node_desired,
                kubernetes_version=config.cluster_version,
            ),
        )
        db_net = DatabaseNetworkArgs(
            provider=p,
            vpc_id=network.vpc_id,
            vpc_cidr=network.cidr,
            subnet_ids=network.private_subnet_ids,
        )
        sites[region] = (cluster, DatabasePlumbing(f"{region}-db-base", db_net), db_net)

    # The teardown deploy is the one a delete follows: its time makes the final snapshot's
    # name new for each destroy (an older destroy's snapshot is still there).
    taken_at = datetime.now(UTC) if config.teardown else None
    # The writer's database first: the replica names it as its source.
    regions: dict[str, RegionInfra] = {}
    writer: Database | None = None
    for region in config.writer_first:
        cluster, plumbing, db_net = sites[region]
        db = Database(
            config.db_name(region),
            DatabaseArgs(
                plumbing=plumbing,
                network=db_net,
                instance_class=config.db_class,
                storage_gb=config.db_storage_gb,
                backup_retention_days=config.db_backup_retention_days,
                password=secrets.db_password,
                final_snapshot_id=final_snapshot_id(prefix, config.db_name(region), taken_at),
                source_arn=None if writer is None else writer.arn,
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
            db_instance_id=db.instance_id,
            db_host=db.address,
            kubeconfig=cluster.kubeconfig,
            cluster=cluster,
        )
    backups = BackupBucket(
        "backups",
        BackupBucketArgs(
            provider=providers[config.region],
            bucket_name=bucket_name(prefix, account.account_id, config.region),
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
            primary_site=config.region,
        ),
    )
    return GlobalDns(hosted_zone_id=dns.zone_id, dns_name=config.dns_name)
