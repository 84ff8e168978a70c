"""Which Kubernetes minor versions each managed service supports, and until when.

A cluster created on a version past its provider's standard support costs more (EKS bills
extended support per cluster hour) or is upgraded under the workload's feet (GKE's release
channels, ACK); past the end of extended support (EKS) or end of life, the provider refuses to
create it at all. ``imctl plan``/``deploy`` refuse such a version and ``imctl plan``/``doctor``
warn about one past standard support, from the dated tables below.

The tables are copied by hand from each provider's calendar (``source``) on the day in
``checked``; refresh them when a provider publishes a new minor version. Every function takes
today's date as an argument, so the tests pass a fixed date and never turn red by themselves when
a date in a table passes.

This module imports nothing from Pulumi or a cloud SDK: ``imctl doctor`` uses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Final, Literal

Status = Literal["standard", "extended", "end_of_life", "unknown"]
_MINOR = re.compile(r"^1\.(\d{1,3})$")


@dataclass(frozen=True, slots=True)
class Lifecycle:
    version: str  # minor, "1.35"
    end_of_standard: date  # first day outside standard support
    end_of_life: date  # first day the provider no longer creates (or keeps) the version


@dataclass(frozen=True, slots=True)
class Calendar:
    service: str
    source: str
    checked: date
    # What the provider offers between the two dates, if anything, for the operator's message.
    after_standard: str
    default: str  # the version a stack gets when kubernetesVersion is not set
    rows: tuple[Lifecycle, ...]

    def row(self, version: str) -> Lifecycle | None:
        return next((r for r in self.rows if r.version == version), None)


def _d(text: str) -> date:
    return date.fromisoformat(text)


CALENDARS: Final[dict[str, Calendar]] = {
    # EKS: 14 months of standard support from the EKS release, then 12 months of extended
    # support (billed per cluster hour); on the end-of-extended day new clusters are refused.
    "aws": Calendar(
        service="Amazon EKS",
        source="https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html"
        "#kubernetes-release-calendar",
        checked=_d("2026-12-03"),
        after_standard="extended support (extra charge per cluster hour)",
        default="1.35",
        rows=(
            Lifecycle("1.35", _d("2027-03-27"), _d("2028-03-27")),
            Lifecycle("1.34", _d("2026-12-02"), _d("2027-12-02")),
            Lifecycle("1.33", _d("2026-07-29"), _d("2027-07-29")),
            Lifecycle("1.32", _d("2026-03-23"), _d("2027-03-23")),
            Lifecycle("1.31", _d("2025-11-26"), _d("2026-11-26")),
            Lifecycle("1.30", _d("2025-07-23"), _d("2026-07-23")),
            Lifecycle("1.29", _d("2025-03-23"), _d("2026-03-23")),
        ),
    ),
    # GKE: the stack subscribes to the REGULAR channel, whose clusters are upgraded at the end of
    # standard support (extended support exists only on the EXTENDED channel), so for this stack
    # the end of standard support is the end of life. Dates are GKE's own estimates.
    "gcp": Calendar(
        service="GKE (REGULAR channel)",
        source="https://cloud.google.com/kubernetes-engine/docs/release-schedule",
        checked=_d("2026-12-03"),
        after_standard="nothing on the REGULAR channel (GKE upgrades the cluster)",
        default="1.35",
        rows=(
            Lifecycle("1.35", _d("2027-04-11"), _d("2027-04-11")),
            Lifecycle("1.34", _d("2026-10-01"), _d("2026-10-01")),
        ),
    ),
    # ACK has no extended support: a version is supported until its end date, then retired.
    "alicloud": Calendar(
        service="Alibaba Cloud ACK",
        source="https://www.alibabacloud.com/help/en/ack/product-overview/"
        "release-notes-for-kubernetes-versions",
        checked=_d("2026-12-03"),
        after_standard="nothing (ACK has no extended support)",
        default="1.36",
        rows=(
            Lifecycle("1.36", _d("2027-05-30"), _d("2027-05-30")),
            Lifecycle("1.35", _d("2027-02-28"), _d("2027-02-28")),
            Lifecycle("1.34", _d("2026-09-30"), _d("2026-09-30")),
            Lifecycle("1.33", _d("2026-05-31"), _d("2026-05-31")),
            Lifecycle("1.32", _d("2026-01-31"), _d("2026-01-31")),
        ),
    ),
}

# ACK's API takes a full patch version; these are the ones ACK's release notes for each minor
# list (https://www.alibabacloud.com/help/en/ack/ack-managed-and-ack-dedicated/user-guide/
# kubernetes-1-36 and -1-35). GKE takes a minor ("1.35": its newest patch); EKS only a minor.
ACK_PATCH: Final[dict[str, str]] = {"1.36": "1.36.1-aliyun.1", "1.35": "1.35.2-aliyun.1"}


def is_minor(version: str) -> bool:
    return _MINOR.match(version) is not None


def _minor(version: str) -> int:
    match = _MINOR.match(version)
    return int(match.group(1)) if match else -1


def status(cloud: str, version: str, today: date) -> Status:
    """Where ``version`` stands on ``today``. A version older than every row is past its end of
    life: each table lists every version its provider still offered on ``checked``."""
    cal = CALENDARS[cloud]
    row = cal.row(version)
    if row is None:
        oldest = min(_minor(r.version) for r in cal.rows)
        return "end_of_life" if 0 <= _minor(version) < oldest else "unknown"
    if today >= row.end_of_life:
        return "end_of_life"
    if today >= row.end_of_standard:
        return "extended"
    return "standard"


def in_standard_support(cloud: str, today: date) -> list[str]:
    """The table's versions still in standard support on ``today``, newest first."""
    return [
        r.version for r in CALENDARS[cloud].rows if status(cloud, r.version, today) == "standard"
    ]


@dataclass(frozen=True, slots=True)
class Verdict:
    """``level``: "ok", "warn" (past standard support, or not in the table) or "refuse"."""

    level: Literal["ok", "warn", "refuse"]
    message: str
    hint: str = ""


def verdict(cloud: str, version: str, today: date) -> Verdict:
    cal = CALENDARS[cloud]
    row = cal.row(version)
    supported = ", ".join(in_standard_support(cloud, today)) or "none in imctl's table"
    hint = (
        f"set kubernetesVersion to one in standard support on {today.isoformat()}: {supported}"
        f" (calendar: {cal.source})"
    )
    state = status(cloud, version, today)
    if row is None and state == "end_of_life":
        return Verdict(
            "refuse",
            f"Kubernetes {version} is older than every version {cal.service} still offered on"
            f" {cal.checked.isoformat()}: new clusters cannot be created on it",
            hint,
        )
    if row is None:
        return Verdict(
            "warn",
            f"Kubernetes {version} is not in imctl's {cal.service} calendar (checked"
            f" {cal.checked.isoformat()}); its support dates are unknown here",
            hint,
        )
    if state == "end_of_life":
        return Verdict(
            "refuse",
            f"Kubernetes {version} reached its end of life on {cal.service} on"
            f" {row.end_of_life.isoformat()}: new clusters cannot be created on it",
            hint,
        )
    if state == "extended":
        return Verdict(
            "warn",
            f"Kubernetes {version} left {cal.service} standard support on"
            f" {row.end_of_standard.isoformat()}; until {row.end_of_life.isoformat()}:"
            f" {cal.after_standard}",
            hint,
        )
    return Verdict(
        "ok",
        f"Kubernetes {version} is in {cal.service} standard support until"
        f" {row.end_of_standard.isoformat()}",
    )
