"""The Google APIs as the day-2 parts use them: one ``GcpApi`` (credentials, a client per
service over the discovery documents google-api-python-client ships, so nothing is discovered
over the network; every call and wait mapped onto imctl's errors) and the Cloud SQL reads
several parts need. ``api_endpoint`` points every service at one base URL (a local emulation in
tests). Nothing imports googleapiclient or google.auth until a call is made."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from cli.deadline import Deadline, poll
from cli.errors import CredentialsError, ImctlError, PrerequisiteMissing, ResourceFailure
from cli.progress import Note
from cli.targets.cloud.outcomes import unreachable

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
LAG_METRIC = "cloudsql.googleapis.com/database/replication/replica_lag"


class GcpApi:
    """Credentials and service clients for one project, shared by every part of ``GcpOps``.
    ``credentials``: a google.auth credentials object (default: Application Default
    Credentials with the cloud-platform scope)."""

    def __init__(
        self, project: str, credentials: Any, api_endpoint: str | None, poll_interval: float
    ) -> None:
        self.project = project
        self._credentials = credentials
        self._endpoint = api_endpoint.rstrip("/") + "/" if api_endpoint else None
        self._services: dict[str, Any] = {}
        self.interval = poll_interval

    def creds(self) -> Any:
        if self._credentials is None:
            import google.auth
            import google.auth.exceptions

            try:
                self._credentials, _ = google.auth.default(scopes=list(SCOPES))
            except google.auth.exceptions.DefaultCredentialsError as exc:
                raise CredentialsError(
                    f"no Google credentials: {exc}",
                    "gcloud auth application-default login, or set GOOGLE_APPLICATION_CREDENTIALS",
                ) from None
        return self._credentials

    def service(self, name: str, version: str) -> Any:
        if name not in self._services:
            from googleapiclient.discovery import build

            options = {"api_endpoint": self._endpoint} if self._endpoint else None
            self._services[name] = build(
                name,
                version,
                credentials=self.creds(),
                client_options=options,
                static_discovery=True,
                cache_discovery=False,
            )
        return self._services[name]

    def sql(self) -> Any:
        return self.service("sqladmin", "v1")

    def gke(self) -> Any:
        return self.service("container", "v1")

    def dns(self) -> Any:
        return self.service("dns", "v1")

    def monitoring(self) -> Any:
        return self.service("monitoring", "v3")

    def call(self, request: Any, what: str, *, mutation: bool = False) -> dict[str, Any]:
        """Execute one request; map failures onto the exit-code contract. Reads are retried on
        429/5xx by the client library; mutations are not, so nothing is created twice."""
        import google.auth.exceptions
        import httplib2  # type: ignore[import-untyped]
        from googleapiclient.errors import HttpError

        try:
            result = request.execute(num_retries=0 if mutation else 3)
        except HttpError as exc:
            raise _http_error(exc, what) from None
        except google.auth.exceptions.GoogleAuthError as exc:
            raise CredentialsError(f"{what}: Google credentials failed: {exc}") from None
        except (OSError, httplib2.HttpLib2Error) as exc:
            raise unreachable(what, exc, mutation=mutation) from None
        return dict(result or {})

    def wait_sql(
        self, op: Mapping[str, Any], what: str, deadline: Deadline, progress: Note
    ) -> dict[str, Any]:
        first = [dict(op)]

        def fetch() -> dict[str, Any]:
            if first:
                return first.pop()
            req = self.sql().operations().get(project=self.project, operation=op["name"])
            return self.call(req, f"{what} (operation {op['name']})")

        final = poll(
            fetch,
            done=lambda o: o.get("status") == "DONE",
            state=lambda o: str(o.get("status", "UNKNOWN")),
            what=what,
            deadline=deadline,
            progress=progress,
            interval=self.interval,
            unknown_hint=f"gcloud sql operations describe {op['name']} --project {self.project}",
        )
        errors = (final.get("error") or {}).get("errors") or []
        if errors:
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
            raise ResourceFailure(f"{what} failed: {detail}")
        return final

    def wait_gke(
        self,
        op: Mapping[str, Any],
        location: str,
        what: str,
        deadline: Deadline,
        progress: Note,
    ) -> dict[str, Any]:
        name = f"projects/{self.project}/locations/{location}/operations/{op['name']}"
        first = [dict(op)]

        def fetch() -> dict[str, Any]:
            if first:
                return first.pop()
            req = self.gke().projects().locations().operations().get(name=name)
            return self.call(req, f"{what} (operation {op['name']})")

        final = poll(
            fetch,
            done=lambda o: o.get("status") in ("DONE", "ABORTING"),
            state=lambda o: str(o.get("status", "UNKNOWN")),
            what=what,
            deadline=deadline,
            progress=progress,
            interval=self.interval,
            unknown_hint=f"gcloud container operations describe {op['name']} --region {location}",
        )
        error = final.get("error") or {}
        if final.get("status") != "DONE" or error.get("code") or error.get("message"):
            detail = error.get("message") or final.get("statusMessage") or final.get("status")
            raise ResourceFailure(f"{what} failed: {detail}")
        return final

    def instance(self, name: str) -> dict[str, Any]:
        req = self.sql().instances().get(project=self.project, instance=name)
        return self.call(req, f"reading Cloud SQL instance {name}")

    def replica_lag(self, instance: str) -> tuple[float | None, str | None]:
        """The newest ``replica_lag`` sample (seconds) of ``instance`` and its end time."""
        now = time.time()
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 600))
        end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 60))
        filt = (
            f'metric.type = "{LAG_METRIC}" AND '
            f'resource.labels.database_id = "{self.project}:{instance}"'
        )
        req = (
            self.monitoring()
            .projects()
            .timeSeries()
            .list(
                name=f"projects/{self.project}",
                filter=filt,
                **{"interval_startTime": start, "interval_endTime": end},
            )
        )
        doc = self.call(req, f"reading replica_lag of {instance}")
        best: tuple[float | None, str | None] = (None, None)
        for series in doc.get("timeSeries") or []:
            for point in series.get("points") or []:
                at = (point.get("interval") or {}).get("endTime")
                value = point.get("value") or {}
                raw = value.get("doubleValue", value.get("int64Value"))
                if at is None or raw is None:
                    continue
                if best[1] is None or epoch(str(at)) > epoch(best[1]):
                    best = (float(raw), str(at))
        return best


def _http_error(exc: Any, what: str) -> ImctlError:
    import json

    status = int(getattr(exc.resp, "status", 0) or 0)
    message, reason, state = str(exc), "", ""
    try:
        err = json.loads(exc.content.decode("utf-8", "replace")).get("error", {})
        message = str(err.get("message") or message)
        state = str(err.get("status") or "")
        reasons = [str(e.get("reason", "")) for e in err.get("errors") or []]
        reasons += [str(d.get("reason", "")) for d in err.get("details") or []]
        reason = ",".join(r for r in reasons if r)
    except (ValueError, AttributeError):
        pass
    text = f"{what}: {message}"
    if "SERVICE_DISABLED" in reason or "accessNotConfigured" in reason:
        return PrerequisiteMissing(text, "enable the API in the project (gcloud services enable)")
    if status in (401, 403):
        return CredentialsError(
            text, "check the credentials and the IAM roles in docs/runbook.md (GCP permissions)"
        )
    if status == 404:
        return ResourceFailure(text, "check the outputs (imctl status)", code="not_found")
    if status == 409 or state in ("ABORTED", "FAILED_PRECONDITION"):
        return ResourceFailure(text, "another operation may be running on it; retry later")
    return ResourceFailure(f"{text} (HTTP {status})")


def epoch(rfc3339: str) -> float:
    """RFC 3339 as Cloud Monitoring writes it (``Z``, optional fraction) -> Unix seconds."""
    from datetime import datetime

    text = rfc3339.strip().replace("Z", "+00:00")
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(ch for ch in rest if ch.isdigit())
        text = f"{head}.{digits[:6]:0<6}{rest[len(digits) :]}"
    return datetime.fromisoformat(text).timestamp()
