"""The stack's typed configuration: every key, its default, its bounds, in one place.

``Pulumi.yaml`` documents the same keys (a test keeps the two in step). Values arrive as strings
(from ``pulumi config`` or from ``imctl plan --set key=value``) and leave as a frozen
``StackConfig``; anything wrong raises ``ConfigError`` naming the key and how to fix it.

This module imports no Pulumi package, so the CLI can validate a config without paying for one.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date
from typing import Final, Literal

from stacks import k8s_support
from stacks.regions import REGIONS_BY_CLOUD

Cloud = Literal["aws", "gcp", "alicloud"]
Role = Literal["primary", "standby"]
CLOUDS: Final[tuple[Cloud, ...]] = ("aws", "gcp", "alicloud")

# Pod shutdown budget: the preStop sleep lets load balancers stop sending new connections before
# SIGTERM starts the server's drain; the margin covers process exit after the drain deadline.
PRESTOP_SLEEP_SECONDS: Final = 5
TERMINATION_MARGIN_SECONDS: Final = 10

# TLS (issue 13)
LETSENCRYPT: Final = "https://acme-v02.api.letsencrypt.org/directory"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")
# The architectures the clouds' default node types run; the build must produce the same one.
IMAGE_PLATFORMS: Final = ("linux/amd64", "linux/arm64")
# Secret config (stored encrypted, never part of StackConfig): the ACR login's password.
ACR_PASSWORD_KEY: Final = "acrPassword"


class ConfigError(ValueError):
    """A config value is missing or wrong. ``message`` says what, ``hint`` says how to fix it."""

    def __init__(self, message: str, hint: str = "", *, key: str | None = None) -> None:
        super().__init__(message if not hint else f"{message} ({hint})")
        self.message = message
        self.hint = hint
        self.key = key


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One config key as documented in Pulumi.yaml."""

    name: str
    kind: Literal["string", "integer", "boolean"]
    description: str
    default: str | None  # None: required. "" for nodeInstanceType/dbClass: CLOUD_DEFAULTS


KEYS: Final[tuple[KeySpec, ...]] = (
    KeySpec("cloud", "string", "Target cloud: aws, gcp or alicloud.", None),
    KeySpec("region", "string", "Primary region (serves traffic, holds the writable DB).", None),
    KeySpec(
        "standbyRegion", "string", "Standby region (DB replica + idle cluster); empty: none.", ""
    ),
    KeySpec("nodeMin", "integer", "Minimum worker nodes per cluster.", "2"),
    KeySpec("nodeMax", "integer", "Maximum worker nodes per cluster.", "6"),
    KeySpec("nodeDesired", "integer", "Worker nodes per cluster at deploy time.", "3"),
    KeySpec("nodeInstanceType", "string", "Worker machine type; empty: the cloud's default.", ""),
    KeySpec("replicas", "integer", "im-server replicas in the primary region at deploy time.", "3"),
    KeySpec("hpaMin", "integer", "HorizontalPodAutoscaler lower bound for im-server.", "3"),
    KeySpec("hpaMax", "integer", "HorizontalPodAutoscaler upper bound for im-server.", "12"),
    KeySpec("hpaCpuPercent", "integer", "Target average CPU utilisation for the HPA.", "70"),
    KeySpec("pdbMaxUnavailable", "integer", "im-server pods a voluntary disruption may take.", "1"),
    KeySpec("dbClass", "string", "PostgreSQL instance class; empty: the cloud's default.", ""),
    KeySpec("dbStorageGb", "integer", "Managed PostgreSQL storage in GiB.", "100"),
    KeySpec("dbBackupRetentionDays", "integer", "Automated backup retention (7-35 days).", "7"),
    KeySpec("domain", "string", "DNS zone the global endpoint lives in.", "example.com"),
    KeySpec("hostname", "string", "Label of the global endpoint inside the zone.", "im"),
    # Issue 13 (the bundled image): built and pushed to the stack's own registry unless
    # ``image`` names one the operator already publishes.
    KeySpec(
        "image",
        "string",
        "im-server image to run instead of building one; empty: build and push to the stack's"
        " registry.",
        "",
    ),
    KeySpec(
        "imagePullSecret",
        "string",
        "With image set: an existing docker-registry Secret in the namespace to pull it with.",
        "",
    ),
    KeySpec(
        "imagePlatform",
        "string",
        "Platform the image is built for; must match the worker nodes' architecture.",
        "linux/amd64",
    ),
    KeySpec(
        "acrUsername",
        "string",
        "Alibaba Cloud: ACR Personal Edition login name for the build's push (with acrPassword).",
        "",
    ),
    KeySpec(
        "drainGraceSeconds", "integer", "Seconds a node drains before closing (SIGTERM).", "30"
    ),
    KeySpec("namespace", "string", "Kubernetes namespace for the workload.", "im"),
    KeySpec(
        "monitoring",
        "boolean",
        "Install the Prometheus Operator stack and create the PodMonitor/PrometheusRule.",
        "true",
    ),
    KeySpec("gcpProject", "string", "GCP project id; empty: the provider's ambient project.", ""),
    KeySpec(
        "failovers",
        "integer",
        "Region failovers so far (imctl failover counts them); odd: standbyRegion is the writer.",
        "0",
    ),
    KeySpec(
        "restoredInstance",
        "string",
        "Set by imctl restore: the unmanaged DB instance the workload uses; deploys refuse.",
        "",
    ),
    KeySpec(
        "teardown",
        "boolean",
        "Set by imctl destroy: every deletion protection is lifted so pulumi destroy can finish.",
        "false",
    ),
    # Issue 13 (Kubernetes versions): the cluster's minor version, checked against the
    # provider's support calendar in stacks/k8s_support.py.
    KeySpec(
        "kubernetesVersion",
        "string",
        "Kubernetes minor version of the clusters (e.g. 1.35); empty: the cloud's default.",
        "",
    ),
    # TLS (issue 13): wss:// on 443 with a certificate cert-manager gets by DNS-01 in the stack's
    # zone; plain ws:// on 80 only when asked for.
    KeySpec(
        "plaintext", "boolean", "Also serve plain ws:// on port 80 (wss:// on 443 always).", "false"
    ),
    KeySpec("acmeEmail", "string", "Contact address for the ACME account; empty: none.", ""),
    KeySpec("acmeServer", "string", "ACME directory URL that issues the certificate.", LETSENCRYPT),
)
KEY_NAMES: Final = frozenset(k.name for k in KEYS)

CLOUD_DEFAULTS: Final[dict[Cloud, dict[str, str]]] = {
    "aws": {"nodeInstanceType": "m6i.large", "dbClass": "db.r6g.large"},
    "gcp": {"nodeInstanceType": "e2-standard-4", "dbClass": "db-custom-2-7680"},
    "alicloud": {"nodeInstanceType": "ecs.g7.xlarge", "dbClass": "pg.n2.2c.2m"},
}
_DB_CLASS_PREFIX: Final[dict[Cloud, str]] = {"aws": "db.", "gcp": "db-", "alicloud": "pg."}


def writer_of(region: str, standby_region: str | None, failovers: int) -> str:
    """The region holding the writable database and serving traffic: each failover (written
    back by ``imctl failover``) moves the role to the other site."""
    return standby_region if failovers % 2 == 1 and standby_region is not None else region


@dataclass(frozen=True, slots=True)
class StackConfig:
    cloud: Cloud
    region: str
    standby_region: str | None
    node_min: int
    node_max: int
    node_desired: int
    node_instance_type: str
    replicas: int
    hpa_min: int
    hpa_max: int
    hpa_cpu_percent: int
    pdb_max_unavailable: int
    db_class: str
    db_storage_gb: int
    db_backup_retention_days: int
    domain: str
    hostname: str
    image: str | None  # None: build the bundled server and push it to the stack's registry
    drain_grace_seconds: int
    namespace: str
    monitoring: bool
    gcp_project: str | None
    failovers: int = 0
    restored_instance: str | None = None
    teardown: bool = False
    kubernetes_version: str = ""  # parse() fills in the cloud's default
    image_pull_secret: str | None = None
    image_platform: str = "linux/amd64"
    acr_username: str | None = None
    # TLS (issue 13)
    plaintext: bool = False
    acme_email: str | None = None
    acme_server: str = LETSENCRYPT

    @property
    def cluster_version(self) -> str:
        return self.kubernetes_version or k8s_support.CALENDARS[self.cloud].default

    @property
    def builds_image(self) -> bool:
        return self.image is None

    @property
    def protect_data(self) -> bool:
        """Databases refuse deletion and outlive their removal from the program, and clusters
        and KMS keys refuse deletion, except while ``imctl destroy`` tears the stack down (it
        sets ``teardown`` first); buckets then also give up their objects."""
        return not self.teardown

    @property
    def regions(self) -> tuple[str, ...]:
        """The sites in the order they were configured: ``region`` first, then the standby.

        The order never changes with a failover, so nothing keyed by it (VPC ranges, resource
        names) is replaced when the roles swap; ``writer_region`` says which site leads now.
        """
        return (self.region,) if self.standby_region is None else (self.region, self.standby_region)

    @property
    def writer_region(self) -> str:
        return writer_of(self.region, self.standby_region, self.failovers)

    def role(self, region: str) -> Role:
        return "primary" if region == self.writer_region else "standby"

    @property
    def writer_first(self) -> tuple[str, ...]:
        """The sites, writer first: a replica is declared after the instance it follows."""
        return tuple(sorted(self.regions, key=lambda r: r != self.writer_region))

    @property
    def reader_region(self) -> str | None:
        """The region holding the replica, if there is one."""
        if self.standby_region is None:
            return None
        return self.region if self.writer_region != self.region else self.standby_region

    def db_generation(self, region: str) -> int:
        """Which database instance a site holds, counted in failovers.

        A failover promotes the reader's replica where it stands (same resource, no
        replacement) and leaves the old writer behind: it may hold writes the new writer
        never received, so it is never turned back into a replica. The demoted site gets a
        new replica, created at the current failover count; the writer keeps the instance it
        got as a replica one failover earlier.
        """
        if region == self.writer_region:
            return max(self.failovers - 1, 0)
        return self.failovers

    def db_promoted(self, region: str) -> bool:
        """The writer's instance started as a replica and was promoted by a failover."""
        return region == self.writer_region and self.failovers > 0

    def db_name(self, region: str) -> str:
        """The database component's resource name for a site: stable across the promotion
        of its instance, new for each replica a failover makes."""
        generation = self.db_generation(region)
        return f"{region}-db" if generation == 0 else f"{region}-db-f{generation}"

    @property
    def dns_name(self) -> str:
        return f"{self.hostname}.{self.domain}"

    @property
    def endpoint(self) -> str:
        """What clients connect to: the global name over TLS."""
        return f"wss://{self.dns_name}/ws"

    @property
    def termination_grace_seconds(self) -> int:
        """Pod grace: preStop sleep, then the server's drain, then room to exit cleanly."""
        return PRESTOP_SLEEP_SECONDS + self.drain_grace_seconds + TERMINATION_MARGIN_SECONDS

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _suggest(value: str, choices: frozenset[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(value, sorted(choices), n=3, cutoff=0.6)
    return f"did you mean {', '.join(close)}?" if close else ""


def _int(values: Mapping[str, str], key: str, lo: int, hi: int) -> int:
    raw = values[key].strip()
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"{key} must be an integer, got {raw!r}", f"set {key} to a whole number", key=key
        ) from None
    if not lo <= value <= hi:
        raise ConfigError(
            f"{key} must be between {lo} and {hi}, got {value}",
            f"set {key} within [{lo}, {hi}]",
            key=key,
        )
    return value


def _bool(values: Mapping[str, str], key: str) -> bool:
    raw = values[key].strip().lower()
    if raw in {"true", "1", "yes", "on"}:
        return True
    if raw in {"false", "0", "no", "off"}:
        return False
    raise ConfigError(f"{key} must be true or false, got {raw!r}", key=key)


def _region(cloud: Cloud, key: str, value: str) -> str:
    known = REGIONS_BY_CLOUD[cloud]
    if value not in known:
        hint = _suggest(value, known) or f"see the {cloud} region list in docs/stacks.md"
        raise ConfigError(f"unknown {cloud} region {value!r} for {key}", hint, key=key)
    return value


def _check_dns(domain: str, hostname: str) -> None:
    labels = domain.lower().rstrip(".").split(".")
    if len(labels) < 2 or not all(_DNS_LABEL.match(label) for label in labels):
        raise ConfigError(
            f"domain {domain!r} is not a DNS zone name", "e.g. example.com", key="domain"
        )
    if not _DNS_LABEL.match(hostname):
        raise ConfigError(
            f"hostname {hostname!r} is not a DNS label",
            "lowercase letters, digits, '-'",
            key="hostname",
        )


def _kubernetes_version(cloud: Cloud, raw: str) -> str:
    """A minor version ("1.35"); whether the provider still supports it on a given day is
    check_deployable's question, not the config's, so a stored config never goes bad."""
    version = raw or k8s_support.CALENDARS[cloud].default
    if not k8s_support.is_minor(version):
        raise ConfigError(
            f"kubernetesVersion {raw!r} is not a Kubernetes minor version",
            f"e.g. {k8s_support.CALENDARS[cloud].default} (the provider picks the patch)",
            key="kubernetesVersion",
        )
    if cloud == "alicloud" and version not in k8s_support.ACK_PATCH:
        raise ConfigError(
            f"kubernetesVersion {version} has no known ACK patch version",
            f"one of {', '.join(sorted(k8s_support.ACK_PATCH, reverse=True))}, or add the patch"
            " from ACK's release notes to stacks/k8s_support.py ACK_PATCH",
            key="kubernetesVersion",
        )
    return version


def parse(values: Mapping[str, str]) -> StackConfig:
    """Validate string values keyed as in Pulumi.yaml; missing optional keys take defaults."""
    unknown = sorted(set(values) - KEY_NAMES)
    if unknown:
        key = unknown[0]
        hint = _suggest(key, tuple(KEY_NAMES)) or f"known keys: {', '.join(sorted(KEY_NAMES))}"
        raise ConfigError(f"unknown config key {key!r}", hint, key=key)

    raw_cloud = values.get("cloud", "").strip().lower()
    if raw_cloud not in CLOUDS:
        raise ConfigError(
            f"unknown cloud {raw_cloud!r}" if raw_cloud else "cloud is required",
            f"one of {', '.join(CLOUDS)}",
            key="cloud",
        )
    cloud: Cloud = raw_cloud
    merged: dict[str, str] = {k.name: k.default for k in KEYS if k.default is not None}
    merged.update(CLOUD_DEFAULTS[cloud])
    per_cloud = CLOUD_DEFAULTS[cloud]
    merged.update({k: v for k, v in values.items() if not (k in per_cloud and not v.strip())})

    region = merged.get("region", "").strip()
    if not region:
        raise ConfigError("region is required", f"e.g. imctl plan --cloud {cloud} --region ...")
    _region(cloud, "region", region)
    standby = merged["standbyRegion"].strip() or None
    if standby is not None:
        _region(cloud, "standbyRegion", standby)
        if standby == region:
            raise ConfigError(
                f"standbyRegion must differ from region (both {region!r})",
                "pick another region for the standby, or leave standbyRegion empty",
                key="standbyRegion",
            )

    failovers = _int(merged, "failovers", 0, 1_000_000)
    if failovers % 2 == 1 and standby is None:
        raise ConfigError(
            f"failovers is {failovers} (odd: the standby region is the writer), but there is no"
            " standbyRegion",
            "set standbyRegion back to the region the stack failed over to",
            key="failovers",
        )

    node_min = _int(merged, "nodeMin", 1, 100)
    node_max = _int(merged, "nodeMax", 1, 100)
    node_desired = _int(merged, "nodeDesired", 1, 100)
    if node_min > node_max:
        raise ConfigError(
            f"nodeMin ({node_min}) is greater than nodeMax ({node_max})",
            "raise nodeMax or lower nodeMin",
            key="nodeMin",
        )
    if not node_min <= node_desired <= node_max:
        raise ConfigError(
            f"nodeDesired ({node_desired}) must lie within nodeMin..nodeMax "
            f"({node_min}..{node_max})",
            key="nodeDesired",
        )

    hpa_min = _int(merged, "hpaMin", 1, 1000)
    hpa_max = _int(merged, "hpaMax", 1, 1000)
    if hpa_min > hpa_max:
        raise ConfigError(
            f"hpaMin ({hpa_min}) is greater than hpaMax ({hpa_max})",
            "raise hpaMax or lower hpaMin",
            key="hpaMin",
        )
    replicas = _int(merged, "replicas", 1, 1000)
    if not hpa_min <= replicas <= hpa_max:
        raise ConfigError(
            f"replicas ({replicas}) must lie within hpaMin..hpaMax ({hpa_min}..{hpa_max})",
            "the autoscaler would move it there anyway",
            key="replicas",
        )
    pdb = _int(merged, "pdbMaxUnavailable", 1, 1000)
    if hpa_min >= 2 and pdb >= hpa_min:
        raise ConfigError(
            f"pdbMaxUnavailable ({pdb}) must be below hpaMin ({hpa_min})",
            "otherwise a node drain may evict every im-server pod at once",
            key="pdbMaxUnavailable",
        )

    db_class = merged["dbClass"].strip()
    prefix = _DB_CLASS_PREFIX[cloud]
    if not db_class.startswith(prefix):
        raise ConfigError(
            f"dbClass {db_class!r} is not a {cloud} PostgreSQL class",
            f"{cloud} classes start with {prefix!r}, e.g. {CLOUD_DEFAULTS[cloud]['dbClass']}",
            key="dbClass",
        )

    domain = merged["domain"].strip().lower().rstrip(".")
    hostname = merged["hostname"].strip().lower()
    _check_dns(domain, hostname)

    image = merged["image"].strip() or None
    if image is not None and not _IMAGE.match(image):
        raise ConfigError(f"image {image!r} is not an image reference", key="image")
    pull_secret = merged["imagePullSecret"].strip() or None
    if pull_secret is not None:
        if image is None:
            raise ConfigError(
                "imagePullSecret only applies to an image you bring (image=REF); the stack's own"
                " registry is pulled with the nodes' cloud identity",
                "set image too, or drop imagePullSecret",
                key="imagePullSecret",
            )
        if not _DNS_LABEL.match(pull_secret):
            raise ConfigError(
                f"imagePullSecret {pull_secret!r} is not a Secret name", key="imagePullSecret"
            )
    platform = merged["imagePlatform"].strip()
    if platform not in IMAGE_PLATFORMS:
        raise ConfigError(
            f"imagePlatform {platform!r} is not supported",
            f"one of {', '.join(IMAGE_PLATFORMS)}, the worker nodes' architecture",
            key="imagePlatform",
        )
    namespace = merged["namespace"].strip()
    if not _DNS_LABEL.match(namespace):
        raise ConfigError(f"namespace {namespace!r} is not a DNS label", key="namespace")
    node_type = merged["nodeInstanceType"].strip()
    if not node_type:
        raise ConfigError("nodeInstanceType must not be empty", key="nodeInstanceType")
    k8s_version = _kubernetes_version(cloud, merged["kubernetesVersion"].strip())

    return StackConfig(
        cloud=cloud,
        region=region,
        standby_region=standby,
        node_min=node_min,
        node_max=node_max,
        node_desired=node_desired,
        node_instance_type=node_type,
        replicas=replicas,
        hpa_min=hpa_min,
        hpa_max=hpa_max,
        hpa_cpu_percent=_int(merged, "hpaCpuPercent", 10, 95),
        pdb_max_unavailable=pdb,
        db_class=db_class,
        db_storage_gb=_int(merged, "dbStorageGb", 20, 65536),
        db_backup_retention_days=_int(merged, "dbBackupRetentionDays", 7, 35),
        domain=domain,
        hostname=hostname,
        image=image,
        drain_grace_seconds=_int(merged, "drainGraceSeconds", 1, 3600),
        namespace=namespace,
        monitoring=_bool(merged, "monitoring"),
        gcp_project=merged["gcpProject"].strip() or None,
        failovers=failovers,
        restored_instance=merged["restoredInstance"].strip() or None,
        teardown=_bool(merged, "teardown"),
        kubernetes_version=k8s_version,
        image_pull_secret=pull_secret,
        image_platform=platform,
        acr_username=merged["acrUsername"].strip() or None,
        # TLS (issue 13)
        plaintext=_bool(merged, "plaintext"),
        acme_email=_acme_email(merged["acmeEmail"]),
        acme_server=_acme_server(merged["acmeServer"]),
    )


def _acme_email(raw: str) -> str | None:
    email = raw.strip()
    if email and not _EMAIL.match(email):
        raise ConfigError(f"acmeEmail {email!r} is not an email address", key="acmeEmail")
    return email or None


def _acme_server(raw: str) -> str:
    url = raw.strip()
    if not url.startswith("https://"):
        raise ConfigError(
            f"acmeServer {url!r} is not an https:// ACME directory URL",
            f"e.g. {LETSENCRYPT} (or Let's Encrypt's staging directory for trials)",
            key="acmeServer",
        )
    return url


def load(
    cloud: str, region: str, standby_region: str | None, overrides: Mapping[str, str]
) -> StackConfig:
    """The CLI's view: cloud and regions as arguments, everything else as key=value overrides."""
    for key in ("cloud", "region", "standbyRegion"):
        if key in overrides:
            raise ConfigError(
                f"{key} is given as an argument, not as an override", f"drop {key} from --set"
            )
    values = dict(overrides)
    values.update(cloud=cloud, region=region, standbyRegion=standby_region or "")
    return parse(values)


class Undeployable(ConfigError):
    """The config is well-formed but must not be deployed (today): a precondition, not a typo."""


def kubernetes_version_verdict(config: StackConfig, today: date) -> k8s_support.Verdict:
    return k8s_support.verdict(config.cloud, config.cluster_version, today)


def check_deployable(config: StackConfig, today: date | None = None) -> None:
    """Refuse a deploy that would silently undo an operation done outside Pulumi, or create a
    cluster on a Kubernetes version its provider no longer offers (``today`` defaults to the
    real date; tests pass one)."""
    verdict = kubernetes_version_verdict(config, today or date.today())
    if verdict.level == "refuse":
        raise Undeployable(verdict.message, verdict.hint, key="kubernetesVersion")
    if config.restored_instance:
        raise Undeployable(
            f"the workload runs on {config.restored_instance}, restored by imctl restore; this"
            " stack does not manage it, and deploying would point the workload back at the"
            " stack's own instance (losing what was written since the restore)",
            "keep the restore: imctl restore <snapshot> --target in-place (AWS, GCP) makes it the"
            " stack's instance; or drop it: imctl deploy --set restoredInstance=",
            key="restoredInstance",
        )


def check_registry_login(config: StackConfig, has_acr_password: bool) -> None:
    """Refuse an Alibaba Cloud deploy that would build the image without a way to push it: ACR
    Personal Edition has no API token the provider can fetch (unlike ECR and Artifact
    Registry), so the push and the clusters' pulls use the account's registry login."""
    if config.cloud != "alicloud" or not config.builds_image:
        return
    if config.acr_username and has_acr_password:
        return
    raise ConfigError(
        "the image is built and pushed to ACR Personal Edition, which needs your registry login",
        "set it once in the ACR console (Instance > Access Credential), then imctl deploy --set"
        f" acrUsername=<account name> --set {ACR_PASSWORD_KEY}=<registry password> (stored"
        " encrypted); or bring an image: --set image=REF",
        key="acrUsername" if not config.acr_username else ACR_PASSWORD_KEY,
    )
