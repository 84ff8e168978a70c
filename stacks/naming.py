"""Names and tags shared by every cloud, derived from the Pulumi stack so two stacks in one
account never collide."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

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


def final_snapshot_id(prefix: str, db_name: str, taken_at: datetime | None) -> str:
    """The RDS final snapshot a writer leaves when it is deleted.

    Snapshots outlive their instance and their identifiers are unique per account and region,
    so the stack prefix keeps two stacks apart, and ``taken_at`` (the teardown deploy's time,
    the only deploy after which a delete happens) keeps two destroys of one stack apart. RDS
    wants 1-255 letters, digits and hyphens, a letter first, no trailing or doubled hyphen.
    """
    parts = [prefix, db_name, "final"]
    if taken_at is not None:
        parts.append(taken_at.strftime("%Y%m%d%H%M%S"))
    ident = re.sub(r"[^a-z0-9-]", "-", "-".join(parts).lower())
    ident = re.sub(r"-{2,}", "-", ident).strip("-")
    if not ident[:1].isalpha():
        ident = f"s-{ident}"
    return ident[:255].rstrip("-")
