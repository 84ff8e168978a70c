"""The AWS API as the day-2 parts use it: one ``AwsApi`` (a boto3 session, a client per
service and region, the waits and the RDS reads every part needs), the mapping of botocore
failures onto imctl's errors, and the identifiers imctl gives what it creates.

boto3 is imported inside functions only (botocore only inside ``map_aws_error``, when there is
an exception to classify), so importing this module costs nothing. Credentials, profiles and
``AWS_ENDPOINT_URL`` come from boto3's own chain; every client is made for an explicit region.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cli.deadline import Deadline, poll
from cli.errors import CredentialsError, ImctlError, ResourceFailure
from cli.progress import Note

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


# How recent a ReplicaLag datapoint must be to count as known.
LAG_WINDOW = timedelta(minutes=5)

# States an instance does not leave by itself: waiting on for ``available`` is pointless.
_DB_FAILED = frozenset(
    {
        "failed",
        "storage-full",
        "restore-error",
        "insufficient-capacity",
        "inaccessible-encryption-credentials",
        "inaccessible-encryption-credentials-recoverable",
        "incompatible-credentials",
        "incompatible-network",
        "incompatible-option-group",
        "incompatible-parameters",
        "incompatible-restore",
        "deleting",
        "stopped",
        "stopping",
    }
)


def default_session() -> Any:
    import boto3

    return boto3.session.Session()


class AwsApi:
    """One boto3 session and its clients, shared by every part of ``AwsOps``."""

    def __init__(self, session_factory: Callable[[], Any], poll_interval: float) -> None:
        self._session_factory = session_factory
        self._session: Any = None
        self._clients: dict[tuple[str, str], Any] = {}
        self.interval = poll_interval

    def client(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._clients:

            def make() -> Any:
                from botocore.config import Config

                if self._session is None:
                    self._session = self._session_factory()
                config = Config(
                    retries={"mode": "standard", "max_attempts": 5},
                    connect_timeout=5,
                    read_timeout=30,
                )
                return self._session.client(service, region_name=region, config=config)

            self._clients[key] = aws_call(f"setting up the {service} client for {region}", make)
        return self._clients[key]

    def wait(
        self,
        what: str,
        probe: Callable[[], tuple[bool, str]],
        deadline: Deadline,
        progress: Note,
        limit: float | None = None,
    ) -> str:
        _, state = poll(
            probe,
            done=lambda r: r[0],
            state=lambda r: r[1],
            what=what,
            deadline=deadline,
            progress=progress,
            interval=self.interval,
            limit=limit,
            still_every=STILL_WAITING_EVERY,
        )
        return state

    def describe_db(self, region: str, instance_id: str) -> dict[str, Any] | None:
        rds = self.client("rds", region)
        found = aws_call(
            f"describing DB instance {instance_id} in {region}",
            rds.describe_db_instances,
            absent=("DBInstanceNotFound", "DBInstanceNotFoundFault"),
            DBInstanceIdentifier=instance_id,
        )
        return dict(found["DBInstances"][0]) if found and found["DBInstances"] else None

    def wait_db(
        self,
        region: str,
        instance_id: str,
        deadline: Deadline,
        progress: Note,
        *,
        promoted: bool = False,
    ) -> dict[str, Any]:
        """Wait until the instance is ``available`` (and, with ``promoted``, no longer a replica:
        right after PromoteReadReplica it still reads available-and-replica for a moment)."""
        latest: dict[str, Any] = {}

        def probe() -> tuple[bool, str]:
            inst = self.describe_db(region, instance_id)
            if inst is None:
                # Just created or renamed: the name can take a moment to become visible.
                return False, "not visible yet"
            latest.clear()
            latest.update(inst)
            status = str(inst.get("DBInstanceStatus"))
            if status in _DB_FAILED:
                raise ResourceFailure(
                    f"DB instance {instance_id} in {region} is {status}",
                    "see its events: aws rds describe-events --source-type db-instance "
                    f"--source-identifier {instance_id} --region {region}",
                )
            replica_of = inst.get("ReadReplicaSourceDBInstanceIdentifier")
            if promoted and replica_of:
                return False, f"{status}, still replicating from {replica_of}"
            return status == "available", status

        self.wait(f"DB instance {instance_id} ({region})", probe, deadline, progress)
        return latest

    def rename_db(
        self, region: str, old: str, new: str, deadline: Deadline, progress: Note
    ) -> dict[str, Any]:
        rds = self.client("rds", region)
        progress(f"renaming DB instance {old} to {new}")
        aws_call(
            f"renaming DB instance {old} to {new}",
            rds.modify_db_instance,
            DBInstanceIdentifier=old,
            NewDBInstanceIdentifier=new,
            ApplyImmediately=True,
        )
        return self.wait_db(region, new, deadline, progress)

    def replica_lag(
        self, region: str, instance_id: str, since: datetime | None = None
    ) -> tuple[float, datetime] | None:
        """The latest ReplicaLag datapoint (Maximum over a minute), at or after ``since``
        (default: within LAG_WINDOW); None when CloudWatch has none: lag unknown."""
        cw = self.client("cloudwatch", region)
        now = datetime.now(UTC)
        start = since or now - LAG_WINDOW
        got = aws_call(
            f"reading ReplicaLag of {instance_id} in {region}",
            cw.get_metric_statistics,
            Namespace="AWS/RDS",
            MetricName="ReplicaLag",
            Dimensions=[{"Name": "DBInstanceIdentifier", "Value": instance_id}],
            StartTime=start,
            # Past "now": a datapoint stamped at the current minute still counts.
            EndTime=now + timedelta(minutes=1),
            Period=60,
            Statistics=["Maximum"],
        )
        points = [
            (float(p["Maximum"]), p["Timestamp"].astimezone(UTC))
            for p in got.get("Datapoints", [])
            if "Maximum" in p and p["Timestamp"].astimezone(UTC) >= start
        ]
        return max(points, key=lambda p: p[1]) if points else None
