"""Alidns for the zone and the global name. With a standby region, failover is expressed in
Global Traffic Manager: an address pool per region, each health-checked on /readyz, and an
access strategy that answers with the primary pool and fails over to the standby pool. The
record in Alidns is a CNAME to the GTM instance's name. Without a standby, an A record.

A GTM instance is a subscription product: `pulumi up` buys one (a month, renewed by hand)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_alicloud as alicloud

TTL = 60


@dataclass(frozen=True, slots=True)
class GlobalDnsArgs:
    provider: pulumi.ProviderResource
    zone_name: str
    hostname: str
    primary_region: str
    endpoints: Mapping[str, pulumi.Input[str]]  # region -> load balancer IP, primary first


class GlobalDns(pulumi.ComponentResource):
    zone_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: GlobalDnsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:alicloud:GlobalDns", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        self.domain = alicloud.dns.AlidnsDomain(
            f"{name}-domain", domain_name=args.zone_name, opts=child
        )
        standby = [r for r in args.endpoints if r != args.primary_region]
        if not standby:
            self.record = alicloud.dns.AlidnsRecord(
                f"{name}-record",
                domain_name=self.domain.domain_name,
                rr=args.hostname,
                type="A",
                value=args.endpoints[args.primary_region],
                ttl=TTL,
                opts=child,
            )
        else:
            self.gtm = alicloud.dns.GtmInstance(
                f"{name}-gtm",
                instance_name=f"{name}-gtm",
                payment_type="Subscription",
                period=1,
                renewal_status="ManualRenewal",
                package_edition="standard",
                health_check_task_count=100,
                sms_notification_count=1000,
                strategy_mode="GEO",
                public_cname_mode="SYSTEM_ASSIGN",
                public_user_domain_name=args.zone_name,
                public_rr=args.hostname,
                cname_type="PUBLIC",
                ttl=TTL,
                opts=child,
            )
            self.pools: dict[str, alicloud.dns.AddressPool] = {}
            for region, endpoint in args.endpoints.items():
                pool = alicloud.dns.AddressPool(
                    f"{name}-{region}-pool",
                    address_pool_name=f"im-{region}",
                    instance_id=self.gtm.id,
                    lba_strategy="RATIO",
                    type="IPV4",
                    addresses=[
                        alicloud.dns.AddressPoolAddressArgs(
                            address=endpoint,
                            attribute_info=json.dumps(
                                {"lineCodeRectifyType": "RECTIFIED", "lineCodes": ["default"]}
                            ),
                            mode="SMART",
                            lba_weight=1,
                            remark=f"im-server {region}",
                        )
                    ],
                    opts=child,
                )
                alicloud.dns.MonitorConfig(
                    f"{name}-{region}-health",
                    addr_pool_id=pool.id,
                    # TLS (issue 13): the clients' port; 80 is closed unless plaintext is asked.
                    protocol_type="HTTPS",
                    interval=60,
                    timeout=5000,
                    evaluation_count=3,
                    monitor_extend_info=json.dumps(
                        {"port": 443, "path": "/readyz", "host": args.hostname, "failureRate": 50}
                    ),
                    # The probe node of the provider's own example; add nodes (city/ISP codes
                    # from the GTM console) to stop one carrier's trouble causing a failover.
                    isp_city_nodes=[
                        alicloud.dns.MonitorConfigIspCityNodeArgs(city_code="503", isp_code="465")
                    ],
                    opts=child,
                )
                self.pools[region] = pool
            self.strategy = alicloud.dns.AccessStrategy(
                f"{name}-failover",
                strategy_name="im-failover",
                strategy_mode="GEO",
                instance_id=self.gtm.id,
                lines=[alicloud.dns.AccessStrategyLineArgs(line_code="default")],
                default_addr_pool_type="IPV4",
                default_lba_strategy="RATIO",
                default_min_available_addr_num=1,
                default_addr_pools=[
                    alicloud.dns.AccessStrategyDefaultAddrPoolArgs(
                        addr_pool_id=self.pools[args.primary_region].id, lba_weight=1
                    )
                ],
                failover_addr_pool_type="IPV4",
                failover_lba_strategy="RATIO",
                failover_min_available_addr_num=1,
                failover_addr_pools=[
                    alicloud.dns.AccessStrategyFailoverAddrPoolArgs(
                        addr_pool_id=self.pools[region].id, lba_weight=1
                    )
                    for region in standby
                ],
                access_mode="AUTO",
                opts=child,
            )
            self.record = alicloud.dns.AlidnsRecord(
                f"{name}-record",
                domain_name=self.domain.domain_name,
                rr=args.hostname,
                type="CNAME",
                value=pulumi.Output.concat(args.hostname, ".", self.gtm.public_zone_name),
                ttl=TTL,
                opts=child,
            )
        self.zone_name = self.domain.domain_name
        self.register_outputs({"zone_name": self.zone_name})
