"""One global VPC (GCP networks span regions), a subnet with pod and service ranges plus Cloud
NAT per region, and private services access so Cloud SQL gets private IPs only."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp


@dataclass(frozen=True, slots=True)
class NetworkArgs:
    provider: pulumi.ProviderResource


class Network(pulumi.ComponentResource):
    network_id: pulumi.Output[str]
    # Cloud SQL private IP needs the service networking peering to exist first.
    private_services: pulumi.Resource

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:gcp:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        self.network = gcp.compute.Network(
            f"{name}-vpc",
            auto_create_subnetworks=False,
            routing_mode="GLOBAL",
            opts=child,
        )
        psa_range = gcp.compute.GlobalAddress(
            f"{name}-psa-range",
            purpose="VPC_PEERING",
            address_type="INTERNAL",
            prefix_length=16,
            network=self.network.id,
            opts=child,
        )
        self.private_services = gcp.servicenetworking.Connection(
            f"{name}-psa",
            network=self.network.id,
            service="servicenetworking.googleapis.com",
            reserved_peering_ranges=[psa_range.name],
            opts=child,
        )
        self.network_id = self.network.id
        self.register_outputs({"network_id": self.network_id})


@dataclass(frozen=True, slots=True)
class SubnetArgs:
    provider: pulumi.ProviderResource
    region: str
    network_id: pulumi.Input[str]
    nodes_cidr: str
    pods_cidr: str
    services_cidr: str


class Subnet(pulumi.ComponentResource):
    subnet_id: pulumi.Output[str]
    PODS = "pods"
    SERVICES = "services"

    def __init__(
        self, name: str, args: SubnetArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:gcp:Subnet", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        self.subnet = gcp.compute.Subnetwork(
            f"{name}-subnet",
            region=args.region,
            network=args.network_id,
            ip_cidr_range=args.nodes_cidr,
            private_ip_google_access=True,
            secondary_ip_ranges=[
                gcp.compute.SubnetworkSecondaryIpRangeArgs(
                    range_name=self.PODS, ip_cidr_range=args.pods_cidr
                ),
                gcp.compute.SubnetworkSecondaryIpRangeArgs(
                    range_name=self.SERVICES, ip_cidr_range=args.services_cidr
                ),
            ],
            opts=child,
        )
        router = gcp.compute.Router(
            f"{name}-router", region=args.region, network=args.network_id, opts=child
        )
        # Private nodes have no public IPs; NAT lets them pull images and reach Google APIs.
        gcp.compute.RouterNat(
            f"{name}-nat",
            region=args.region,
            router=router.name,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            log_config=gcp.compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"),
            opts=child,
        )
        self.subnet_id = self.subnet.id
        self.register_outputs({"subnet_id": self.subnet_id})
