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
    primary_region: str  # the writer: PRIMARY answers with its endpoint
    # region -> load balancer hostname
    endpoints: Mapping[str, pulumi.Input[str]]
    # The site whose SetIdentifier holds the PRIMARY role for good (the config's first region).
    # A failover moves endpoints and health checks between the two records, never the roles:
    # flipping roles takes two UPSERTs, and Route 53 refuses the moment with two PRIMARYs.
    primary_site: str | None = None
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
            # TLS (issue 13): clients' port 443 (80 is closed unless plaintext is asked for);
            # Route 53 does not validate the certificate, which names the global name.
            self.health_checks[region] = aws.route53.HealthCheck(
                f"{name}-{region}-health",
                type="HTTPS",
                fqdn=endpoint,
                port=443,
                resource_path="/readyz",
                request_interval=10,
                failure_threshold=3,
                tags={**args.tags, "Name": f"im-server {region}"},
                opts=child,
            )
        primary_site = args.primary_site or args.primary_region
        for site in args.endpoints:
            role = "PRIMARY" if site == primary_site else "SECONDARY"
            # PRIMARY serves the writer, SECONDARY the other region, with their health checks.
            serves = (
                args.primary_region
                if role == "PRIMARY"
                else next((r for r in args.endpoints if r != args.primary_region), site)
            )
            self.records[site] = aws.route53.Record(
                f"{name}-{site}",
                zone_id=self.zone.zone_id,
                name=args.record_name,
                type="CNAME",
                ttl=TTL,
                records=[args.endpoints[serves]],
                set_identifier=site if failover else None,
                failover_routing_policies=(
                    [aws.route53.RecordFailoverRoutingPolicyArgs(type=role)] if failover else None
                ),
                health_check_id=self.health_checks[serves].id if failover else None,
                opts=child,
            )
        self.zone_id = self.zone.zone_id
        self.register_outputs({"zone_id": self.zone_id})
