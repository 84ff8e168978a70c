"""What the AWS operations share that needs no AWS: error mapping, deadlines and polling,
identifiers, the Route 53 failover rewrite and the /readyz probe.

botocore is imported only inside ``map_aws_error``, when there is an exception to classify.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cli.errors import (
    CredentialsError,
    ImctlError,
    PreconditionFailed,
    ResourceFailure,
)
from cli.targets.cloud.probes import readyz

# Error codes AWS services answer when the caller's identity or its permissions are the problem:
# the fix is on the operator's side (profile, session, policy), never a retry.
AUTH_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "AuthFailure",
        "UnauthorizedOperation",
        "UnauthorizedException",
        "NotAuthorized",
        "InvalidToken",
    }
)
_CREDENTIAL_EXCEPTIONS = (
    "NoCredentialsError",
    "PartialCredentialsError",
    "CredentialRetrievalError",
    "ProfileNotFound",
    "TokenRetrievalError",
    "SSOError",
    "SSOTokenLoadError",
    "UnauthorizedSSOTokenError",
)
_CREDENTIALS_HINT = (
    "check AWS_PROFILE / the credentials chain (`aws sts get-caller-identity`) and that the "
    "identity has the imctl policy (docs/runbook.md, AWS day-2 operations)"
)
# Waits report an unchanged state again after this long, so a slow step never looks hung.
STILL_WAITING_EVERY = 30.0
# What an AWS timeout leaves behind: the calls already made keep going.
TIMEOUT_HINT = (
    "AWS may still finish what was started: `imctl status` shows where things stand; "
    "running the operation again picks up from there where it can"
)


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError (duck-typed: no botocore import)."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def map_aws_error(exc: BaseException, doing: str) -> ImctlError | None:
    """The ImctlError for a botocore failure; None when ``exc`` is not one (a bug: let it out)."""
    try:
        from botocore import exceptions as bx
    except ImportError:  # pragma: no cover - boto3 is a dependency of every AWS code path
        return None
    credential_types = tuple(
        t for name in _CREDENTIAL_EXCEPTIONS if isinstance(t := getattr(bx, name, None), type)
    )
    if credential_types and isinstance(exc, credential_types):
        return CredentialsError(
            f"no usable AWS credentials while {doing}: {exc}", _CREDENTIALS_HINT
        )
    if isinstance(exc, bx.ClientError):
        code = error_code(exc) or "unknown"
        message = str(exc.response.get("Error", {}).get("Message") or exc)
        if code in AUTH_CODES or code.startswith("AccessDenied"):
            return CredentialsError(
                f"AWS refused the request while {doing}: {code}: {message}", _CREDENTIALS_HINT
            )
        return ResourceFailure(f"AWS failed while {doing}: {code}: {message}")
    if isinstance(exc, bx.BotoCoreError):
        # Connection errors, timeouts, bad endpoint URLs: nothing is known to have happened.
        return ResourceFailure(
            f"could not complete an AWS call while {doing}: {exc}",
            "check the network path to AWS (or AWS_ENDPOINT_URL) and run the command again",
        )
    return None


def aws_call(
    doing: str, fn: Callable[..., Any], /, *, absent: Sequence[str] = (), **kwargs: Any
) -> Any:
    """``fn(**kwargs)`` with botocore errors mapped; None when the error code is in ``absent``
    (the caller asked "does it exist?", and "no" is an answer, not a failure)."""
    try:
        return fn(**kwargs)
    except ImctlError:
        raise
    except Exception as exc:
        if absent and error_code(exc) in absent:
            return None
        mapped = map_aws_error(exc, doing)
        if mapped is None:
            raise
        raise mapped from exc


def aws_pages(doing: str, client: Any, operation: str, key: str, **kwargs: Any) -> list[Any]:
    """Every item under ``key`` across all pages (pages are fetched lazily, so map errors here)."""
    items: list[Any] = []

    def fetch() -> None:
        for page in client.get_paginator(operation).paginate(**kwargs):
            items.extend(page.get(key, []))

    aws_call(doing, fetch)
    return items


# --- identifiers --------------------------------------------------------------------------


def utc_stamp(now: datetime | None = None) -> str:
    """Second resolution, lower case: RDS stores identifiers lower-cased anyway."""
    return (now or datetime.now(UTC)).strftime("%Y%m%dt%H%M%Sz")


def slug(text: str, limit: int = 40) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].rstrip("-") or "stack"


def rds_id(base: str, suffix: str, limit: int = 63) -> str:
    """``base`` + ``suffix`` within RDS's instance identifier rules (<= 63 characters, no
    trailing or doubled hyphen): the base is shortened, never the suffix that makes it unique."""
    return base[: limit - len(suffix)].rstrip("-") + suffix


# Characters RDS accepts in a tag value; anything else would fail the whole CreateDBSnapshot.
_TAG_VALUE_BAD = re.compile(r"[^\w\s.:/=+\-@]")


def tag_value(text: str) -> str:
    return _TAG_VALUE_BAD.sub("_", text)[:256]


def tags_of(resource: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("TagList", [])}


def iso(value: Any) -> str | None:
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else None


# --- Route 53 failover records ------------------------------------------------------------


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


# --- /readyz ---------------------------------------------------------------------------------


def http_readyz(endpoint: str, timeout: float = 2.0, tls_name: str | None = None) -> bool:
    """True when ``http://<endpoint>/readyz`` (with ``tls_name``: https on 443, the certificate
    checked against that name) answers 200; anything else (refused, DNS, 503, slow) is False:
    status reports it, it never decides anything destructive on it."""
    return readyz(endpoint, timeout, tls_name) == "ok"
