"""TLS on Alibaba Cloud (issue 13): cert-manager has no Alidns solver of its own, so a DNS-01
webhook solver (crazygit/cert-manager-alidns-webhook, Apache-2.0, pinned) writes the TXT records.
It authenticates with the AccessKey of a RAM user allowed to edit records of the stack's domain
only. RRSA (a RAM role for the webhook's ServiceAccount) would avoid the long-lived key, but needs
RRSA switched on in the ACK cluster and ACK's pod-identity webhook; see docs/stacks.md."""

from __future__ import annotations

import json
from typing import Final

import pulumi
import pulumi_alicloud as alicloud

from stacks.config import StackConfig
from stacks.contract import CloudInfra, GlobalDns
from stacks.naming import resource_prefix
from stacks.workload.tls import (
    CERT_MANAGER_NAMESPACE,
    CERT_MANAGER_RELEASE,
    CREDENTIALS_SECRET,
    Dns01,
    HelmChart,
)

WEBHOOK_CHART: Final = "oci://ghcr.io/crazygit/charts/cert-manager-alidns-webhook"
WEBHOOK_VERSION: Final = "0.1.5"
# The API group the webhook serves; the ClusterIssuer names it to reach the solver.
WEBHOOK_GROUP: Final = "alidns.crazygit.github.io"


def record_policy(domain: str) -> str:
    return json.dumps(
        {
            "Version": "1",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": [
                        "alidns:AddDomainRecord",
                        "alidns:DeleteDomainRecord",
                        "alidns:UpdateDomainRecord",
                        "alidns:DescribeDomainRecords",
                    ],
                    "Resource": [f"acs:alidns:*:*:domain/{domain}"],
                },
                # The webhook finds the zone of the challenge name by listing domains.
                {"Effect": "Allow", "Action": ["alidns:DescribeDomains"], "Resource": ["*"]},
            ],
        }
    )


def dns01(config: StackConfig, infra: CloudInfra, dns: GlobalDns, region: str) -> Dns01:
    opts = pulumi.ResourceOptions(
        parent=infra.regions[region].cluster, provider=infra.providers[region]
    )
    name = f"{resource_prefix()}-dns01-{region}"
    user = alicloud.ram.User(
        f"{region}-cert-manager-dns01",
        name=name,
        comments="cert-manager DNS-01 TXT records for the imctl stack",
        force=True,
        opts=opts,
    )
    policy = alicloud.ram.Policy(
        f"{region}-cert-manager-dns01",
        policy_name=name,
        policy_document=record_policy(config.domain),
        force=True,
        opts=opts,
    )
    attachment = alicloud.ram.UserPolicyAttachment(
        f"{region}-cert-manager-dns01",
        policy_name=policy.policy_name,
        policy_type="Custom",
        user_name=user.name,
        opts=opts,
    )
    key = alicloud.ram.AccessKey(f"{region}-cert-manager-dns01", user_name=user.name, opts=opts)
    webhook = HelmChart(
        name="alidns-webhook",
        chart=WEBHOOK_CHART,
        version=WEBHOOK_VERSION,
        values={
            "groupName": WEBHOOK_GROUP,
            "certManager": {
                "namespace": CERT_MANAGER_NAMESPACE,
                "serviceAccountName": CERT_MANAGER_RELEASE,
            },
            "aliyunAuth": {"regionID": region, "existingSecret": CREDENTIALS_SECRET},
        },
    )
    return Dns01(
        solver={"webhook": {"groupName": WEBHOOK_GROUP, "solverName": "alidns"}},
        webhook=webhook,
        credentials={
            "accessKeyID": key.id,
            "accessKeySecret": pulumi.Output.secret(key.secret),
        },
        depends_on=[attachment],
    )
