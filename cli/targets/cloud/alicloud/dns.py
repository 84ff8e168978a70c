"""Alidns as a failover moves it: the default-line records of the stack's name are pointed at
the new region (bypassing the stack's GTM instance, where it has one, until a deploy)."""

from __future__ import annotations

import functools
from typing import Any

from cli.errors import ResourceFailure, UsageError
from cli.targets.cloud.alicloud.api import AlicloudApi
from cli.targets.cloud.dns import DNS_TYPES, record_type
from cli.targets.cloud.failover import Switch
from cli.targets.cloud.outputs import CloudOutputs


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


class Alidns:
    def __init__(self, api: AlicloudApi, outputs: CloudOutputs) -> None:
        self.api = api
        self.outputs = outputs

    def records(self) -> list[dict[str, Any]]:
        zone = self.outputs.hosted_zone_id
        rr = relative_name(self.outputs.dns_name, zone)
        from alibabacloud_alidns20150109 import models as alidns

        client = self.api.client("alidns", self.outputs.primary_region)
        request = alidns.DescribeDomainRecordsRequest().from_map(
            {"DomainName": zone, "RRKeyWord": rr, "PageSize": 500}
        )
        doc = self.api.call(
            lambda: client.describe_domain_records(request),
            f"reading the records of {self.outputs.dns_name}",
        )
        records = (doc.get("DomainRecords") or {}).get("Record") or []
        # RRKeyWord matches fuzzily; only this exact name counts.
        return [dict(x) for x in records if x.get("RR") == rr and x.get("Type") in DNS_TYPES]

    def point(self, run: Switch) -> dict[str, Any]:
        new, progress = run.new, run.progress
        from alibabacloud_alidns20150109 import models as alidns

        client = self.api.client("alidns", self.outputs.primary_region)
        rr = relative_name(self.outputs.dns_name, self.outputs.hosted_zone_id)
        records = [x for x in self.records() if x.get("Line", "default") == "default"]
        if not records:
            raise ResourceFailure(
                f"no default-line record for {self.outputs.dns_name} in Alidns",
                "the stack creates one; check hosted_zone_id and dns_name in the outputs",
            )
        rtype = record_type(new.endpoint)
        before = [{"type": x.get("Type"), "value": x.get("Value")} for x in records]
        changed = False
        for rec in records:
            if rec.get("Type") == rtype and rec.get("Value") == new.endpoint:
                continue  # Alidns rejects an update that changes nothing
            progress(f"pointing {self.outputs.dns_name} ({rec.get('RecordId')}) at {new.endpoint}")
            fields = {
                "RecordId": rec["RecordId"],
                "RR": rr,
                "Type": rtype,
                "Value": new.endpoint,
                "TTL": rec.get("TTL"),
                "Line": rec.get("Line"),
            }
            request = alidns.UpdateDomainRecordRequest().from_map(
                {k: v for k, v in fields.items() if v is not None}
            )
            self.api.call(
                functools.partial(client.update_domain_record, request),
                f"updating the record of {self.outputs.dns_name}",
                mutation=True,
            )
            changed = True
        after = [
            {"type": x.get("Type"), "value": x.get("Value")}
            for x in self.records()
            if x.get("Line", "default") == "default"
        ]
        if any(a != {"type": rtype, "value": new.endpoint} for a in after):
            raise ResourceFailure(f"{self.outputs.dns_name} reads {after} after the update")
        out: dict[str, Any] = {
            "name": self.outputs.dns_name,
            "before": before,
            "after": after,
            "changed": changed,
        }
        if any(b["type"] == "CNAME" for b in before):
            out["note"] = (
                "the name pointed at a CNAME (the stack's GTM instance when it has a standby);"
                " it now points straight at the new region, bypassing GTM until a deploy"
                " restores the stack's record"
            )
        return out
