"""Artifact Registry: a Docker repository for the bundled im-server in every site's region.

GKE nodes pull as their node service account (the Compute Engine default one; stacks/gcp/
cluster.py sets none), which projects created under an organization policy that disables the
default grants leave with no roles at all: the repository grants it read access explicitly.

The Artifact Registry API must be enabled in the project before the repositories are created;
``Registry(depends_on=...)`` takes the resource that enables it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_docker_build as docker_build
import pulumi_gcp as gcp

from stacks.config import StackConfig
from stacks.image import REPOSITORY, RegistryTarget
from stacks.naming import tags

# Docker's login name for a Google OAuth access token.
TOKEN_USER = "oauth2accesstoken"


def node_service_account(project_number: str) -> str:
    return f"{project_number}-compute@developer.gserviceaccount.com"


class Registry(pulumi.ComponentResource):
    targets: list[RegistryTarget]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        providers: Mapping[str, pulumi.ProviderResource],
        prefix: str,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("imctl:gcp:Registry", name, None, opts)
        self.repositories: dict[str, gcp.artifactregistry.Repository] = {}
        self.targets = []
        for region in config.regions:
            provider = providers[region]
            child = pulumi.ResourceOptions(parent=self, provider=provider)
            repo = gcp.artifactregistry.Repository(
                f"{name}-{region}",
                repository_id=prefix,
                location=region,
                format="DOCKER",
                description="imctl: the bundled im-server image",
                labels={k: v.lower() for k, v in tags(region).items()},
                opts=pulumi.ResourceOptions.merge(
                    child, pulumi.ResourceOptions(depends_on=list(depends_on))
                ),
            )
            invoke = pulumi.InvokeOutputOptions(provider=provider, parent=self)
            project = gcp.organizations.get_project_output(
                project_id=config.gcp_project, opts=invoke
            )
            gcp.artifactregistry.RepositoryIamMember(
                f"{name}-{region}-node-reader",
                project=repo.project,
                location=region,
                repository=repo.name,
                role="roles/artifactregistry.reader",
                member=project.number.apply(lambda n: f"serviceAccount:{node_service_account(n)}"),
                opts=child,
            )
            # The deploying identity's OAuth token (about an hour): enough for one push.
            client = gcp.organizations.get_client_config_output(opts=invoke)
            image_repo = pulumi.Output.concat(repo.registry_uri, "/", REPOSITORY)
            self.repositories[region] = repo
            self.targets.append(
                RegistryTarget(
                    region=region,
                    push_repository=image_repo,
                    pull_repository=image_repo,
                    auth=docker_build.RegistryArgs(
                        address=f"{region}-docker.pkg.dev",
                        username=TOKEN_USER,
                        password=pulumi.Output.secret(client.access_token),
                    ),
                )
            )
        self.register_outputs({})
