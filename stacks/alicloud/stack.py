"""The Alibaba Cloud program: one provider per region, then network, ACK and RDS per region
(the standby's RDS fed by DTS), the OSS bucket in the primary, and Alidns/GTM across both."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import pulumi
import pulumi_alicloud as alicloud

from stacks.alicloud.backup import BackupBucket, BackupBucketArgs
from stacks.alicloud.cluster import AckCluster, AckClusterArgs
from stacks.alicloud.database import DtsSync, DtsSyncArgs, RdsArgs, RdsInstance
from stacks.alicloud.dns import GlobalDns as AlidnsGlobalDns
from stacks.alicloud.dns import GlobalDnsArgs
from stacks.alicloud.network import Network, NetworkArgs
from stacks.alicloud.tls import dns01 as dns01  # TLS (issue 13): part of the CloudStack
from stacks.config import StackConfig
from stacks.contract import CloudInfra, GlobalDns, RegionInfra
from stacks.naming import bucket_name, resource_prefix, tags
from stacks.workload.secrets import AppSecrets

VPC_CIDRS: Final = ("10.10.0.0/16", "10.20.0.0/16")
MAX_ZONES: Final = 3
SERVICE_ANNOTATIONS: Final = {
    "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-address-type": "internet",
    "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-spec": "slb.s2.small",
}
# From the Alibaba Cloud CloudMonitor exporter: DTS synchronization delay in seconds.
REPLICATION_LAG_EXPR: Final = "max(aliyun_acs_dts_synchronization_delay) > 30"


def make_provider(region: str) -> alicloud.Provider:
    """One explicit provider per region; no resource falls back to ambient config."""
    return alicloud.Provider(f"alicloud-{region}", region=region)


def deploy(config: StackConfig, secrets: AppSecrets) -> CloudInfra:
    providers = {r: make_provider(r) for r in config.regions}
    prefix = resource_prefix()
    sites: dict[str, tuple[AckCluster, RdsArgs]] = {}
    # Sites in configured order: ranges and names stay put when a failover swaps the roles.
    for index, region in enumerate(config.regions):
        p = providers[region]
        zones = alicloud.get_zones(
            available_resource_creation="VSwitch", opts=pulumi.InvokeOptions(provider=p)
        ).ids[:MAX_ZONES]
        if len(zones) < 2:
            raise pulumi.RunError(f"{region} offers {len(zones)} zone(s) for vSwitches; need 2+")
        region_tags = tags(region)
        network = Network(
            f"{region}-network",
            NetworkArgs(provider=p, cidr=VPC_CIDRS[index], zones=zones, tags=region_tags),
        )
        cluster = AckCluster(
            f"{region}-ack",
            AckClusterArgs(
                provider=p,
                cluster_name=f"{prefix}-{region}",
                node_vswitch_ids=network.node_vswitch_ids,
                pod_vswitch_ids=network.pod_vswitch_ids,
                instance_type=config.node_instance_type,
                node_min=config.node_min,
                node_max=config.node_max,
                protect=config.protect_data,
                tags=region_tags,
                kubernetes_version=config.cluster_version,
            ),
        )
        is_writer = region == config.writer_region
        rds = RdsArgs(
            provider=p,
            region=region,
            vpc_id=network.vpc_id,
            vpc_cidr=network.cidr,
            zones=network.zones,
            vswitch_ids=network.node_vswitch_ids,
            instance_type=config.db_class,
            storage_gb=config.db_storage_gb,
            backup_retention_days=config.db_backup_retention_days,
            password=secrets.db_password,
            cross_backup_region=config.reader_region if is_writer else None,
            tags=region_tags,
            protect=config.protect_data,
        )
        sites[region] = (cluster, rds)

    regions: dict[str, RegionInfra] = {}
    writer: RdsInstance | None = None
    for region in config.writer_first:
        cluster, rds = sites[region]
        db = RdsInstance(
            config.db_name(region),
            rds,
            # DTS decodes the writer's WAL. Set on both sites from the start: either may become
            # the writer, and changing wal_level restarts the instance, right after a failover.
            logical_replication=config.standby_region is not None,
        )
        if writer is None:
            writer = db
        else:
            DtsSync(
                f"{config.db_name(region)}-sync",
                DtsSyncArgs(
                    source=writer,
                    source_region=config.writer_region,
                    destination=db,
                    destination_region=region,
                    provider=rds.provider,
                    password=secrets.db_password,
                ),
            )
        regions[region] = RegionInfra(
            region=region,
            role=config.role(region),
            cluster_name=cluster.cluster_name,
            nodegroup_name=cluster.nodegroup_name,
            db_instance_id=db.instance_id,
            db_host=db.host,
            kubeconfig=cluster.kubeconfig,
            cluster=cluster,
            cluster_id=cluster.cluster_id,
        )
    # OSS bucket names are global across all accounts: the account id keeps another
    # account's stack of the same name from taking it (hashed down when the name runs long).
    account = alicloud.get_caller_identity(
        opts=pulumi.InvokeOptions(provider=providers[config.region])
    )
    backups = BackupBucket(
        "backups",
        BackupBucketArgs(
            provider=providers[config.region],
            bucket_name=bucket_name(prefix, account.account_id, config.region),
            force_destroy=config.teardown,
            tags=tags(config.region),
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
    dns = AlidnsGlobalDns(
        "global-dns",
        GlobalDnsArgs(
            provider=infra.providers[config.region],
            zone_name=config.domain,
            hostname=config.hostname,
            primary_region=config.writer_region,
            endpoints=endpoints,
        ),
    )
    return GlobalDns(hosted_zone_id=dns.zone_name, dns_name=config.dns_name)
