"""A VPC with, in each of two or three zones, a vSwitch for nodes and one for pods (ACK's Terway
network plugin gives pods VPC addresses from their own vSwitches)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_alicloud as alicloud


@dataclass(frozen=True, slots=True)
class NetworkArgs:
    provider: pulumi.ProviderResource
    cidr: str
    zones: Sequence[str]
    tags: Mapping[str, str] = field(default_factory=dict)


def vswitch_cidrs(cidr: str, count: int) -> tuple[list[str], list[str]]:
    """/20 node vSwitches from the bottom quarter of the VPC range, /19 pod vSwitches above."""
    net = ipaddress.IPv4Network(cidr)
    quarters = list(net.subnets(prefixlen_diff=2))
    nodes = [str(s) for s in quarters[0].subnets(new_prefix=20)][:count]
    pods = [str(s) for s in net.subnets(new_prefix=19)][2 : 2 + count]
    return nodes, pods


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    node_vswitch_ids: list[pulumi.Output[str]]
    pod_vswitch_ids: list[pulumi.Output[str]]
    zones: list[str]
    cidr: str

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:alicloud:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        self.vpc = alicloud.vpc.Network(
            f"{name}-vpc",
            vpc_name=f"{name}-vpc",
            cidr_block=args.cidr,
            tags=dict(args.tags),
            opts=child,
        )
        node_cidrs, pod_cidrs = vswitch_cidrs(args.cidr, len(args.zones))
        self.node_vswitch_ids = []
        self.pod_vswitch_ids = []
        for i, zone in enumerate(args.zones):
            nodes = alicloud.vpc.Switch(
                f"{name}-nodes-{zone}",
                vswitch_name=f"{name}-nodes-{zone}",
                vpc_id=self.vpc.id,
                cidr_block=node_cidrs[i],
                zone_id=zone,
                tags=dict(args.tags),
                opts=child,
            )
            pods = alicloud.vpc.Switch(
                f"{name}-pods-{zone}",
                vswitch_name=f"{name}-pods-{zone}",
                vpc_id=self.vpc.id,
                cidr_block=pod_cidrs[i],
                zone_id=zone,
                tags=dict(args.tags),
                opts=child,
            )
            self.node_vswitch_ids.append(nodes.id)
            self.pod_vswitch_ids.append(pods.id)
        self.vpc_id = self.vpc.id
        self.zones = list(args.zones)
        self.cidr = args.cidr
        self.register_outputs({"vpc_id": self.vpc_id, "node_vswitch_ids": self.node_vswitch_ids})
