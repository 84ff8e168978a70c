"""The whole stack, cloud-agnostic: secrets, the cloud's infrastructure, the same workload on
every cluster, then the global DNS name over the regions' load balancers.

``build`` returns the stack outputs (the contract cloud operations read); ``stacks/__main__.py``
exports them, and ``stacks.plan`` resolves them under the mock engine.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pulumi

from stacks.config import (
    ACR_PASSWORD_KEY,
    KEYS,
    Cloud,
    ConfigError,
    StackConfig,
    check_deployable,
    check_registry_login,
    parse,
)
from stacks.contract import CloudStack, database_url


def cloud_stack(cloud: Cloud) -> CloudStack:
    """Import only the chosen cloud's SDK: each one costs seconds to load."""
    if cloud == "aws":
        from stacks.aws import stack as aws_stack

        return aws_stack
    if cloud == "gcp":
        from stacks.gcp import stack as gcp_stack

        return gcp_stack
    from stacks.alicloud import stack as alicloud_stack

    return alicloud_stack


def from_pulumi_config() -> StackConfig:
    """The project's config (``pulumi config set ...``) as a validated StackConfig."""
    cfg = pulumi.Config()
    return parse({k.name: v for k in KEYS if (v := cfg.get(k.name)) is not None})


def run(error_prefix: str) -> None:
    """The program as ``pulumi up`` runs it (``stacks/__main__.py`` and the CLI's inline
    program): config from the stack, refusals, resources, exports. A config problem is raised
    as one line starting with ``error_prefix``, which the CLI maps to a usage error (exit 2)."""
    try:
        config = from_pulumi_config()
        check_deployable(config)
        check_registry_login(config, pulumi.Config().get_secret(ACR_PASSWORD_KEY) is not None)
    except ConfigError as exc:
        raise pulumi.RunError(f"{error_prefix} {exc}") from None
    for name, value in build(config).items():
        pulumi.export(name, value)


def build(config: StackConfig, today: date | None = None) -> dict[str, Any]:
    check_deployable(config, today)
    import pulumi_kubernetes as k8s
    import pulumi_random as random

    from stacks.image import image_source
    from stacks.workload.regional import Workload, WorkloadArgs
    from stacks.workload.secrets import AppSecrets, AppSecretsArgs
    from stacks.workload.tls import CertManager, CertManagerArgs

    cloud = cloud_stack(config.cloud)
    secrets = AppSecrets("app-secrets", AppSecretsArgs(provider=random.Provider("random")))
    infra = cloud.deploy(config, secrets)
    image = image_source(config, infra.providers)

    workloads: dict[str, Workload] = {}
    k8s_providers: dict[str, k8s.Provider] = {}
    for region, r in infra.regions.items():
        k8s_provider = k8s.Provider(
            f"k8s-{region}",
            kubeconfig=r.kubeconfig,
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=r.cluster),
        )
        k8s_providers[region] = k8s_provider
        workloads[region] = Workload(
            f"{region}-workload",
            WorkloadArgs(
                config=config,
                region=region,
                role=r.role,
                provider=k8s_provider,
                secrets=secrets,
                database_url=database_url(r.db_host, r.db_port, secrets.db_password),
                replication_lag_expr=infra.replication_lag_expr,
                service_annotations=infra.service_annotations,
                image=image.refs[region],
                image_pull_secret=image.pull_secret,
                pull_credentials=image.pull_credentials.get(region),
            ),
        )
    dns = cloud.global_dns(config, infra, {region: w.endpoint for region, w in workloads.items()})
    # TLS (issue 13): each cluster gets its own certificate for the global name, by DNS-01 in
    # the zone just declared; im-server's pods wait for the Secret it lands in.
    for region, w in workloads.items():
        CertManager(
            f"{region}-tls",
            CertManagerArgs(
                provider=k8s_providers[region],
                dns01=cloud.dns01(config, infra, dns, region),
                dns_name=config.dns_name,
                namespace=w.namespace,
                acme_server=config.acme_server,
                acme_email=config.acme_email,
                namespace_resource=w.namespace_resource,
            ),
            pulumi.ResourceOptions(parent=w),
        )

    return {
        "cloud": config.cloud,
        "primary_region": config.writer_region,
        "standby_region": config.reader_region,
        "failovers": config.failovers,
        "regions": {
            region: {
                "role": r.role,
                "cluster_name": r.cluster_name,
                "cluster_id": r.cluster_id if r.cluster_id is not None else r.cluster_name,
                "nodegroup_name": r.nodegroup_name,
                "db_instance_id": r.db_instance_id,
                "db_endpoint": r.db_host,
                "endpoint": workloads[region].endpoint,
                "namespace": workloads[region].namespace,
                "deployment": workloads[region].deployment_name,
            }
            for region, r in infra.regions.items()
        },
        "hosted_zone_id": dns.hosted_zone_id,
        "dns_name": dns.dns_name,
        # What clients connect to (the CLI prints it as it is).
        "endpoint": config.endpoint,
        "backup_bucket": infra.backup_bucket,
        "kubeconfig": pulumi.Output.secret(infra.regions[config.writer_region].kubeconfig),
        "kubeconfigs": pulumi.Output.secret(
            {region: r.kubeconfig for region, r in infra.regions.items()}
        ),
    }
