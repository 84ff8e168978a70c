"""The outputs contract: what every cloud operation reads to find its resources.

From the Pulumi stack's outputs (``imctl deploy --cloud X``), or from a JSON file
(``--outputs FILE`` / ``IMCTL_OUTPUTS_FILE``) for infrastructure deployed by other means:

    {"cloud": "aws", "primary_region": "us-east-1", "standby_region": "us-west-2",
     "regions": {"us-east-1": {"cluster_name", "nodegroup_name", "db_instance_id", "endpoint",
                               "cluster_id"?, "role"?, "namespace"?, "deployment"?,
                               "kubeconfig"?}, ...},
     "hosted_zone_id": "...", "dns_name": "...", "backup_bucket": "..."}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cli.errors import UsageError
from stacks.workload_contract import DEPLOYMENT_NAME

CLOUDS = ("aws", "gcp", "alicloud")
_REGION_KEYS = ("cluster_name", "nodegroup_name", "db_instance_id", "endpoint")
_TOP_KEYS = ("cloud", "primary_region", "regions", "hosted_zone_id", "dns_name", "backup_bucket")


@dataclass(frozen=True)
class RegionOutputs:
    name: str
    cluster_name: str
    nodegroup_name: str
    db_instance_id: str
    endpoint: str
    role: str = "primary"
    namespace: str = "imctl"
    deployment: str = DEPLOYMENT_NAME
    kubeconfig: str | None = None  # secret; absent: see kube_access.py for what is used
    # What the cloud's cluster API takes where that is not the name: ACK's cluster id (c-...),
    # GKE's full resource name (projects/P/locations/L/clusters/N). The stacks export it.
    cluster_id: str | None = None
    # The name the region's certificate carries when the stack serves wss:// (its balancer's
    # address is not in it); None: plain HTTP on the endpoint. Set from the top-level outputs.
    tls_name: str | None = None


@dataclass(frozen=True)
class CloudOutputs:
    cloud: str
    primary_region: str
    standby_region: str | None
    regions: Mapping[str, RegionOutputs]
    hosted_zone_id: str
    dns_name: str
    backup_bucket: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        """What clients connect to: the stack's ``endpoint`` output, else (a stack from before
        TLS, issue 13) plain ws:// on the global name."""
        return str(self.extra.get("endpoint") or f"ws://{self.dns_name}/ws")

    @property
    def tls_name(self) -> str | None:
        """The name the regions' certificates carry, when the endpoint is wss://."""
        return self.dns_name if self.endpoint.startswith("wss://") else None

    @property
    def primary(self) -> RegionOutputs:
        return self.regions[self.primary_region]

    def with_writer(self, writer: str, why: str) -> CloudOutputs:
        """These outputs with ``writer`` as the primary: a failover has moved the roles and the
        stack's outputs will only say so after the next deploy. ``why`` is kept in ``extra``
        (``roles_note``) so a command can tell the operator."""
        if writer == self.primary_region or writer not in self.regions:
            return self
        old = self.primary_region
        regions = {
            name: replace(r, role="primary" if name == writer else "standby")
            for name, r in self.regions.items()
        }
        return replace(
            self,
            primary_region=writer,
            standby_region=old,
            regions=regions,
            extra={**self.extra, "roles_note": why},
        )

    def region(self, name: str) -> RegionOutputs:
        if name not in self.regions:
            raise UsageError(
                f"region {name!r} is not in this stack's outputs",
                f"regions: {', '.join(self.regions)}",
            )
        return self.regions[name]

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], source: str = "outputs") -> CloudOutputs:
        missing = [k for k in _TOP_KEYS if k not in doc]
        if missing:
            raise UsageError(
                f"{source} lacks {', '.join(missing)}",
                "see the outputs contract in docs/runbook.md",
            )
        if doc["cloud"] not in CLOUDS:
            raise UsageError(f"{source}: unknown cloud {doc['cloud']!r}", f"one of {CLOUDS}")
        regions: dict[str, RegionOutputs] = {}
        for name, r in dict(doc["regions"]).items():
            lacking = [k for k in _REGION_KEYS if not r.get(k)]
            if lacking:
                raise UsageError(
                    f"{source}: region {name} lacks {', '.join(lacking)}",
                    "see the outputs contract in docs/runbook.md",
                )
            known = {
                k: r[k]
                for k in RegionOutputs.__dataclass_fields__
                if k in r and k not in ("name", "tls_name")
            }
            tls = doc["dns_name"] if str(doc.get("endpoint", "")).startswith("wss://") else None
            regions[name] = RegionOutputs(name=name, tls_name=tls, **known)
        if doc["primary_region"] not in regions:
            raise UsageError(f"{source}: primary_region {doc['primary_region']!r} has no entry")
        standby = doc.get("standby_region") or None
        if standby is not None and standby not in regions:
            raise UsageError(f"{source}: standby_region {standby!r} has no entry")
        rest = {k: v for k, v in doc.items() if k not in (*_TOP_KEYS, "standby_region")}
        return cls(
            cloud=doc["cloud"],
            primary_region=doc["primary_region"],
            standby_region=standby,
            regions=regions,
            hosted_zone_id=doc["hosted_zone_id"],
            dns_name=doc["dns_name"],
            backup_bucket=doc["backup_bucket"],
            extra=rest,
        )


def load_file(path: str | Path) -> CloudOutputs:
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise UsageError(f"outputs file {p} does not exist") from None
    except ValueError as exc:
        raise UsageError(f"outputs file {p} is not JSON: {exc}") from None
    return CloudOutputs.from_json(doc, source=str(p))
