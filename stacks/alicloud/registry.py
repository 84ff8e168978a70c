"""Container Registry (ACR) Personal Edition: a private namespace and repository for the
bundled im-server in every site's region.

Personal Edition, not Enterprise: Enterprise instances are prepaid subscriptions (``payment_type
= "Subscription"``, whole months) that outlive ``imctl destroy``; Personal Edition is free and
deleted with the stack. Its cost is that no API token exists for it in the provider, so the
push and the clusters' pulls use the account's registry login (``acrUsername`` and the secret
``acrPassword``); the pulls go through each region's VPC endpoint, not the NAT gateway.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import pulumi
import pulumi_alicloud as alicloud
import pulumi_docker_build as docker_build

from stacks.config import ACR_PASSWORD_KEY, StackConfig
from stacks.image import REPOSITORY, PullCredentials, RegistryTarget

_NAMESPACE_MAX = 30


def namespace_name(prefix: str, account_id: str) -> str:
    """Namespaces are unique per region across every ACR user, not per account: the stack
    prefix plus a hash of the account keeps two accounts' "imctl-dev" apart."""
    digest = hashlib.sha256(f"{account_id}/{prefix}".encode()).hexdigest()[:8]
    return f"{prefix[: _NAMESPACE_MAX - 9].rstrip('-')}-{digest}"


def _domain(domains: object, kind: str, fallback: str) -> str:
    for entry in domains or []:  # type: ignore[attr-defined]
        value = getattr(entry, kind, None) or (entry.get(kind) if isinstance(entry, dict) else None)
        if value:
            return str(value)
    return fallback


class Registry(pulumi.ComponentResource):
    targets: list[RegistryTarget]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        providers: Mapping[str, pulumi.ProviderResource],
        prefix: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("imctl:alicloud:Registry", name, None, opts)
        # A deploy without the login is refused earlier (stacks.config.check_registry_login);
        # an offline plan has none and shows a placeholder, secret all the same.
        password = pulumi.Config().get_secret(ACR_PASSWORD_KEY) or pulumi.Output.secret("")
        username = config.acr_username or ""
        account = alicloud.get_caller_identity(
            opts=pulumi.InvokeOptions(provider=providers[config.region])
        ).account_id
        self.repositories: dict[str, alicloud.cr.Repo] = {}
        self.targets = []
        for region in config.regions:
            child = pulumi.ResourceOptions(parent=self, provider=providers[region])
            namespace = alicloud.cr.Namespace(
                f"{name}-{region}-namespace",
                name=namespace_name(prefix, account),
                auto_create=False,
                default_visibility="PRIVATE",
                opts=child,
            )
            repo = alicloud.cr.Repo(
                f"{name}-{region}",
                namespace=namespace.name,
                name=REPOSITORY,
                repo_type="PRIVATE",
                summary="imctl: the bundled im-server image",
                opts=child,
            )
            public = repo.domain_lists.apply(
                lambda d, r=region: _domain(d, "public", f"registry.{r}.aliyuncs.com")
            )
            vpc = repo.domain_lists.apply(
                lambda d, r=region: _domain(d, "vpc", f"registry-vpc.{r}.aliyuncs.com")
            )
            self.repositories[region] = repo
            self.targets.append(
                RegistryTarget(
                    region=region,
                    push_repository=pulumi.Output.concat(
                        public, "/", namespace.name, "/", REPOSITORY
                    ),
                    pull_repository=pulumi.Output.concat(vpc, "/", namespace.name, "/", REPOSITORY),
                    auth=docker_build.RegistryArgs(
                        address=public, username=username, password=password
                    ),
                    pull_credentials=PullCredentials(
                        server=vpc, username=username, password=password
                    ),
                )
            )
        self.register_outputs({})
