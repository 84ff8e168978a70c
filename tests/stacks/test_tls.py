"""TLS (issue 13): clients get wss:// on 443 for the stack's DNS name on every cloud; plain ws://
on 80 only with plaintext=true. cert-manager in each cluster gets the certificate by DNS-01 in
the stack's zone, with the cloud's own identity for the zone; im-server mounts it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.config import ConfigError, load
from stacks.mocks import GCP_PROJECT
from stacks.plan import PlanRun, Registration, is_secret, run_program
from stacks.workload.tls import CERT_MANAGER_VERSION
from tests.stacks.helpers import REGIONS, args, config, in_region, k8s, only, run

CLOUDS = ("aws", "gcp", "alicloud")
RELEASE = "kubernetes:helm.sh/v3:Release"
ISSUER = "kubernetes:cert-manager.io/v1:ClusterIssuer"
CERTIFICATE = "kubernetes:cert-manager.io/v1:Certificate"
SERVICE = "kubernetes:core/v1:Service"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


@pytest.fixture(scope="module", params=CLOUDS)
def plan(request: pytest.FixtureRequest) -> PlanRun:
    return run(request.param)


def _release(plan: PlanRun, region: str, name: str) -> Registration:
    [reg] = [r for r in in_region(plan, RELEASE, region) if args(r)["name"] == name]
    return reg


def test_the_endpoint_output_is_wss_on_the_dns_name(plan: PlanRun) -> None:
    assert plan.outputs["endpoint"] == "wss://im.example.com/ws"
    assert plan.outputs["dns_name"] == "im.example.com"


def test_service_exposes_443_and_no_plain_port_by_default(plan: PlanRun) -> None:
    for region in REGIONS[plan.config.cloud]:
        ports = args(k8s(plan, SERVICE, "im-server", region))["spec"]["ports"]
        assert [(p["port"], p["targetPort"]) for p in ports] == [(443, "https")]


def test_plaintext_true_adds_port_80() -> None:
    plan = run_program(config("aws", standby=False, plaintext="true"))
    ports = args(k8s(plan, SERVICE, "im-server", "us-east-1"))["spec"]["ports"]
    assert sorted((p["port"], p["targetPort"]) for p in ports) == [(80, "http"), (443, "https")]


def test_server_mounts_the_certificate_and_serves_tls_on_8443(plan: PlanRun) -> None:
    for region in REGIONS[plan.config.cloud]:
        pod = args(k8s(plan, DEPLOYMENT, "im-server", region))["spec"]["template"]["spec"]
        [container] = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert volumes["tls"]["secret"]["secretName"] == "im-server-tls"
        assert mounts["tls"]["readOnly"] is True
        assert "subPath" not in mounts["tls"]  # a subPath mount never sees a renewal
        directory = mounts["tls"]["mountPath"]
        assert env["IM_TLS_CERT_FILE"] == f"{directory}/tls.crt"
        assert env["IM_TLS_KEY_FILE"] == f"{directory}/tls.key"
        assert env["IM_TLS_PORT"] == "8443"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": 8080, "https": 8443}
        # Probes stay on the plain in-cluster port.
        assert container["readinessProbe"]["httpGet"]["port"] == "http"


def test_network_policy_lets_clients_reach_the_tls_port(plan: PlanRun) -> None:
    region = REGIONS[plan.config.cloud][0]
    policy = args(k8s(plan, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "im-server", region))
    [rule] = policy["spec"]["ingress"]
    assert {p["port"] for p in rule["ports"]} == {8080, 8443}


def test_cert_manager_is_a_pinned_release_with_its_crds(plan: PlanRun) -> None:
    for region in REGIONS[plan.config.cloud]:
        release = args(_release(plan, region, "cert-manager"))
        assert release["chart"] == "cert-manager"
        assert release["version"] == CERT_MANAGER_VERSION
        assert release["repositoryOpts"]["repo"] == "https://charts.jetstack.io"
        assert release["namespace"] == "cert-manager"
        assert release["values"]["crds"] == {"enabled": True, "keep": True}


def test_issuer_and_certificate_come_after_the_crds(plan: PlanRun) -> None:
    for region in REGIONS[plan.config.cloud]:
        release = _release(plan, region, "cert-manager")
        issuer = only(plan, ISSUER, region)
        certificate = only(plan, CERTIFICATE, region)
        assert release.urn in issuer.dependencies
        assert issuer.urn in certificate.dependencies


def test_certificate_for_the_dns_name_lands_in_the_servers_secret(plan: PlanRun) -> None:
    for region in REGIONS[plan.config.cloud]:
        cert = args(only(plan, CERTIFICATE, region))
        assert cert["metadata"]["namespace"] == plan.config.namespace
        assert cert["spec"]["dnsNames"] == ["im.example.com"]
        assert cert["spec"]["secretName"] == "im-server-tls"
        assert cert["spec"]["issuerRef"] == {
            "group": "cert-manager.io",
            "kind": "ClusterIssuer",
            "name": args(only(plan, ISSUER, region))["metadata"]["name"],
        }
        acme = args(only(plan, ISSUER, region))["spec"]["acme"]
        assert acme["server"] == "https://acme-v02.api.letsencrypt.org/directory"
        [solver] = acme["solvers"]
        assert solver["selector"] == {"dnsNames": ["im.example.com"]}


def test_aws_cert_manager_assumes_a_txt_only_role_on_the_zone_through_irsa() -> None:
    plan = run("aws")
    zone = only(plan, "aws:route53/zone:Zone").state["zoneId"]
    for region in REGIONS["aws"]:
        solver = args(only(plan, ISSUER, region))["spec"]["acme"]["solvers"][0]["dns01"]
        assert solver == {"route53": {"region": region, "hostedZoneID": zone}}
        [role] = [
            r for r in in_region(plan, "aws:iam/role:Role", region) if "cert-manager" in r.name
        ]
        trust = json.loads(args(role)["assumeRolePolicy"])["Statement"][0]
        assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
        [oidc] = in_region(plan, "aws:iam/openIdConnectProvider:OpenIdConnectProvider", region)
        assert trust["Principal"]["Federated"] == oidc.state["arn"]
        conditions = trust["Condition"]["StringEquals"]
        assert "system:serviceaccount:cert-manager:cert-manager" in conditions.values()
        [policy] = [
            r
            for r in in_region(plan, "aws:iam/rolePolicy:RolePolicy", region)
            if r.name == role.name
        ]
        statements = json.loads(args(policy)["policy"])["Statement"]
        change = next(s for s in statements if "route53:ChangeResourceRecordSets" in s["Action"])
        assert change["Resource"] == f"arn:aws:route53:::hostedzone/{zone}"
        assert change["Condition"]["ForAllValues:StringEquals"] == {
            "route53:ChangeResourceRecordSetsRecordTypes": ["TXT"]
        }
        values = args(_release(plan, region, "cert-manager"))["values"]
        assert values["serviceAccount"]["annotations"] == {
            "eks.amazonaws.com/role-arn": role.state["arn"]
        }


def test_gcp_cert_manager_acts_as_a_dns_service_account_through_workload_identity() -> None:
    plan = run("gcp")
    project = GCP_PROJECT  # the mocked getProject: the helpers' config has no gcpProject
    zone = only(plan, "gcp:dns/managedZone:ManagedZone").state["name"]
    for region in REGIONS["gcp"]:
        solver = args(only(plan, ISSUER, region))["spec"]["acme"]["solvers"][0]["dns01"]
        assert solver == {"cloudDNS": {"project": project, "hostedZoneName": zone}}
        [account] = in_region(plan, "gcp:serviceaccount/account:Account", region)
        [binding] = in_region(plan, "gcp:serviceaccount/iAMMember:IAMMember", region)
        assert args(binding)["role"] == "roles/iam.workloadIdentityUser"
        assert args(binding)["member"] == (
            f"serviceAccount:{project}.svc.id.goog[cert-manager/cert-manager]"
        )
        [grant] = in_region(plan, "gcp:projects/iAMMember:IAMMember", region)
        assert args(grant)["role"] == "roles/dns.admin"
        assert args(grant)["member"] == f"serviceAccount:{account.state['email']}"
        values = args(_release(plan, region, "cert-manager"))["values"]
        assert values["serviceAccount"]["annotations"] == {
            "iam.gke.io/gcp-service-account": account.state["email"]
        }
        # The cluster runs Workload Identity even with gcpProject unset (the helpers' config).
        cluster = args(only(plan, "gcp:container/cluster:Cluster", region))
        assert cluster["workloadIdentityConfig"] == {"workloadPool": f"{project}.svc.id.goog"}


def test_alicloud_webhook_solver_uses_a_key_limited_to_the_domains_records() -> None:
    plan = run("alicloud")
    for region in REGIONS["alicloud"]:
        solver = args(only(plan, ISSUER, region))["spec"]["acme"]["solvers"][0]["dns01"]
        webhook = args(_release(plan, region, "alidns-webhook"))
        assert webhook["version"] == "0.1.5"
        assert solver["webhook"]["groupName"] == webhook["values"]["groupName"]
        [policy] = in_region(plan, "alicloud:ram/policy:Policy", region)
        statements = json.loads(args(policy)["policyDocument"])["Statement"]
        writes = next(s for s in statements if "alidns:AddDomainRecord" in s["Action"])
        assert writes["Resource"] == ["acs:alidns:*:*:domain/example.com"]
        secret = k8s(plan, "kubernetes:core/v1:Secret", "dns01-credentials", region)
        assert is_secret(secret.inputs["stringData"])
        assert set(args(secret)["stringData"]) == {"accessKeyID", "accessKeySecret"}
        assert webhook["values"]["aliyunAuth"]["existingSecret"] == "dns01-credentials"
        cert_manager = _release(plan, region, "cert-manager")
        assert cert_manager.urn in _release(plan, region, "alidns-webhook").dependencies
        assert (
            _release(plan, region, "alidns-webhook").urn in only(plan, ISSUER, region).dependencies
        )


@pytest.mark.parametrize(
    ("cloud", "type_", "check"),
    [
        ("aws", "aws:route53/healthCheck:HealthCheck", lambda a: (a["type"], a["port"])),
        (
            "gcp",
            "gcp:compute/healthCheck:HealthCheck",
            lambda a: ("HTTPS", a["httpsHealthCheck"]["port"]) if "httpsHealthCheck" in a else a,
        ),
        (
            "alicloud",
            "alicloud:dns/monitorConfig:MonitorConfig",
            lambda a: (a["protocolType"], json.loads(a["monitorExtendInfo"])["port"]),
        ),
    ],
)
def test_dns_failover_health_checks_probe_the_tls_port(cloud: str, type_: str, check: Any) -> None:
    found = run(cloud).find(type_)
    assert found
    for reg in found:
        assert check(args(reg)) == ("HTTPS", 443)


def test_acme_settings_are_checked() -> None:
    cfg = load("aws", "us-east-1", None, {"acmeEmail": "ops@example.com"})
    assert (cfg.acme_email, cfg.plaintext) == ("ops@example.com", False)
    with pytest.raises(ConfigError) as bad_email:
        load("aws", "us-east-1", None, {"acmeEmail": "ops"})
    assert bad_email.value.key == "acmeEmail"
    with pytest.raises(ConfigError) as bad_server:
        load("aws", "us-east-1", None, {"acmeServer": "http://ca.example/dir"})
    assert bad_server.value.key == "acmeServer"
