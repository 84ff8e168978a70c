"""Names and tags shared by every cloud, derived from the Pulumi stack so two stacks in one
account never collide."""

from __future__ import annotations

import hashlib
import re

import pulumi


def resource_prefix() -> str:
    stack = re.sub(r"[^a-z0-9-]", "-", pulumi.get_stack().lower()).strip("-") or "stack"
    return f"imctl-{stack}"[:24].rstrip("-")


def tags(region: str) -> dict[str, str]:
    return {"app": "imctl", "imctl-stack": pulumi.get_stack(), "imctl-region": region}


def bucket_name(prefix: str, account: str, region: str) -> str:
    """Globally unique (bucket names are): stack, account and region, hashed down if too long."""
    name = f"{prefix}-backups-{account}-{region}".lower()
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[:52].rstrip('-')}-{digest}"
