"""ECR: a private repository for the bundled im-server in every site's region.

The EKS node role carries AmazonEC2ContainerRegistryReadOnly (stacks/aws/cluster.py), so each
region's nodes pull from their own region's repository with no pull secret.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

from stacks.config import StackConfig
from stacks.image import REPOSITORY, RegistryTarget


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
        super().__init__("imctl:aws:Registry", name, None, opts)
        self.repositories: dict[str, aws.ecr.Repository] = {}
        self.targets = []
        for region in config.regions:
            provider = providers[region]
            repo = aws.ecr.Repository(
                f"{name}-{region}",
                name=f"{prefix}/{REPOSITORY}",
                # The workload pins digests; the version tag is for people and moves on rebuild.
                image_tag_mutability="MUTABLE",
                image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                    scan_on_push=True
                ),
                # Its images are rebuilt from source on every deploy; without this, destroying
                # the stack fails on a repository that still holds one.
                force_delete=True,
                opts=pulumi.ResourceOptions(parent=self, provider=provider),
            )
            # A 12-hour token for the registry's push, fetched at deploy time.
            token = aws.ecr.get_authorization_token_output(
                registry_id=repo.registry_id,
                opts=pulumi.InvokeOutputOptions(provider=provider, parent=self),
            )
            self.repositories[region] = repo
            self.targets.append(
                RegistryTarget(
                    region=region,
                    push_repository=repo.repository_url,
                    pull_repository=repo.repository_url,
                    auth=docker_build.RegistryArgs(
                        address=repo.repository_url.apply(lambda url: url.split("/", 1)[0]),
                        username=token.user_name,
                        password=pulumi.Output.secret(token.password),
                    ),
                )
            )
        self.register_outputs({})
