"""GKE: a Kubernetes client from the container API's ``projects.locations.clusters.get``
(``endpoint``, ``masterAuth.clusterCaCertificate``) and an OAuth access token of the same
Google credentials, as ``gke-gcloud-auth-plugin`` does (no gcloud on PATH needed).

The API goes through google-api-python-client's shipped discovery document, as the GCP
operations do; ``IMCTL_GCP_ENDPOINT`` points it at one base URL (an emulation in tests). An
access token lasts about an hour: KubeRest asks for a new one shortly before ``expiry``, or at
once if the API answers 401, and this refreshes the credentials then.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC
from typing import Any, Final

from cli.errors import CredentialsError, ResourceFailure
from cli.targets.cloud.kube_access import no_access
from cli.targets.cloud.kube_rest import Credential, KubeConfig, KubeRest
from cli.targets.cloud.outputs import CloudOutputs, RegionOutputs

SCOPES: Final = ("https://www.googleapis.com/auth/cloud-platform",)


def _kubeconfig_cmd(r: RegionOutputs, project: str | None) -> str:
    name, p = r.cluster_name or "CLUSTER", project or "PROJECT"
    return (
        f"gcloud container clusters get-credentials {name} --region {r.name} --project {p}, "
        f"then kubectl config rename-context gke_{p}_{r.name}_{name} {r.name}"
    )


def _project(r: RegionOutputs, outputs: CloudOutputs, env: Mapping[str, str]) -> str | None:
    if r.cluster_id and r.cluster_id.startswith("projects/"):
        return r.cluster_id.split("/")[1]
    return (
        env.get("GOOGLE_CLOUD_PROJECT")
        or env.get("CLOUDSDK_CORE_PROJECT")
        or str(outputs.extra.get("project") or "")
        or None
    )


def cluster_path(r: RegionOutputs, project: str) -> str:
    """The cluster's resource name: the stacks export it as ``cluster_id``; else the region is
    the location (the stacks' clusters are regional)."""
    if r.cluster_id and r.cluster_id.startswith("projects/"):
        return r.cluster_id
    return f"projects/{project}/locations/{r.name}/clusters/{r.cluster_name}"


class AccessToken:
    """KubeRest's credential source: the credentials' current token the first time (the
    cluster lookup just made it), a refreshed one every later time (KubeRest only asks again
    when the last one is about to expire or was refused)."""

    def __init__(self, credentials: Any, cluster: str) -> None:
        self.credentials = credentials
        self.cluster = cluster
        self._handed_out = False

    def __call__(self) -> Credential:
        import google.auth.exceptions
        import google_auth_httplib2  # type: ignore[import-untyped]
        import httplib2  # type: ignore[import-untyped]

        creds = self.credentials
        if self._handed_out or not creds.valid:
            try:
                creds.refresh(google_auth_httplib2.Request(httplib2.Http()))
            except google.auth.exceptions.GoogleAuthError as exc:
                raise CredentialsError(
                    f"cannot refresh the Google access token for {self.cluster}: {exc}",
                    "gcloud auth application-default login (or a fresh "
                    "GOOGLE_APPLICATION_CREDENTIALS key), then re-run",
                ) from None
        self._handed_out = True
        expiry = creds.expiry  # naive UTC, google-auth's convention
        return Credential(
            token=str(creds.token),
            expires_at=expiry.replace(tzinfo=UTC).timestamp() if expiry is not None else None,
        )


def _default_credentials(r: RegionOutputs, project: str | None) -> tuple[Any, str | None]:
    import google.auth
    import google.auth.exceptions

    try:
        creds, adc_project = google.auth.default(scopes=list(SCOPES))
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise no_access(
            r,
            f"no Google credentials ({exc})",
            "gcloud auth application-default login, or set GOOGLE_APPLICATION_CREDENTIALS "
            "to a key of an identity with container.clusters.get",
            _kubeconfig_cmd(r, project),
        ) from None
    return creds, adc_project


def _get_cluster(credentials: Any, name: str, endpoint: str | None) -> dict[str, Any]:
    from googleapiclient.discovery import build

    options = {"api_endpoint": endpoint.rstrip("/") + "/"} if endpoint else None
    service = build(
        "container",
        "v1",
        credentials=credentials,
        client_options=options,
        static_discovery=True,
        cache_discovery=False,
    )
    request = service.projects().locations().clusters().get(name=name)
    return dict(request.execute(num_retries=3) or {})


def _cluster(r: RegionOutputs, creds: Any, name: str, project: str, endpoint: str | None) -> Any:
    import google.auth.exceptions
    import httplib2
    from googleapiclient.errors import HttpError

    cmd = _kubeconfig_cmd(r, project)
    try:
        return _get_cluster(creds, name, endpoint)
    except HttpError as exc:
        status = int(exc.resp.status)
        reason = exc.reason if isinstance(exc.reason, str) else str(exc)
        if status == 404:
            raise no_access(
                r,
                f"GKE has no cluster {name}",
                f"correct cluster_name of region {r.name} (or the project) in the outputs "
                f"(gcloud container clusters list --project {project} lists them)",
                cmd,
            ) from None
        if status in (401, 403):
            raise no_access(
                r,
                f"GKE refused clusters.get on {name}: {status} {reason}",
                "grant the identity container.clusters.get (docs/permissions/gcp-role.yaml), or "
                "log in again (gcloud auth application-default login)",
                cmd,
            ) from None
        raise ResourceFailure(f"GKE clusters.get on {name}: {status} {reason}") from None
    except google.auth.exceptions.GoogleAuthError as exc:
        raise no_access(
            r,
            f"the Google credentials were refused ({exc})",
            "gcloud auth application-default login, or a valid GOOGLE_APPLICATION_CREDENTIALS",
            cmd,
        ) from None
    except (OSError, httplib2.HttpLib2Error) as exc:
        raise ResourceFailure(
            f"GKE clusters.get on {name}: could not reach the API ({exc})", "check the network"
        ) from None


def gke_kube(
    r: RegionOutputs,
    outputs: CloudOutputs,
    env: Mapping[str, str],
    *,
    credentials: Any = None,
    **kw: Any,
) -> KubeRest:
    """The client for the GKE cluster ``r`` names. ``credentials``: google-auth credentials
    (default: Application Default Credentials, as the GCP operations use)."""
    project = _project(r, outputs, env)
    if not r.cluster_name and not (r.cluster_id or "").startswith("projects/"):
        raise no_access(
            r,
            "the outputs name no GKE cluster for it",
            f"add cluster_name to region {r.name} in the outputs file",
            _kubeconfig_cmd(r, project),
        )
    if credentials is None:
        credentials, adc_project = _default_credentials(r, project)
        project = project or adc_project
    if not project:
        raise no_access(
            r,
            f"the GCP project of cluster {r.cluster_name} is unknown",
            "set GOOGLE_CLOUD_PROJECT, or add project (top level) or cluster_id "
            f"(projects/P/locations/{r.name}/clusters/{r.cluster_name}) to the outputs file",
            _kubeconfig_cmd(r, None),
        )
    name = cluster_path(r, project)
    cluster = _cluster(r, credentials, name, project, env.get("IMCTL_GCP_ENDPOINT"))
    endpoint = str(cluster.get("endpoint") or "")
    ca = str((cluster.get("masterAuth") or {}).get("clusterCaCertificate") or "")
    if not endpoint or not ca:
        raise no_access(
            r,
            f"GKE cluster {name} is {cluster.get('status', 'UNKNOWN')} and has no endpoint yet",
            "wait until gcloud container clusters describe says RUNNING",
            _kubeconfig_cmd(r, project),
        )
    try:
        ca_pem = base64.b64decode(ca, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ResourceFailure(f"GKE cluster {name} reports a CA that is not base64 PEM") from None
    config = KubeConfig(server=f"https://{endpoint}", ca_pem=ca_pem)
    return KubeRest(config, env=env, credentials=AccessToken(credentials, name), **kw)
