"""TLS on GCP (issue 13): cert-manager answers DNS-01 in the stack's Cloud DNS zone as a Google
service account it acts as through Workload Identity (no key file). The cluster therefore
always runs with Workload Identity, so the project id must be known: from ``gcpProject``, else
from the provider's own configuration."""

from __future__ import annotations

import hashlib

import pulumi
import pulumi_gcp as gcp

from stacks.config import StackConfig
from stacks.contract import CloudInfra, GlobalDns
from stacks.naming import resource_prefix
from stacks.workload.tls import CERT_MANAGER_NAMESPACE, CERT_MANAGER_RELEASE, Dns01


def project_id(config: StackConfig, provider: pulumi.ProviderResource) -> str:
    if config.gcp_project:
        return config.gcp_project
    found = gcp.organizations.get_project(opts=pulumi.InvokeOptions(provider=provider)).project_id
    if not found:
        raise pulumi.RunError(
            "no GCP project: set gcpProject (Workload Identity and the DNS-01 solver need it)"
        )
    return str(found)


def account_id(region: str) -> str:
    """6-30 characters, unique in the project: the stack and region, hashed."""
    digest = hashlib.sha256(f"{resource_prefix()}/{region}".encode()).hexdigest()[:10]
    return f"imctl-dns01-{digest}"


def dns01(config: StackConfig, infra: CloudInfra, dns: GlobalDns, region: str) -> Dns01:
    project = project_id(config, infra.providers[config.region])
    opts = pulumi.ResourceOptions(
        parent=infra.regions[region].cluster, provider=infra.providers[region]
    )
    account = gcp.serviceaccount.Account(
        f"{region}-cert-manager-dns01",
        account_id=account_id(region),
        display_name=f"cert-manager DNS-01 ({region})",
        project=project,
        opts=opts,
    )
    # cert-manager's documented role for Cloud DNS; the project holds only this stack's zone
    # in the intended setup (see docs/stacks.md).
    dns_admin = gcp.projects.IAMMember(
        f"{region}-cert-manager-dns-admin",
        project=project,
        role="roles/dns.admin",
        member=account.email.apply(lambda e: f"serviceAccount:{e}"),
        opts=opts,
    )
    ksa = f"{CERT_MANAGER_NAMESPACE}/{CERT_MANAGER_RELEASE}"
    workload_identity = gcp.serviceaccount.IAMMember(
        f"{region}-cert-manager-wi",
        service_account_id=account.name,
        role="roles/iam.workloadIdentityUser",
        member=f"serviceAccount:{project}.svc.id.goog[{ksa}]",
        opts=opts,
    )
    return Dns01(
        solver={"cloudDNS": {"project": project, "hostedZoneName": dns.hosted_zone_id}},
        controller_annotations={"iam.gke.io/gcp-service-account": account.email},
        depends_on=[dns_admin, workload_identity],
    )
