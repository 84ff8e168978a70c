"""The resource types whose replacement or deletion loses something a deploy cannot make again:
data (databases, buckets, volumes), what was encrypted (keys), every workload and Secret in a
cluster, a DNS zone's name servers (the parent zone's delegation names them).

Pulumi type tokens, kept here without importing Pulumi so a preview's steps can be judged (and
the table tested against what the programs create under mocks: tests/cloud/test_stateful_types.py)
anywhere. A type missing here is shown as an ordinary change: add every stateful resource a
program starts to create.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# Type token -> what is lost with the resource, worded for the deploy's confirmation.
STATEFUL_TYPES: Final[Mapping[str, str]] = {
    # AWS
    "aws:rds/instance:Instance": "the database instance and every message in it",
    "aws:s3/bucket:Bucket": "the bucket and the backups in it",
    "aws:eks/cluster:Cluster": "the cluster with every workload and Secret in it",
    "aws:kms/key:Key": "the key: what it encrypted cannot be read without it",
    "aws:route53/zone:Zone": "the zone: a new one gets new name servers, the delegation breaks",
    # GCP
    "gcp:sql/databaseInstance:DatabaseInstance": "the database instance and every message in it",
    "gcp:sql/database:Database": "the database and every message in it",
    "gcp:storage/bucket:Bucket": "the bucket and the backups in it",
    "gcp:container/cluster:Cluster": "the cluster with every workload and Secret in it",
    "gcp:dns/managedZone:ManagedZone": (
        "the zone: a new one gets new name servers, the delegation breaks"
    ),
    # Alibaba Cloud
    "alicloud:rds/instance:Instance": "the database instance and every message in it",
    "alicloud:rds/database:Database": "the database and every message in it",
    "alicloud:oss/bucket:Bucket": "the bucket and the backups in it",
    "alicloud:cs/managedKubernetes:ManagedKubernetes": (
        "the cluster with every workload and Secret in it"
    ),
    "alicloud:kms/key:Key": "the key: what it encrypted cannot be read without it",
    "alicloud:dns/alidnsDomain:AlidnsDomain": (
        "the domain: a new one gets new name servers, the delegation breaks"
    ),
    # Kubernetes: no program creates these today (NATS keeps no data); a volume is data wherever
    # it appears.
    "kubernetes:core/v1:PersistentVolumeClaim": "the volume claim and the data on its volume",
    "kubernetes:core/v1:PersistentVolume": "the volume and the data on it",
}


def is_stateful(type_token: str) -> bool:
    return type_token in STATEFUL_TYPES


def what_is_lost(type_token: str) -> str | None:
    return STATEFUL_TYPES.get(type_token)
