"""The stateful type table (cli/engine/stateful.py) against what the programs create: every
database, bucket, cluster, key, DNS zone and volume a program registers under Pulumi's mocks
must be in it, or a deploy would replace it without the warning and ``--refuse-replace`` would
let it through.

The programs run once per session (tests/stacks/helpers.py, shared with the stack tests)."""

from __future__ import annotations

import re

import pytest

from cli.engine.stateful import STATEFUL_TYPES

for _sdk in ("pulumi", "pulumi_aws", "pulumi_gcp", "pulumi_alicloud", "pulumi_kubernetes"):
    pytest.importorskip(_sdk, reason=f"{_sdk} is not installed (pip install -e '.[all]')")

from tests.stacks import helpers  # noqa: E402  (runs the programs: needs the SDKs above)

# What makes a type stateful, by kind, worded independently of the table: a new resource of one
# of these kinds fails the test until it is classified.
_KINDS = {
    "database": re.compile(r":(rds|sql)/(instance|databaseInstance|database|cluster):"),
    "bucket": re.compile(r":(s3|storage|oss)/bucket:"),
    "cluster": re.compile(
        r":(eks/cluster|container/cluster|cs/(managed|serverless)?kubernetes):", re.I
    ),
    "key": re.compile(r":kms/(key|cryptoKey|keyRing|instance):", re.I),
    "zone": re.compile(r":(route53/zone|dns/managedZone|dns/(alidns)?domain):", re.I),
    "volume": re.compile(r":core/v1:Persistent(Volume|VolumeClaim)$"),
}
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDKs' own classes


def _created(cloud: str) -> set[str]:
    return {r.type for r in helpers.run(cloud).registrations}


@pytest.mark.parametrize(
    ("cloud", "expected"),
    [
        ("aws", {"database", "bucket", "cluster", "key", "zone"}),
        ("gcp", {"database", "bucket", "cluster", "zone"}),  # Google-managed encryption keys
        ("alicloud", {"database", "bucket", "cluster", "key", "zone"}),
    ],
)
def test_every_stateful_resource_a_program_creates_is_in_the_table(
    cloud: str, expected: set[str]
) -> None:
    created = _created(cloud)
    stateful = {t for t in created if any(k.search(t) for k in _KINDS.values())}
    missing = sorted(stateful - set(STATEFUL_TYPES))
    assert not missing, f"{cloud}: add to cli/engine/stateful.py: {missing}"
    # The net catches what each program has: without this a broken pattern would pass.
    kinds = {k for k, pattern in _KINDS.items() if any(pattern.search(t) for t in stateful)}
    assert expected <= kinds, kinds


def test_every_token_in_the_table_is_one_a_program_creates() -> None:
    # A misspelt token (or one an SDK renamed) would silently never match.
    created = set().union(*(_created(c) for c in ("aws", "gcp", "alicloud")))
    volumes = {"kubernetes:core/v1:PersistentVolumeClaim", "kubernetes:core/v1:PersistentVolume"}
    assert sorted(set(STATEFUL_TYPES) - created - volumes) == []


@pytest.mark.parametrize("cloud", ["aws", "gcp", "alicloud"])
def test_no_statefulset_claims_volumes(cloud: str) -> None:
    # The NATS StatefulSet keeps nothing on disk, which is why StatefulSets are not in the table;
    # a volume claim template would make its replacement lose data.
    sets = helpers.run(cloud).find("kubernetes:apps/v1:StatefulSet")
    assert sets
    for reg in sets:
        assert not helpers.args(reg)["spec"].get("volumeClaimTemplates"), reg.name
