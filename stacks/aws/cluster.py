"""EKS: the control plane (secrets envelope-encrypted with KMS, audit logs on), a managed node
group in the private subnets, the VPC CNI with NetworkPolicy enforcement switched on (without it
the workload's NetworkPolicies would be accepted and silently ignored), and the Metrics Server
(EKS ships none, and without it the HorizontalPodAutoscaler never gets a CPU reading)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from stacks import k8s_support, kubeconfig

_NODE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
)


def _assume_role(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": service},
                    "Action": ["sts:AssumeRole", "sts:TagSession"],
                }
            ],
        }
    )


@dataclass(frozen=True, slots=True)
class EksClusterArgs:
    provider: pulumi.ProviderResource
    region: str
    cluster_name: str
    private_subnet_ids: Sequence[pulumi.Input[str]]
    instance_type: str
    node_min: int
    node_max: int
    node_desired: int
    tags: Mapping[str, str] = field(default_factory=dict)
    # A minor version in EKS standard support (stacks/k8s_support.py; config kubernetesVersion).
    kubernetes_version: str = k8s_support.CALENDARS["aws"].default


class EksCluster(pulumi.ComponentResource):
    cluster_name: pulumi.Output[str]
    nodegroup_name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]

    def __init__(
        self, name: str, args: EksClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:aws:EksCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        cluster_role = aws.iam.Role(
            f"{name}-cluster-role",
            assume_role_policy=_assume_role("eks.amazonaws.com"),
            tags=dict(args.tags),
            opts=child,
        )
        cluster_policy = aws.iam.RolePolicyAttachment(
            f"{name}-cluster-policy",
            role=cluster_role.name,
            policy_arn="arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",
            opts=child,
        )
        secrets_key = aws.kms.Key(
            f"{name}-secrets-key",
            description=f"EKS secrets envelope encryption for {args.cluster_name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=dict(args.tags),
            opts=child,
        )
        self.cluster = aws.eks.Cluster(
            f"{name}-eks",
            name=args.cluster_name,
            version=args.kubernetes_version,
            role_arn=cluster_role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=list(args.private_subnet_ids),
                endpoint_private_access=True,
                # Pulumi and imctl reach the API from outside the VPC; auth is IAM either way.
                endpoint_public_access=True,
            ),
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API",
                bootstrap_cluster_creator_admin_permissions=True,
            ),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                resources=["secrets"],
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=secrets_key.arn),
            ),
            enabled_cluster_log_types=["api", "audit", "authenticator"],
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(depends_on=[cluster_policy])
            ),
        )
        node_role = aws.iam.Role(
            f"{name}-node-role",
            assume_role_policy=_assume_role("ec2.amazonaws.com"),
            tags=dict(args.tags),
            opts=child,
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{arn.rsplit('/', 1)[1]}",
                role=node_role.name,
                policy_arn=arn,
                opts=child,
            )
            for arn in _NODE_POLICIES
        ]
        self.cni = aws.eks.Addon(
            f"{name}-vpc-cni",
            cluster_name=self.cluster.name,
            addon_name="vpc-cni",
            configuration_values=json.dumps({"enableNetworkPolicy": "true"}),
            # EKS installs vpc-cni itself when the cluster is created; adopting that copy
            # with our configuration fails on the conflicting fields unless we overwrite them.
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            opts=child,
        )
        self.node_group = aws.eks.NodeGroup(
            f"{name}-nodes",
            cluster_name=self.cluster.name,
            node_role_arn=node_role.arn,
            subnet_ids=list(args.private_subnet_ids),
            instance_types=[args.instance_type],
            ami_type="AL2023_x86_64_STANDARD",
            capacity_type="ON_DEMAND",
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=args.node_min, max_size=args.node_max, desired_size=args.node_desired
            ),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(depends_on=[*attachments, self.cni])
            ),
        )
        # The EKS community add-on (owner "community"; AWS validates it per Kubernetes version and
        # installs it in kube-system). Its pods need nodes: created before the node group, the
        # add-on would sit DEGRADED and the create would time out.
        self.metrics_server = aws.eks.Addon(
            f"{name}-metrics-server",
            cluster_name=self.cluster.name,
            addon_name="metrics-server",
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(depends_on=[self.node_group])
            ),
        )
        self.cluster_name = self.cluster.name
        self.nodegroup_name = self.node_group.node_group_name
        region = args.region
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(
                self.cluster.name, self.cluster.endpoint, self.cluster.certificate_authority.data
            ).apply(lambda v: kubeconfig.eks(str(v[0]), str(v[1]), str(v[2]), region))
        )
        self.register_outputs(
            {"cluster_name": self.cluster_name, "nodegroup_name": self.nodegroup_name}
        )
