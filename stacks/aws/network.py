"""A VPC over three availability zones: public subnets for load balancers and NAT, private
subnets for the worker nodes and the database, and one NAT gateway per zone so losing a zone
does not cut the other zones off the internet."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True, slots=True)
class NetworkArgs:
    provider: pulumi.ProviderResource
    cidr: str
    zones: Sequence[str]
    cluster_name: str
    tags: Mapping[str, str] = field(default_factory=dict)


def subnet_cidrs(cidr: str, count: int) -> tuple[list[str], list[str]]:
    """/20 private subnets from the bottom of the VPC range, /22 public ones from the top half."""
    net = ipaddress.IPv4Network(cidr)
    private = [str(s) for s in net.subnets(new_prefix=20)][:count]
    upper = list(net.subnets(prefixlen_diff=1))[1]
    public = [str(s) for s in upper.subnets(new_prefix=22)][:count]
    return private, public


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: list[pulumi.Output[str]]
    public_subnet_ids: list[pulumi.Output[str]]
    cidr: str

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:aws:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        cluster_tag = {f"kubernetes.io/cluster/{args.cluster_name}": "shared"}
        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**args.tags, "Name": f"{name}-vpc"},
            opts=child,
        )
        igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=self.vpc.id, tags={**args.tags, "Name": f"{name}-igw"}, opts=child
        )
        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt",
            vpc_id=self.vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)],
            tags={**args.tags, "Name": f"{name}-public"},
            opts=child,
        )
        private_cidrs, public_cidrs = subnet_cidrs(args.cidr, len(args.zones))
        self.private_subnet_ids = []
        self.public_subnet_ids = []
        for i, zone in enumerate(args.zones):
            public = aws.ec2.Subnet(
                f"{name}-public-{zone}",
                vpc_id=self.vpc.id,
                cidr_block=public_cidrs[i],
                availability_zone=zone,
                map_public_ip_on_launch=False,
                # Tells the AWS load balancer integration where internet-facing NLBs go.
                tags={
                    **args.tags,
                    **cluster_tag,
                    "Name": f"{name}-public-{zone}",
                    "kubernetes.io/role/elb": "1",
                },
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{zone}",
                subnet_id=public.id,
                route_table_id=public_rt.id,
                opts=child,
            )
            eip = aws.ec2.Eip(
                f"{name}-nat-{zone}",
                domain="vpc",
                tags={**args.tags, "Name": f"{name}-nat-{zone}"},
                opts=child,
            )
            nat = aws.ec2.NatGateway(
                f"{name}-nat-{zone}",
                allocation_id=eip.id,
                subnet_id=public.id,
                tags={**args.tags, "Name": f"{name}-nat-{zone}"},
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[igw])),
            )
            private_rt = aws.ec2.RouteTable(
                f"{name}-private-{zone}",
                vpc_id=self.vpc.id,
                routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat.id)],
                tags={**args.tags, "Name": f"{name}-private-{zone}"},
                opts=child,
            )
            private = aws.ec2.Subnet(
                f"{name}-private-{zone}",
                vpc_id=self.vpc.id,
                cidr_block=private_cidrs[i],
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={
                    **args.tags,
                    **cluster_tag,
                    "Name": f"{name}-private-{zone}",
                    "kubernetes.io/role/internal-elb": "1",
                },
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{zone}",
                subnet_id=private.id,
                route_table_id=private_rt.id,
                opts=child,
            )
            self.public_subnet_ids.append(public.id)
            self.private_subnet_ids.append(private.id)
        self.vpc_id = self.vpc.id
        self.cidr = args.cidr
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "private_subnet_ids": self.private_subnet_ids,
                "public_subnet_ids": self.public_subnet_ids,
            }
        )
