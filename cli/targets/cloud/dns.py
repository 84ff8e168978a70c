"""What the DNS steps of GCP and Alibaba Cloud share: which record types name the stack, and
which one an endpoint needs."""

from __future__ import annotations

import ipaddress

# The record types a failover rewrites for the stack's DNS name.
DNS_TYPES = ("A", "AAAA", "CNAME")


def record_type(endpoint: str) -> str:
    """A load balancer address is an IP (A/AAAA) or a hostname (CNAME)."""
    try:
        addr = ipaddress.ip_address(endpoint)
    except ValueError:
        return "CNAME"
    return "AAAA" if addr.version == 6 else "A"
