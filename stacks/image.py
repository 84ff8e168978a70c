"""The bundled im-server image: built from this imctl's own source and pushed to the stack's
registry, or an image the operator brings (``image=REF``).

One build pushes to a repository in every site's region (see the clouds' ``registry``
modules): a single-platform build has one manifest, so each repository holds the same digest,
and each cluster pulls from its own region, so the standby can start im-server while the
primary region (and its registry) is down, which is when it is needed.

The workload runs ``<repository>@sha256:...``, never a tag: a tag can move under a running
Deployment, and a node that pulls later would run different code than its neighbours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import pulumi
import pulumi_docker_build as docker_build

from stacks import build_context
from stacks.config import StackConfig
from stacks.naming import resource_prefix

REPOSITORY: Final = "im-server"


@dataclass(frozen=True, slots=True)
class PullCredentials:
    """A registry login the cluster pulls with, where node identity cannot (ACR)."""

    server: pulumi.Input[str]
    username: pulumi.Input[str]
    password: pulumi.Input[str]


@dataclass(frozen=True, slots=True)
class RegistryTarget:
    """One region's repository: where the build pushes and what that region's cluster pulls."""

    region: str
    push_repository: pulumi.Input[str]  # host/path, no tag
    pull_repository: pulumi.Input[str]  # the same repository as the cluster reaches it
    auth: docker_build.RegistryArgs  # the push login; its password is a secret
    pull_credentials: PullCredentials | None = None


@dataclass(frozen=True, slots=True)
class ImageSource:
    """What each region's workload runs, and how its pods authenticate the pull."""

    refs: Mapping[str, pulumi.Input[str]]
    pull_secret: str | None = None  # an existing Secret (image=REF with imagePullSecret)
    pull_credentials: Mapping[str, PullCredentials] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BundledImageArgs:
    targets: Sequence[RegistryTarget]
    context: str
    platform: str
    tags: Sequence[str]
    revision: str | None = None


class BundledImage(pulumi.ComponentResource):
    """The docker-build Image that pushes the server to every target repository."""

    refs: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: BundledImageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:image:BundledImage", name, None, opts)
        labels = {
            "org.opencontainers.image.title": REPOSITORY,
            "org.opencontainers.image.version": build_context.version(),
        }
        if args.revision:
            labels["org.opencontainers.image.revision"] = args.revision
        # Explicit, like every provider here: it talks to the local Docker daemon (DOCKER_HOST).
        provider = docker_build.Provider(f"{name}-docker", opts=pulumi.ResourceOptions(parent=self))
        self.image = docker_build.Image(
            f"{name}-build",
            push=True,
            context=docker_build.BuildContextArgs(location=args.context),
            dockerfile=docker_build.DockerfileArgs(location=f"{args.context}/Dockerfile"),
            # The nodes' architecture, not the deploying machine's (often an arm64 laptop).
            platforms=[docker_build.Platform(args.platform)],
            tags=[
                pulumi.Output.concat(target.push_repository, ":", tag)
                for target in args.targets
                for tag in args.tags
            ],
            registries=[target.auth for target in args.targets],
            labels=labels,
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
        )
        self.digest = self.image.digest
        self.refs = {
            target.region: pulumi.Output.concat(target.pull_repository, "@", self.image.digest)
            for target in args.targets
        }
        self.register_outputs({"digest": self.digest})


def _registry_targets(
    config: StackConfig, providers: Mapping[str, pulumi.ProviderResource]
) -> list[RegistryTarget]:
    """The chosen cloud's repositories, one per site (imported on use, like the cloud's SDK)."""
    prefix = resource_prefix()
    if config.cloud == "aws":
        from stacks.aws.registry import Registry as AwsRegistry

        return AwsRegistry("registry", config, providers, prefix).targets
    if config.cloud == "gcp":
        from stacks.gcp.registry import Registry as GcpRegistry

        return GcpRegistry("registry", config, providers, prefix).targets
    from stacks.alicloud.registry import Registry as AliRegistry

    return AliRegistry("registry", config, providers, prefix).targets


def image_source(
    config: StackConfig, providers: Mapping[str, pulumi.ProviderResource]
) -> ImageSource:
    if not config.builds_image:
        assert config.image is not None
        return ImageSource(
            refs=dict.fromkeys(config.regions, config.image), pull_secret=config.image_pull_secret
        )
    source = build_context.find_source()
    targets = _registry_targets(config, providers)
    image = BundledImage(
        "im-server-image",
        BundledImageArgs(
            targets=targets,
            context=str(build_context.assemble(source=source)),
            platform=config.image_platform,
            tags=build_context.image_tags(source.revision),
            revision=source.revision,
        ),
    )
    return ImageSource(
        refs=image.refs,
        pull_credentials={
            t.region: t.pull_credentials for t in targets if t.pull_credentials is not None
        },
    )
