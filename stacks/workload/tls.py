"""TLS for the clients' endpoint (issue 13), terminated by im-server inside each cluster.

Per region: cert-manager (a pinned Helm release that also installs its CRDs), a ClusterIssuer
that gets a certificate from an ACME CA (Let's Encrypt by default) by DNS-01 in the stack's own
zone, and a Certificate for the global name whose Secret im-server mounts. Each cluster issues
its own certificate for the same name, so a failover needs nothing copied between regions; the
two clusters' challenges for one name coexist in the zone (the Route 53 and Cloud DNS solvers
add a value rather than replace the record, and so does the Alibaba DNS webhook).

How cert-manager may write to the zone is the cloud's part (``Dns01`` from each cloud's
``tls`` module): IRSA on EKS, Workload Identity on GKE, a RAM user's key on ACK.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s

from stacks.workload.helm import pinned_release

CERT_MANAGER_VERSION: Final = "v1.21.1"
CERT_MANAGER_REPO: Final = "https://charts.jetstack.io"
CERT_MANAGER_NAMESPACE: Final = "cert-manager"
# The release name fixes the controller's ServiceAccount name (cert-manager/cert-manager), which
# the cloud identities (IRSA trust, Workload Identity binding) are bound to.
CERT_MANAGER_RELEASE: Final = "cert-manager"
ISSUER: Final = "imctl-acme"
CERTIFICATE: Final = "im-server"
TLS_SECRET: Final = "im-server-tls"
# cert-manager renews a 90-day ACME certificate 30 days before expiry by default; im-server
# re-reads the mounted files (see im_server.server) so the renewal needs no restart.


@dataclass(frozen=True, slots=True)
class HelmChart:
    """A Helm chart cert-manager needs besides itself (a DNS-01 webhook solver)."""

    name: str
    chart: str
    version: str
    values: Mapping[str, Any]
    repo: str | None = None  # None: ``chart`` is an oci:// reference


@dataclass(frozen=True, slots=True)
class Dns01:
    """How cert-manager in one region proves control of the stack's zone."""

    # The ClusterIssuer's ``dns01`` stanza, as the CRD spells it (camelCase).
    solver: Mapping[str, Any]
    # On cert-manager's controller ServiceAccount: the cloud identity it acts as.
    controller_annotations: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    webhook: HelmChart | None = None
    # string_data of the Secret ``dns01-credentials`` in cert-manager's namespace, for a solver
    # that cannot use a workload identity.
    credentials: Mapping[str, pulumi.Input[str]] | None = None
    # Cloud resources the solver needs before it can work (IAM bindings, policies).
    depends_on: Sequence[pulumi.Resource] = ()


CREDENTIALS_SECRET: Final = "dns01-credentials"


@dataclass(frozen=True, slots=True)
class CertManagerArgs:
    provider: pulumi.ProviderResource
    dns01: Dns01
    dns_name: str
    namespace: str  # the workload's: the Certificate's Secret must sit next to im-server
    acme_server: str
    acme_email: str | None
    # The workload's namespace object: the Certificate is created inside it.
    namespace_resource: pulumi.Resource


def issuer_spec(args: CertManagerArgs) -> dict[str, Any]:
    acme: dict[str, Any] = {
        "server": args.acme_server,
        "privateKeySecretRef": {"name": f"{ISSUER}-account"},
        "solvers": [{"selector": {"dnsNames": [args.dns_name]}, "dns01": dict(args.dns01.solver)}],
    }
    if args.acme_email:
        acme["email"] = args.acme_email
    return {"acme": acme}


def certificate_spec(dns_name: str) -> dict[str, Any]:
    return {
        "secretName": TLS_SECRET,
        "dnsNames": [dns_name],
        "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": ISSUER},
        # A new key on every renewal: a key that leaked from one pod is not good for long.
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
    }


class CertManager(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: CertManagerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:workload:CertManager", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        meta = k8s.meta.v1.ObjectMetaArgs
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=meta(
                name=CERT_MANAGER_NAMESPACE, labels={"app.kubernetes.io/part-of": "imctl"}
            ),
            opts=child,
        )
        in_ns = pulumi.ResourceOptions.merge(
            child, pulumi.ResourceOptions(depends_on=[self.namespace, *args.dns01.depends_on])
        )
        values: dict[str, Any] = {
            # The CRDs come with the release and stay when it is removed: deleting them would
            # delete every Certificate (and its Secret's owner) with them.
            "crds": {"enabled": True, "keep": True},
            "serviceAccount": {"annotations": dict(args.dns01.controller_annotations)},
        }
        # Atomic: done once the webhook serves; a ClusterIssuer sent before would be refused.
        self.release = pinned_release(
            f"{name}-cert-manager",
            name=CERT_MANAGER_RELEASE,
            chart="cert-manager",
            version=CERT_MANAGER_VERSION,
            repo=CERT_MANAGER_REPO,
            namespace=CERT_MANAGER_NAMESPACE,
            values=values,
            timeout=600,
            opts=in_ns,
        )
        ready: list[pulumi.Resource] = [self.release]
        self.credentials: k8s.core.v1.Secret | None = None
        if args.dns01.credentials is not None:
            self.credentials = k8s.core.v1.Secret(
                f"{name}-dns01-credentials",
                metadata=meta(name=CREDENTIALS_SECRET, namespace=CERT_MANAGER_NAMESPACE),
                type="Opaque",
                string_data=dict(args.dns01.credentials),
                opts=in_ns,
            )
        self.webhook: k8s.helm.v3.Release | None = None
        if args.dns01.webhook is not None:
            hook = args.dns01.webhook
            after = [self.release] + ([self.credentials] if self.credentials else [])
            self.webhook = pinned_release(
                f"{name}-{hook.name}",
                name=hook.name,
                chart=hook.chart,
                version=hook.version,
                repo=hook.repo,
                namespace=CERT_MANAGER_NAMESPACE,
                values=hook.values,
                timeout=600,
                opts=pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=after)),
            )
            ready.append(self.webhook)
        # The custom resources need the CRDs the release installs (and the webhook serving).
        self.issuer = k8s.apiextensions.CustomResource(
            f"{name}-issuer",
            api_version="cert-manager.io/v1",
            kind="ClusterIssuer",
            metadata=meta(name=ISSUER),
            spec=issuer_spec(args),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=ready)),
        )
        self.certificate = k8s.apiextensions.CustomResource(
            f"{name}-certificate",
            api_version="cert-manager.io/v1",
            kind="Certificate",
            metadata=meta(name=CERTIFICATE, namespace=args.namespace),
            spec=certificate_spec(args.dns_name),
            opts=pulumi.ResourceOptions.merge(
                child,
                pulumi.ResourceOptions(depends_on=[self.issuer, args.namespace_resource]),
            ),
        )
        self.register_outputs({})
