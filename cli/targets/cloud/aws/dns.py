"""Route 53 as a failover moves it: the stack's PRIMARY and SECONDARY failover records, the
change that swaps them, and applying it. The records' values and health checks move together,
so each region keeps the health check that probes it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cli.deadline import Deadline
from cli.errors import PreconditionFailed
from cli.progress import Note
from cli.targets.cloud.aws.api import AwsApi, aws_call, aws_pages
from cli.targets.cloud.outputs import CloudOutputs

# Route 53 is global; its API is served from us-east-1.
ROUTE53_REGION = "us-east-1"


def failover_records(api: AwsApi, outputs: CloudOutputs) -> tuple[dict[str, Any], dict[str, Any]]:
    r53 = api.client("route53", ROUTE53_REGION)
    sets = aws_pages(
        f"listing records of hosted zone {outputs.hosted_zone_id}",
        r53,
        "list_resource_record_sets",
        "ResourceRecordSets",
        HostedZoneId=outputs.hosted_zone_id,
    )
    return failover_pair(sets, outputs.dns_name)


def apply_changes(
    api: AwsApi,
    outputs: CloudOutputs,
    changes: list[dict[str, Any]],
    deadline: Deadline,
    progress: Note,
) -> str | None:
    """Apply ``changes`` and wait until Route 53 has them everywhere; -> the change id (None:
    nothing to change)."""
    if not changes:
        progress("Route 53 already points at the new primary")
        return None
    r53 = api.client("route53", ROUTE53_REGION)
    info = aws_call(
        f"rewriting the failover records of {outputs.dns_name}",
        r53.change_resource_record_sets,
        HostedZoneId=outputs.hosted_zone_id,
        ChangeBatch={"Comment": "imctl failover", "Changes": changes},
    )["ChangeInfo"]
    change_id = str(info["Id"])

    def insync() -> tuple[bool, str]:
        got = aws_call(f"reading Route 53 change {change_id}", r53.get_change, Id=change_id)
        status = str(got["ChangeInfo"]["Status"])
        return status == "INSYNC", status

    api.wait(f"Route 53 change {change_id}", insync, deadline, progress)
    return change_id


def fqdn(name: str) -> str:
    return name.lower().rstrip(".")


def _value(record: Mapping[str, Any]) -> str | None:
    values = [fqdn(v["Value"]) for v in record.get("ResourceRecords", [])]
    return values[0] if len(values) == 1 else None


def failover_pair(
    record_sets: Sequence[Mapping[str, Any]], dns_name: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The PRIMARY and SECONDARY failover records of ``dns_name``."""
    name = fqdn(dns_name)
    found = [dict(r) for r in record_sets if fqdn(r["Name"]) == name and r.get("Failover")]
    primary = [r for r in found if r["Failover"] == "PRIMARY"]
    secondary = [r for r in found if r["Failover"] == "SECONDARY"]
    if len(primary) != 1 or len(secondary) != 1:
        raise PreconditionFailed(
            f"Route 53 has {len(primary)} PRIMARY and {len(secondary)} SECONDARY failover "
            f"records for {dns_name}, expected one of each",
            "the stack's DNS was changed outside imctl: `imctl deploy` restores it",
        )
    for r in (*primary, *secondary):
        if _value(r) is None:
            raise PreconditionFailed(
                f"the {r['Failover']} record of {dns_name} is not a single-value record "
                "(alias or several values): imctl rewrites only what the stack creates",
                "point the records by hand (Route 53 console), or `imctl deploy`",
            )
    return primary[0], secondary[0]


def failover_changes(
    primary: Mapping[str, Any],
    secondary: Mapping[str, Any],
    new_primary_target: str,
    old_primary_target: str,
) -> list[dict[str, Any]]:
    """UPSERTs that make PRIMARY answer with ``new_primary_target`` and SECONDARY with the old
    one; [] when that is already so (a re-run after a partial failover).

    Values and health checks move together, so each region keeps the health check that probes
    it; the SetIdentifiers and failover roles stay, so no change batch ever holds two PRIMARYs.
    """
    new, old = fqdn(new_primary_target), fqdn(old_primary_target)
    if (_value(primary), _value(secondary)) == (new, old):
        return []
    if (_value(primary), _value(secondary)) != (old, new):
        raise PreconditionFailed(
            f"the failover records point at {_value(primary)} (PRIMARY) and "
            f"{_value(secondary)} (SECONDARY), not at the endpoints in the stack's outputs "
            f"({old}, {new})",
            "refresh the outputs (`imctl deploy`) or fix the records, then retry",
        )

    def moved(record: Mapping[str, Any], source: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in record.items() if k != "HealthCheckId"}
        out["ResourceRecords"] = source["ResourceRecords"]
        if source.get("HealthCheckId"):
            out["HealthCheckId"] = source["HealthCheckId"]
        return out

    return [
        {"Action": "UPSERT", "ResourceRecordSet": moved(primary, secondary)},
        {"Action": "UPSERT", "ResourceRecordSet": moved(secondary, primary)},
    ]
