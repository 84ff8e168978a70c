"""The Google APIs the GCP program calls, switched on in the project before anything uses them.

A fresh project has few APIs enabled, and creating a resource whose API is off fails with
``SERVICE_DISABLED``. The regional providers depend on these services (``stacks.gcp.stack``), so
every resource made through one of them waits until its API is on; ``services`` maps short names
to the resources for anything that needs a narrower dependency. Destroy leaves the APIs on
(``disable_on_destroy=False``): other workloads in the project may use them, and disabling one
that another enabled service depends on fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_gcp as gcp

APIS: Final[Mapping[str, str]] = {
    "compute": "compute.googleapis.com",  # VPC, subnets, Cloud NAT, the DNS health check
    "container": "container.googleapis.com",  # GKE
    "sqladmin": "sqladmin.googleapis.com",  # Cloud SQL
    "servicenetworking": "servicenetworking.googleapis.com",  # Cloud SQL's private IP peering
    "dns": "dns.googleapis.com",  # the zone and the failover record
    "storage": "storage.googleapis.com",  # the backup bucket
    "artifactregistry": "artifactregistry.googleapis.com",  # the im-server image
    # GKE clusters send system logs and metrics here by default.
    "logging": "logging.googleapis.com",
    "monitoring": "monitoring.googleapis.com",
}


@dataclass(frozen=True, slots=True)
class ProjectApisArgs:
    project: str | None  # None: the provider's ambient project, as for every other resource


class ProjectApis(pulumi.ComponentResource):
    """One ``gcp.projects.Service`` per API, through a provider of their own (the regional
    providers depend on these services, so they cannot create them)."""

    services: Mapping[str, gcp.projects.Service]

    def __init__(
        self, name: str, args: ProjectApisArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:gcp:ProjectApis", name, None, opts)
        provider = gcp.Provider(
            f"{name}-provider", project=args.project, opts=pulumi.ResourceOptions(parent=self)
        )
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        self.services = {
            short: gcp.projects.Service(
                f"{name}-{short}",
                service=api,
                disable_on_destroy=False,
                opts=child,
            )
            for short, api in APIS.items()
        }
        self.register_outputs({})
