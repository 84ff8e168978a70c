"""The Alibaba Cloud APIs as the day-2 parts use them: one ``AlicloudApi`` (an AccessKey pair,
a client per product and region, every call mapped onto imctl's errors) and the RDS and DTS
reads several parts need.

SDKs: the generated alibabacloud clients for RDS (2014-08-15), CS (2015-12-15) and Alidns
(2015-01-09); DTS (2020-01-01) through tea-openapi's generic ``call_api`` (its SDK is not a
dependency). ``endpoint_override`` (``http://127.0.0.1:PORT``) sends every product to one
place, a local emulation in tests. Nothing imports an SDK until a call is made."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from cli.errors import CredentialsError, ImctlError, ResourceFailure
from cli.targets.cloud.outcomes import unreachable
from cli.targets.cloud.outputs import RegionOutputs

DTS_VERSION = "2020-01-01"
# The generated client's method per RDS action (its snake_case folds acronym runs).
RDS_METHODS = {
    "CreateBackup": "create_backup",
    "DescribeBackupTasks": "describe_backup_tasks",
    "DescribeBackups": "describe_backups",
    "DeleteBackup": "delete_backup",
    "CloneDBInstance": "clone_dbinstance",
    "DescribeBackupPolicy": "describe_backup_policy",
    "DescribeLocalAvailableRecoveryTime": "describe_local_available_recovery_time",
    "DescribeDBInstanceAttribute": "describe_dbinstance_attribute",
    "ModifySecurityIps": "modify_security_ips",
    "ResetAccountPassword": "reset_account_password",
}
_AUTH_CODES = (
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidSecurityToken",
    "IncompleteSignature",
    "InvalidCredentials",
    "Forbidden",
    "NoPermission",
)


class AlicloudApi:
    """An AccessKey pair and its clients, shared by every part of ``AlicloudOps``."""

    def __init__(
        self,
        access_key_id: str,
        access_key_secret: str,
        endpoint_override: str | None,
        poll_interval: float,
    ) -> None:
        self._ak = (access_key_id, access_key_secret)
        self._override = urlsplit(endpoint_override) if endpoint_override else None
        self._clients: dict[tuple[str, str], Any] = {}
        self.interval = poll_interval

    def _config(self, region: str, endpoint: str | None = None) -> Any:
        from alibabacloud_tea_openapi import models as open_api

        cfg = open_api.Config(
            access_key_id=self._ak[0],
            access_key_secret=self._ak[1],
            region_id=region,
            connect_timeout=10_000,
            read_timeout=30_000,
        )
        if self._override is not None:
            cfg.endpoint = self._override.netloc
            cfg.protocol = self._override.scheme or "https"
        elif endpoint is not None:
            cfg.endpoint = endpoint
        return cfg

    def client(self, product: str, region: str) -> Any:
        key = (product, region)
        if key not in self._clients:
            if product == "rds":
                from alibabacloud_rds20140815.client import Client as Rds

                self._clients[key] = Rds(self._config(region))
            elif product == "cs":
                from alibabacloud_cs20151215.client import Client as Cs

                self._clients[key] = Cs(self._config(region, f"cs.{region}.aliyuncs.com"))
            elif product == "alidns":
                from alibabacloud_alidns20150109.client import Client as Alidns

                self._clients[key] = Alidns(self._config(region, "alidns.aliyuncs.com"))
            else:
                from alibabacloud_tea_openapi.client import Client as OpenApi

                self._clients[key] = OpenApi(self._config(region, f"dts.{region}.aliyuncs.com"))
        return self._clients[key]

    def call(self, fn: Callable[[], Any], what: str, *, mutation: bool = False) -> dict[str, Any]:
        """Run one SDK call and return its body as the wire's JSON names; failures map onto the
        exit-code contract. Reads are retried on throttling and server errors; mutations are
        not, so nothing happens twice."""
        from alibabacloud_tea_openapi.exceptions import (
            AlibabaCloudException,
            ServerException,
            ThrottlingException,
        )
        from Tea.exceptions import TeaException, UnretryableException

        attempts = 1 if mutation else 3
        for attempt in range(attempts):
            try:
                resp = fn()
            except (ThrottlingException, ServerException) as exc:
                if attempt + 1 < attempts:
                    time.sleep(1.0 + attempt)
                    continue
                raise _api_error(exc, what) from None
            except AlibabaCloudException as exc:
                raise _api_error(exc, what) from None
            except UnretryableException as exc:
                raise unreachable(what, exc, mutation=mutation) from None
            except TeaException as exc:
                raise _api_error(exc, what) from None
            if isinstance(resp, dict):  # call_api
                body = dict(resp.get("body") or {})
                if body.get("Success") is False or body.get("Success") == "false":
                    raise _dts_error(body, what)
                return body
            return dict(resp.body.to_map() if resp.body is not None else {})
        raise AssertionError("unreachable")

    def rds(
        self,
        region: str,
        action: str,
        params: Mapping[str, Any],
        what: str,
        *,
        mutation: bool = False,
    ) -> dict[str, Any]:
        """One RDS action, with the request model built from the wire names the API documents
        (``from_map``), so parameters read like the API reference."""
        from alibabacloud_rds20140815 import models as rds

        request = getattr(rds, f"{action}Request")().from_map(dict(params))
        method = getattr(self.client("rds", region), RDS_METHODS[action])
        return self.call(lambda: method(request), what, mutation=mutation)

    def dts(
        self,
        region: str,
        action: str,
        query: Mapping[str, Any],
        what: str,
        *,
        mutation: bool = False,
    ) -> dict[str, Any]:
        from alibabacloud_tea_openapi import models as open_api

        params = open_api.Params(
            action=action,
            version=DTS_VERSION,
            protocol="HTTPS",
            pathname="/",
            method="POST",
            auth_type="AK",
            style="RPC",
            req_body_type="formData",
            body_type="json",
        )
        request = open_api.OpenApiRequest(query={k: str(v) for k, v in query.items()})
        client = self.client("dts", region)
        return self.call(
            lambda: client.call_api(params, request, runtime()), what, mutation=mutation
        )

    def attribute(self, region: str, instance: str) -> dict[str, Any]:
        doc = self.rds(
            region,
            "DescribeDBInstanceAttribute",
            {"DBInstanceId": instance},
            f"reading RDS instance {instance}",
        )
        items = (doc.get("Items") or {}).get("DBInstanceAttribute") or []
        if not items:
            raise ResourceFailure(f"RDS instance {instance} not found", code="not_found")
        return dict(items[0])

    def dts_job(self, standby: RegionOutputs) -> dict[str, Any] | None:
        """The synchronization job writing into the standby's instance (the stack makes one)."""
        doc = self.dts(
            standby.name,
            "DescribeDtsJobs",
            {
                "Region": standby.name,
                "RegionId": standby.name,
                "JobType": "SYNC",
                "Type": "rds",
                "Params": standby.db_instance_id,
                "PageSize": 30,
                "PageNumber": 1,
            },
            f"finding the DTS job that feeds {standby.db_instance_id}",
        )
        jobs = [
            j
            for j in doc.get("DtsJobList") or []
            if (j.get("DestinationEndpoint") or {}).get("InstanceID") == standby.db_instance_id
        ]
        return dict(jobs[0]) if jobs else None


def runtime() -> Any:
    """Per-call options for ``call_api`` (the generated clients make their own)."""
    from darabonba.runtime import RuntimeOptions  # type: ignore[import-untyped]

    return RuntimeOptions()


def _api_error(exc: Any, what: str) -> ImctlError:
    status = int(getattr(exc, "status_code", 0) or getattr(exc, "statusCode", 0) or 0)
    return _error(
        str(getattr(exc, "code", "") or ""), str(getattr(exc, "message", "") or exc), status, what
    )


def _dts_error(body: Mapping[str, Any], what: str) -> ImctlError:
    """DTS may answer HTTP 200 with ``Success: false`` and the error in the body."""
    return _error(
        str(body.get("ErrCode") or body.get("Code") or ""),
        str(body.get("ErrMessage") or body.get("Message") or "the call failed"),
        int(body.get("HttpStatusCode") or 0),
        what,
    )


def _error(code: str, message: str, status: int, what: str) -> ImctlError:
    text = f"{what}: {code}: {message}" if code else f"{what}: {message}"
    if status in (401, 403) or any(code.startswith(c) for c in _AUTH_CODES):
        return CredentialsError(
            text, "check the AccessKey and the RAM policy in docs/runbook.md (Alibaba permissions)"
        )
    if status == 404 or "NotFound" in code:
        return ResourceFailure(text, "check the outputs (imctl status)", code="not_found")
    return ResourceFailure(text)


def job_summary(job: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": job.get("DtsJobId"),
        "instance": job.get("DtsInstanceID"),
        "status": job.get("Status"),
        "delay_seconds": job.get("Delay"),
        "checkpoint": job.get("Checkpoint"),
    }
