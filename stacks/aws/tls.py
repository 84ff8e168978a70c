"""TLS on AWS (issue 13): cert-manager answers DNS-01 in the stack's Route 53 zone as an IAM role
it assumes through IRSA (the cluster's OIDC issuer), allowed to change TXT records in that zone
only. No long-lived key exists anywhere."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from stacks.aws.cluster import EksCluster
from stacks.config import StackConfig
from stacks.contract import CloudInfra, GlobalDns
from stacks.workload.tls import CERT_MANAGER_NAMESPACE, CERT_MANAGER_RELEASE, Dns01

STS_AUDIENCE = "sts.amazonaws.com"


def _trust(oidc_arn: str, issuer: str) -> str:
    host = issuer.removeprefix("https://")
    subject = f"system:serviceaccount:{CERT_MANAGER_NAMESPACE}:{CERT_MANAGER_RELEASE}"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": oidc_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {f"{host}:sub": subject, f"{host}:aud": STS_AUDIENCE}
                    },
                }
            ],
        }
    )


def zone_policy(zone_id: str) -> str:
    """What cert-manager's Route 53 solver calls, on this zone and for TXT records only."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "route53:GetChange",
                    "Resource": "arn:aws:route53:::change/*",
                },
                {
                    "Effect": "Allow",
                    "Action": [
                        "route53:ChangeResourceRecordSets",
                        "route53:ListResourceRecordSets",
                    ],
                    "Resource": f"arn:aws:route53:::hostedzone/{zone_id}",
                    "Condition": {
                        "ForAllValues:StringEquals": {
                            "route53:ChangeResourceRecordSetsRecordTypes": ["TXT"]
                        }
                    },
                },
            ],
        }
    )


def dns01(config: StackConfig, infra: CloudInfra, dns: GlobalDns, region: str) -> Dns01:
    cluster = infra.regions[region].cluster
    if not isinstance(cluster, EksCluster):
        raise TypeError(f"{region}: expected an EksCluster, got {type(cluster).__name__}")
    opts = pulumi.ResourceOptions(parent=cluster, provider=infra.providers[region])
    issuer = cluster.cluster.identities.apply(lambda ids: str(ids[0].oidcs[0].issuer))
    # IAM needs the cluster's issuer registered before a role can trust its tokens.
    oidc = aws.iam.OpenIdConnectProvider(
        f"{region}-eks-oidc", url=issuer, client_id_lists=[STS_AUDIENCE], opts=opts
    )
    role = aws.iam.Role(
        f"{region}-cert-manager-dns01",
        assume_role_policy=pulumi.Output.all(oidc.arn, issuer).apply(
            lambda v: _trust(str(v[0]), str(v[1]))
        ),
        opts=opts,
    )
    policy = aws.iam.RolePolicy(
        f"{region}-cert-manager-dns01",
        role=role.id,
        policy=dns.hosted_zone_id.apply(zone_policy),
        opts=opts,
    )
    return Dns01(
        # The zone by id: a second zone of the same name (an old one, a private one) would make
        # a lookup by name ambiguous.
        solver={"route53": {"region": region, "hostedZoneID": dns.hosted_zone_id}},
        controller_annotations={"eks.amazonaws.com/role-arn": role.arn},
        depends_on=[policy],
    )
