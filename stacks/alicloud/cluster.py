"""ACK Pro managed Kubernetes: Terway with NetworkPolicy enforcement, secrets encrypted with a
KMS key, a NAT gateway for the private nodes, and one autoscaled node pool over the zones."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_alicloud as alicloud

from stacks import k8s_support

SERVICE_CIDR = "172.21.0.0/20"  # outside both VPC ranges, as ACK requires


@dataclass(frozen=True, slots=True)
class AckClusterArgs:
    provider: pulumi.ProviderResource
    cluster_name: str
    node_vswitch_ids: Sequence[pulumi.Input[str]]
    pod_vswitch_ids: Sequence[pulumi.Input[str]]
    instance_type: str
    node_min: int
    node_max: int
    protect: bool = True  # False only while imctl destroy tears the stack down
    tags: Mapping[str, str] = field(default_factory=dict)
    # A minor in ACK support (stacks/k8s_support.py; config kubernetesVersion), pinned so the
    # version a cluster gets is the one the support check looked at.
    kubernetes_version: str = k8s_support.CALENDARS["alicloud"].default


class AckCluster(pulumi.ComponentResource):
    cluster_id: pulumi.Output[str]
    cluster_name: pulumi.Output[str]
    nodegroup_name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]

    def __init__(
        self, name: str, args: AckClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:alicloud:AckCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        key = alicloud.kms.Key(
            f"{name}-key",
            description=f"{args.cluster_name}: Kubernetes secrets and node disks",
            automatic_rotation="Enabled",
            rotation_interval="365d",
            # KMS never deletes a key at once: destroy schedules the deletion, and the key stays
            # recoverable (CancelKeyDeletion) this long. Kept at 30 through teardown too: a
            # disk snapshot or backup left behind may still need the key to be read.
            pending_window_in_days=30,
            # A protected key refuses even the scheduling, so teardown lifts it like the rest.
            deletion_protection="Enabled" if args.protect else "Disabled",
            tags=dict(args.tags),
            opts=child,
        )
        self.cluster = alicloud.cs.ManagedKubernetes(
            f"{name}-ack",
            name=args.cluster_name,
            cluster_spec="ack.pro.small",
            # ACK's API takes a full patch version.
            version=k8s_support.ACK_PATCH[args.kubernetes_version],
            vswitch_ids=list(args.node_vswitch_ids),
            pod_vswitch_ids=list(args.pod_vswitch_ids),
            service_cidr=SERVICE_CIDR,
            proxy_mode="ipvs",
            new_nat_gateway=True,
            # Pulumi and imctl reach the API server from outside the VPC.
            slb_internet_enabled=True,
            encryption_provider_key=key.id,
            # The provider only turns secrets encryption on with both set explicitly.
            disable_encryption=False,
            deletion_protection=args.protect,
            addons=[
                alicloud.cs.ManagedKubernetesAddonArgs(
                    name="terway-eniip", config=json.dumps({"NetworkPolicy": "true"})
                ),
                alicloud.cs.ManagedKubernetesAddonArgs(name="csi-plugin"),
                alicloud.cs.ManagedKubernetesAddonArgs(name="csi-provisioner"),
            ],
            tags=dict(args.tags),
            opts=child,
        )
        self.node_pool = alicloud.cs.NodePool(
            f"{name}-nodes",
            cluster_id=self.cluster.id,
            node_pool_name="im-workers",
            vswitch_ids=list(args.node_vswitch_ids),
            instance_types=[args.instance_type],
            multi_az_policy="BALANCE",
            system_disk_category="cloud_essd",
            system_disk_size=100,
            system_disk_encrypted=True,
            system_disk_kms_key=key.id,
            install_cloud_monitor=True,
            # ACK's autoscaler owns the count between the bounds; it has no separate
            # "desired" once scaling is enabled.
            scaling_config=alicloud.cs.NodePoolScalingConfigArgs(
                enable=True, min_size=args.node_min, max_size=args.node_max
            ),
            management=alicloud.cs.NodePoolManagementArgs(
                enable=True, auto_repair=True, auto_upgrade=True, max_unavailable=1
            ),
            # Read only when the pool is deleted: teardown lets ACK remove it with its nodes.
            force_delete=not args.protect,
            tags=dict(args.tags),
            opts=child,
        )
        credential = alicloud.cs.get_cluster_credential_output(
            cluster_id=self.cluster.id,
            temporary_duration_minutes=4320,
            opts=pulumi.InvokeOutputOptions(provider=args.provider, parent=self),
        )
        self.cluster_id = self.cluster.id
        self.cluster_name = self.cluster.name
        # ACK's node pool API addresses pools by id, so the id is what operations need.
        self.nodegroup_name = self.node_pool.node_pool_id
        self.kubeconfig = pulumi.Output.secret(credential.kube_config)
        self.register_outputs(
            {"cluster_id": self.cluster_id, "nodegroup_name": self.nodegroup_name}
        )
