"""Cloud DNS: a public zone (DNSSEC on) and the global A record with a primary-backup routing
policy: the primary region's load balancer while its health check passes, else the standby's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

TTL = 60
# With source_regions set, Compute Engine refuses a check interval under 30 s (the
# HealthCheck's sourceRegions docs). Down after 3 misses: about 90 s, plus the TTL.
CHECK_INTERVAL_SECONDS = 30
# A health check for external endpoints probes from exactly three regions.
_PROBE_REGIONS = ("us-central1", "europe-west1", "asia-east1", "us-east4")


def probe_regions(regions: Mapping[str, object]) -> list[str]:
    chosen = list(regions)[:3]
    for candidate in _PROBE_REGIONS:
        if len(chosen) == 3:
            break
        if candidate not in chosen:
            chosen.append(candidate)
    return chosen


@dataclass(frozen=True, slots=True)
class FailoverDnsArgs:
    provider: pulumi.ProviderResource
    zone_name: str
    record_name: str
    primary_region: str
    endpoints: Mapping[str, pulumi.Input[str]]  # region -> load balancer IP, primary first


class FailoverDns(pulumi.ComponentResource):
    zone_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: FailoverDnsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:gcp:FailoverDns", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        self.zone = gcp.dns.ManagedZone(
            f"{name}-zone",
            dns_name=f"{args.zone_name}.",
            visibility="public",
            dnssec_config=gcp.dns.ManagedZoneDnssecConfigArgs(state="on"),
            opts=child,
        )
        fqdn = f"{args.record_name}."
        standby = [r for r in args.endpoints if r != args.primary_region]
        if not standby:
            self.record = gcp.dns.RecordSet(
                f"{name}-record",
                managed_zone=self.zone.name,
                name=fqdn,
                type="A",
                ttl=TTL,
                rrdatas=[args.endpoints[args.primary_region]],
                opts=child,
            )
        else:
            self.health_check = gcp.compute.HealthCheck(
                f"{name}-health",
                check_interval_sec=CHECK_INTERVAL_SECONDS,
                timeout_sec=5,
                healthy_threshold=2,
                unhealthy_threshold=3,
                # TLS (issue 13): the clients' port; 80 is closed unless plaintext is asked for.
                https_health_check=gcp.compute.HealthCheckHttpsHealthCheckArgs(
                    port=443, request_path="/readyz"
                ),
                source_regions=probe_regions(args.endpoints),
                opts=child,
            )
            policy = gcp.dns.RecordSetRoutingPolicyPrimaryBackupArgs(
                primary=gcp.dns.RecordSetRoutingPolicyPrimaryBackupPrimaryArgs(
                    external_endpoints=[args.endpoints[args.primary_region]]
                ),
                backup_geos=[
                    gcp.dns.RecordSetRoutingPolicyPrimaryBackupBackupGeoArgs(
                        location=region,
                        health_checked_targets=gcp.dns.RecordSetRoutingPolicyPrimaryBackupBackupGeoHealthCheckedTargetsArgs(
                            external_endpoints=[args.endpoints[region]]
                        ),
                    )
                    for region in standby
                ],
                # No share of traffic to the backup while the primary is healthy.
                trickle_ratio=0,
            )
            self.record = gcp.dns.RecordSet(
                f"{name}-record",
                managed_zone=self.zone.name,
                name=fqdn,
                type="A",
                ttl=TTL,
                routing_policy=gcp.dns.RecordSetRoutingPolicyArgs(
                    health_check=self.health_check.id, primary_backup=policy
                ),
                opts=child,
            )
        self.zone_name = self.zone.name
        self.register_outputs({"zone_name": self.zone_name})
