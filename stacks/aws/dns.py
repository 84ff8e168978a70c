"""Route 53: the global name, answered by the primary region while its health check passes and
by the standby otherwise (PRIMARY/SECONDARY failover records)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

TTL = 60  # seconds a resolver may keep answering with a failed region


@dataclass(frozen=True, slots=True)
class FailoverDnsArgs:
    provider: pulumi.ProviderResource
    zone_name: str
    record_name: str
    primary_region: str
    # region -> load balancer hostname, primary first
    endpoints: Mapping[str, pulumi.Input[str]]
    tags: Mapping[str, str] = field(default_factory=dict)


class FailoverDns(pulumi.ComponentResource):
    zone_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: FailoverDnsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:aws:FailoverDns", name, None, opts)
        # Route 53 is a global service; the primary region's provider serves for it.
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        self.zone = aws.route53.Zone(
            f"{name}-zone", name=args.zone_name, tags=dict(args.tags), opts=child
        )
        self.health_checks: dict[str, aws.route53.HealthCheck] = {}
        self.records: dict[str, aws.route53.Record] = {}
        failover = len(args.endpoints) > 1
        for region, endpoint in args.endpoints.items():
            role = "PRIMARY" if region == args.primary_region else "SECONDARY"
            check = aws.route53.HealthCheck(
                f"{name}-{region}-health",
                type="HTTP",
                fqdn=endpoint,
                port=80,
                resource_path="/readyz",
                request_interval=10,
                failure_threshold=3,
                tags={**args.tags, "Name": f"im-server {region}"},
                opts=child,
            )
            self.health_checks[region] = check
            self.records[region] = aws.route53.Record(
                f"{name}-{region}",
                zone_id=self.zone.zone_id,
                name=args.record_name,
                type="CNAME",
                ttl=TTL,
                records=[endpoint],
                set_identifier=region if failover else None,
                failover_routing_policies=(
                    [aws.route53.RecordFailoverRoutingPolicyArgs(type=role)] if failover else None
                ),
                health_check_id=check.id if failover else None,
                opts=child,
            )
        self.zone_id = self.zone.zone_id
        self.register_outputs({"zone_id": self.zone_id})
