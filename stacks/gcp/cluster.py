"""Regional GKE (control plane and nodes over the region's zones) with private nodes, Dataplane
V2 (which enforces NetworkPolicy), and one autoscaled node pool."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from stacks import k8s_support, kubeconfig
from stacks.gcp.network import Subnet

ZONES_PER_REGION = 3  # GKE's default for a regional cluster


@dataclass(frozen=True, slots=True)
class GkeClusterArgs:
    provider: pulumi.ProviderResource
    region: str
    cluster_name: str
    network_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    master_cidr: str
    machine_type: str
    node_min: int
    node_max: int
    node_desired: int
    project: str | None = None
    protect: bool = True  # False only while imctl destroy tears the stack down
    labels: Mapping[str, str] = field(default_factory=dict)
    # The REGULAR channel moves patches and minors forward; this floor keeps a new cluster off
    # a minor past standard support (stacks/k8s_support.py; config kubernetesVersion).
    kubernetes_version: str = k8s_support.CALENDARS["gcp"].default


class GkeCluster(pulumi.ComponentResource):
    cluster_id: pulumi.Output[str]
    cluster_name: pulumi.Output[str]
    nodegroup_name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]

    def __init__(
        self, name: str, args: GkeClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:gcp:GkeCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        identity = args.project is not None
        self.cluster = gcp.container.Cluster(
            f"{name}-gke",
            name=args.cluster_name,
            location=args.region,
            network=args.network_id,
            subnetwork=args.subnet_id,
            networking_mode="VPC_NATIVE",
            # The default pool cannot be shaped; start with one node and replace the pool.
            remove_default_node_pool=True,
            initial_node_count=1,
            ip_allocation_policy=gcp.container.ClusterIpAllocationPolicyArgs(
                cluster_secondary_range_name=Subnet.PODS,
                services_secondary_range_name=Subnet.SERVICES,
            ),
            private_cluster_config=gcp.container.ClusterPrivateClusterConfigArgs(
                enable_private_nodes=True,
                enable_private_endpoint=False,
                master_ipv4_cidr_block=args.master_cidr,
            ),
            release_channel=gcp.container.ClusterReleaseChannelArgs(channel="REGULAR"),
            min_master_version=args.kubernetes_version,
            datapath_provider="ADVANCED_DATAPATH",
            enable_shielded_nodes=True,
            workload_identity_config=(
                gcp.container.ClusterWorkloadIdentityConfigArgs(
                    workload_pool=f"{args.project}.svc.id.goog"
                )
                if identity
                else None
            ),
            # The provider's default is true, and pulumi destroy cannot delete the cluster
            # until a deploy has set it false (the teardown deploy does).
            deletion_protection=args.protect,
            resource_labels=dict(args.labels),
            opts=child,
        )
        # Node counts are per zone on a regional pool; the totals keep the config's meaning.
        self.node_pool = gcp.container.NodePool(
            f"{name}-nodes",
            cluster=self.cluster.name,
            location=args.region,
            initial_node_count=math.ceil(args.node_desired / ZONES_PER_REGION),
            autoscaling=gcp.container.NodePoolAutoscalingArgs(
                total_min_node_count=args.node_min,
                total_max_node_count=args.node_max,
                location_policy="BALANCED",
            ),
            management=gcp.container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
            upgrade_settings=gcp.container.NodePoolUpgradeSettingsArgs(
                max_surge=1, max_unavailable=0
            ),
            node_config=gcp.container.NodePoolNodeConfigArgs(
                machine_type=args.machine_type,
                disk_type="pd-balanced",
                disk_size_gb=100,
                oauth_scopes=["https://www.googleapis.com/auth/cloud-platform"],
                shielded_instance_config=gcp.container.NodePoolNodeConfigShieldedInstanceConfigArgs(
                    enable_secure_boot=True, enable_integrity_monitoring=True
                ),
                workload_metadata_config=(
                    gcp.container.NodePoolNodeConfigWorkloadMetadataConfigArgs(mode="GKE_METADATA")
                    if identity
                    else None
                ),
                labels=dict(args.labels),
            ),
            # Creation size only (changing it replaces the pool): afterwards the autoscaler,
            # and imctl scale through the resize API, own the count. Without this, the
            # nodeDesired that imctl scale writes back would rebuild the pool on the next deploy.
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(ignore_changes=["initialNodeCount"])
            ),
        )
        self.cluster_id = self.cluster.id
        self.cluster_name = self.cluster.name
        self.nodegroup_name = self.node_pool.name
        region = args.region
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(
                self.cluster.name,
                self.cluster.endpoint,
                self.cluster.master_auth.cluster_ca_certificate,
            ).apply(lambda v: kubeconfig.gke(str(v[0]), str(v[1]), str(v[2]), region))
        )
        self.register_outputs(
            {"cluster_name": self.cluster_name, "nodegroup_name": self.nodegroup_name}
        )
