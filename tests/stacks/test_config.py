from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stacks.config import (
    CLOUD_DEFAULTS,
    KEYS,
    PRESTOP_SLEEP_SECONDS,
    TERMINATION_MARGIN_SECONDS,
    ConfigError,
    check_registry_login,
    load,
    parse,
)

ROOT = Path(__file__).resolve().parents[2]


def _pulumi_yaml() -> Any:
    # PyYAML comes with the Pulumi SDK; this module otherwise needs no Pulumi package.
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((ROOT / "Pulumi.yaml").read_text())


def test_defaults_fill_everything_but_cloud_and_region() -> None:
    cfg = parse({"cloud": "aws", "region": "us-east-1"})
    assert cfg.standby_region is None
    assert cfg.regions == ("us-east-1",)
    assert cfg.node_instance_type == CLOUD_DEFAULTS["aws"]["nodeInstanceType"]
    assert cfg.db_class == CLOUD_DEFAULTS["aws"]["dbClass"]
    assert cfg.db_backup_retention_days >= 7
    assert cfg.dns_name == f"{cfg.hostname}.{cfg.domain}"


@pytest.mark.parametrize("cloud", ["aws", "gcp", "alicloud"])
def test_empty_cloud_specific_values_take_the_clouds_default(cloud: str) -> None:
    region = {"aws": "eu-west-1", "gcp": "europe-west1", "alicloud": "eu-central-1"}[cloud]
    cfg = parse({"cloud": cloud, "region": region, "nodeInstanceType": "", "dbClass": " "})
    assert cfg.node_instance_type == CLOUD_DEFAULTS[cfg.cloud]["nodeInstanceType"]
    assert cfg.db_class == CLOUD_DEFAULTS[cfg.cloud]["dbClass"]


def test_overrides_are_typed() -> None:
    cfg = load("gcp", "us-central1", "us-east1", {"hpaMax": "20", "monitoring": "off"})
    assert cfg.hpa_max == 20
    assert cfg.monitoring is False
    assert cfg.regions == ("us-central1", "us-east1")


def test_termination_grace_covers_prestop_and_drain() -> None:
    cfg = load("aws", "us-east-1", None, {"drainGraceSeconds": "50"})
    assert cfg.termination_grace_seconds == PRESTOP_SLEEP_SECONDS + 50 + TERMINATION_MARGIN_SECONDS
    assert cfg.termination_grace_seconds > PRESTOP_SLEEP_SECONDS + cfg.drain_grace_seconds


@pytest.mark.parametrize(
    ("cloud", "region", "standby", "overrides", "key", "fragment"),
    [
        ("aws", "us-east1", None, {}, "region", "did you mean us-east-1"),
        ("gcp", "us-east-1", None, {}, "region", "unknown gcp region"),
        ("aws", "us-east-1", "mars-1", {}, "standbyRegion", "unknown aws region"),
        ("aws", "us-east-1", "us-east-1", {}, "standbyRegion", "must differ"),
        ("azure", "eastus", None, {}, "cloud", "unknown cloud"),
        ("aws", "us-east-1", None, {"nodeMin": "5", "nodeMax": "3"}, "nodeMin", "greater than"),
        ("aws", "us-east-1", None, {"nodeDesired": "9"}, "nodeDesired", "within"),
        ("aws", "us-east-1", None, {"hpaMin": "8", "hpaMax": "4"}, "hpaMin", "greater than"),
        ("aws", "us-east-1", None, {"replicas": "40"}, "replicas", "within"),
        ("aws", "us-east-1", None, {"pdbMaxUnavailable": "3"}, "pdbMaxUnavailable", "below"),
        ("aws", "us-east-1", None, {"nodeMax": "many"}, "nodeMax", "integer"),
        ("aws", "us-east-1", None, {"dbBackupRetentionDays": "3"}, "dbBackupRetentionDays", "7"),
        ("gcp", "us-east1", None, {"dbClass": "db.r6g.large"}, "dbClass", "not a gcp"),
        ("aws", "us-east-1", None, {"domain": "localhost"}, "domain", "DNS zone"),
        ("aws", "us-east-1", None, {"drainGrace": "30"}, "drainGrace", "drainGraceSeconds"),
        ("aws", "us-east-1", None, {"monitoring": "maybe"}, "monitoring", "true or false"),
        ("aws", "us-east-1", None, {"image": "bad image"}, "image", "image reference"),
        ("aws", "us-east-1", None, {"imagePullSecret": "x"}, "imagePullSecret", "set image"),
        ("aws", "us-east-1", None, {"imagePlatform": "linux/s390x"}, "imagePlatform", "amd64"),
    ],
)
def test_invalid_config_names_the_key_and_the_fix(
    cloud: str,
    region: str,
    standby: str | None,
    overrides: dict[str, str],
    key: str,
    fragment: str,
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(cloud, region, standby, overrides)
    err = caught.value
    assert err.key == key
    assert fragment in f"{err.message} {err.hint}"


def test_cloud_and_regions_cannot_hide_in_overrides() -> None:
    with pytest.raises(ConfigError, match="argument"):
        load("aws", "us-east-1", None, {"region": "us-west-2"})


def test_pulumi_yaml_documents_exactly_the_typed_keys() -> None:
    project = _pulumi_yaml()
    assert project["main"] == "stacks/"
    assert project["runtime"]["name"] == "python"
    documented = project["config"]
    assert list(documented) == [k.name for k in KEYS]
    for key in KEYS:
        entry = documented[key.name]
        assert entry["type"] == key.kind, key.name
        assert entry["description"] == key.description
        if key.default is None:
            assert "default" not in entry, f"{key.name} is required"
        else:
            assert str(entry["default"]).lower() == key.default.lower(), key.name


def test_every_documented_default_parses() -> None:
    project = _pulumi_yaml()
    values = {
        name: str(entry["default"]).lower()
        if isinstance(entry["default"], bool)
        else str(entry["default"])
        for name, entry in project["config"].items()
        if "default" in entry
    }
    parse({**values, "cloud": "alicloud", "region": "cn-hangzhou"})


def test_config_and_plan_import_no_pulumi_package() -> None:
    code = (
        "import sys, stacks.config, stacks.plan\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0].startswith('pulumi'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


def test_docs_list_every_config_key() -> None:
    docs = (ROOT / "docs" / "stacks.md").read_text()
    missing = [k.name for k in KEYS if f"| `{k.name}` |" not in docs]
    assert missing == []


def test_the_image_is_built_unless_one_is_given() -> None:
    built = load("aws", "us-east-1", None, {})
    assert built.builds_image and built.image is None
    assert built.image_platform == "linux/amd64"
    given = load("aws", "us-east-1", None, {"image": "r.example/im:1", "imagePullSecret": "pull"})
    assert not given.builds_image
    assert (given.image, given.image_pull_secret) == ("r.example/im:1", "pull")


def test_alicloud_build_needs_the_acr_login_before_deploying() -> None:
    bare = load("alicloud", "cn-hangzhou", None, {})
    with pytest.raises(ConfigError) as caught:
        check_registry_login(bare, has_acr_password=False)
    assert caught.value.key == "acrUsername" and "image=REF" in caught.value.hint
    named = load("alicloud", "cn-hangzhou", None, {"acrUsername": "ops@example"})
    with pytest.raises(ConfigError) as caught:
        check_registry_login(named, has_acr_password=False)
    assert caught.value.key == "acrPassword"
    check_registry_login(named, has_acr_password=True)
    # ECR and Artifact Registry logins come from the cloud; a given image needs no push.
    check_registry_login(load("aws", "us-east-1", None, {}), has_acr_password=False)
    given = load("alicloud", "cn-hangzhou", None, {"image": "r.example/im:1"})
    check_registry_login(given, has_acr_password=False)


def test_the_documented_kubernetes_role_is_for_the_default_namespace() -> None:
    """An operator applying docs/permissions/kubernetes-role.yaml as written must grant imctl
    its rights where the workload runs by default, not in a namespace nothing uses."""
    yaml = pytest.importorskip("yaml")
    role = yaml.safe_load((ROOT / "docs/permissions/kubernetes-role.yaml").read_text())
    [default] = [k.default for k in KEYS if k.name == "namespace"]
    assert role["kind"] == "Role"
    assert (
        role["metadata"]["namespace"]
        == default
        == parse({"cloud": "aws", "region": "us-east-1"}).namespace
    )
