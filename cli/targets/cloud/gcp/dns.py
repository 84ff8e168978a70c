"""Cloud DNS as a failover moves it: the stack's name is sent to the new region; a
primary-backup policy stays one where other regions can back it up."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cli.deadline import poll
from cli.errors import ResourceFailure
from cli.targets.cloud.dns import DNS_TYPES, record_type
from cli.targets.cloud.failover import Switch
from cli.targets.cloud.gcp.api import GcpApi
from cli.targets.cloud.outputs import CloudOutputs, RegionOutputs


class CloudDns:
    def __init__(self, api: GcpApi, outputs: CloudOutputs) -> None:
        self.api = api
        self.project = api.project
        self.outputs = outputs

    def fqdn(self) -> str:
        return self.outputs.dns_name.rstrip(".") + "."

    def rrsets(self) -> list[dict[str, Any]]:
        req = (
            self.api.dns()
            .resourceRecordSets()
            .list(project=self.project, managedZone=self.outputs.hosted_zone_id, name=self.fqdn())
        )
        doc = self.api.call(req, f"reading the records of {self.outputs.dns_name}")
        return [s for s in doc.get("rrsets") or [] if s.get("type") in DNS_TYPES]

    def point(self, run: Switch) -> dict[str, Any]:
        old, new, deadline, progress = run.old, run.new, run.deadline, run.progress
        current = self.rrsets()
        backups = [r for r in self.outputs.regions.values() if r.name not in (old.name, new.name)]
        wanted = _new_rrset(self.fqdn(), current, new, backups)
        before = [rrset_summary(s) for s in current]
        if [rrset_summary(wanted)] == before:
            return {"name": self.fqdn(), "before": before, "after": before, "changed": False}
        progress(f"pointing {self.outputs.dns_name} at {new.name} ({new.endpoint})")
        change = self.api.call(
            self.api.dns()
            .changes()
            .create(
                project=self.project,
                managedZone=self.outputs.hosted_zone_id,
                body={"deletions": current, "additions": [wanted]},
            ),
            f"changing the records of {self.outputs.dns_name}",
            mutation=True,
        )
        first = [change]

        def fetch() -> dict[str, Any]:
            if first:
                return first.pop()
            req = (
                self.api.dns()
                .changes()
                .get(
                    project=self.project,
                    managedZone=self.outputs.hosted_zone_id,
                    changeId=change["id"],
                )
            )
            return self.api.call(req, f"reading DNS change {change['id']}")

        poll(
            fetch,
            done=lambda c: c.get("status") == "done",
            state=lambda c: str(c.get("status")),
            what=f"DNS change {change.get('id')}",
            deadline=deadline,
            progress=progress,
            interval=self.api.interval,
        )
        after = [rrset_summary(s) for s in self.rrsets()]
        if after != [rrset_summary(wanted)]:
            raise ResourceFailure(
                f"{self.outputs.dns_name} reads {after} after the change, not what was written"
            )
        return {
            "name": self.fqdn(),
            "before": before,
            "after": after,
            "changed": True,
            "change_id": change.get("id"),
        }


def _new_rrset(
    fqdn: str,
    current: list[dict[str, Any]],
    new: RegionOutputs,
    backups: list[RegionOutputs],
) -> dict[str, Any]:
    """The record set that sends the name to ``new``. A primary-backup policy stays one when
    regions other than the old primary can back it up; the old primary is never a backup, since
    its workload is fenced and its database diverges from here on."""
    rtype = record_type(new.endpoint)
    ttl = int(current[0].get("ttl", 60)) if current else 60
    policy = next((s.get("routingPolicy") for s in current if s.get("routingPolicy")), None)
    geo_backups = [b for b in backups if record_type(b.endpoint) == rtype]
    if policy and policy.get("primaryBackup") and geo_backups and rtype != "CNAME":
        routing: dict[str, Any] = {
            "primaryBackup": {
                "primaryTargets": {"externalEndpoints": [new.endpoint]},
                "backupGeoTargets": {
                    "items": [
                        {
                            "location": b.name,
                            "healthCheckedTargets": {"externalEndpoints": [b.endpoint]},
                        }
                        for b in geo_backups
                    ]
                },
                "trickleTraffic": 0,
            }
        }
        if policy.get("healthCheck"):
            routing["healthCheck"] = policy["healthCheck"]
        return {"name": fqdn, "type": rtype, "ttl": ttl, "routingPolicy": routing}
    value = new.endpoint.rstrip(".") + "." if rtype == "CNAME" else new.endpoint
    return {"name": fqdn, "type": rtype, "ttl": ttl, "rrdatas": [value]}


def rrset_summary(s: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": s.get("type")}
    if s.get("rrdatas"):
        out["rrdatas"] = list(s["rrdatas"])
    pb = (s.get("routingPolicy") or {}).get("primaryBackup")
    if pb:
        out["primary"] = list((pb.get("primaryTargets") or {}).get("externalEndpoints") or [])
        out["backup"] = [
            ep
            for item in (pb.get("backupGeoTargets") or {}).get("items") or []
            for ep in (item.get("healthCheckedTargets") or {}).get("externalEndpoints") or []
        ]
    return out
