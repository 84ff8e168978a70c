"""What the DNS steps of GCP and Alibaba Cloud share: which record types name the stack, and
which one an endpoint needs."""

from __future__ import annotations

import ipaddress

from cli.errors import UsageError

# The record types a failover rewrites for the stack's DNS name.
DNS_TYPES = ("A", "AAAA", "CNAME")


def record_type(endpoint: str) -> str:
    """A load balancer address is an IP (A/AAAA) or a hostname (CNAME)."""
    try:
        addr = ipaddress.ip_address(endpoint)
    except ValueError:
        return "CNAME"
    return "AAAA" if addr.version == 6 else "A"


def relative_name(dns_name: str, zone: str) -> str:
    """``im.example.com`` in zone ``example.com`` -> ``im`` (Alidns' RR); apex -> ``@``."""
    name, zone = dns_name.rstrip(".").lower(), zone.rstrip(".").lower()
    if name == zone:
        return "@"
    if not name.endswith("." + zone):
        raise UsageError(
            f"dns_name {dns_name!r} is not inside the zone {zone!r}",
            "check dns_name and hosted_zone_id in the outputs",
        )
    return name[: -len(zone) - 1]
