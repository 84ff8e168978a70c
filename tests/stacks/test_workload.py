"""The shared Kubernetes workload, checked on every cloud's run: one implementation, so the same
assertions must hold everywhere."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.config import PRESTOP_SLEEP_SECONDS
from stacks.plan import PlanRun, is_secret
from stacks.workload.monitoring import METRICS
from stacks.workload.nats import NATS_REPLICAS
from tests.stacks.helpers import REGIONS, args, in_region, k8s, provider_of, run, single_region_run

CLOUDS = ("aws", "gcp", "alicloud")
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


@pytest.fixture(scope="module", params=CLOUDS)
def plan(request: pytest.FixtureRequest) -> PlanRun:
    return run(request.param)


def _regions(plan: PlanRun) -> tuple[str, str]:
    primary, standby = REGIONS[plan.config.cloud]
    return primary, standby


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_every_region_gets_its_own_kubernetes_provider(plan: PlanRun) -> None:
    for region in _regions(plan):
        deployment = k8s(plan, DEPLOYMENT, "im-server", region)
        provider = provider_of(plan, deployment)
        assert provider.type == "pulumi:providers:kubernetes"
        assert provider.name == f"k8s-{region}"
        assert is_secret(provider.inputs["kubeconfig"])


def test_server_command_probes_and_resources(plan: PlanRun) -> None:
    for region in _regions(plan):
        container = _container(args(k8s(plan, DEPLOYMENT, "im-server", region)))
        assert container["command"] + container["args"] == [
            "im-server",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "8080",
        ]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"]["cpu"]
        assert "@sha256:" in container["image"]  # the stack's build, pinned (test_image.py)
        assert container["securityContext"]["runAsNonRoot"] is True


def test_drain_grace_is_the_same_in_the_pod_and_the_server(plan: PlanRun) -> None:
    cfg = plan.config
    for region in _regions(plan):
        deployment = args(k8s(plan, DEPLOYMENT, "im-server", region))
        pod = deployment["spec"]["template"]["spec"]
        container = _container(deployment)
        env = _env(container)
        assert env["IM_DRAIN_GRACE_SECONDS"] == str(cfg.drain_grace_seconds)
        prestop = container["lifecycle"]["preStop"]["exec"]["command"]
        assert prestop == ["sleep", str(PRESTOP_SLEEP_SECONDS)]
        grace = pod["terminationGracePeriodSeconds"]
        assert grace == cfg.termination_grace_seconds
        assert grace > PRESTOP_SLEEP_SECONDS + int(env["IM_DRAIN_GRACE_SECONDS"])


def test_server_env_comes_from_the_secret_and_the_secret_stays_secret(plan: PlanRun) -> None:
    for region in _regions(plan):
        env = _env(_container(args(k8s(plan, DEPLOYMENT, "im-server", region))))
        for name, key in (
            ("IM_DATABASE_URL", "database-url"),
            ("IM_JWT_SECRET", "jwt-secret"),
            ("IM_ADMIN_TOKEN", "admin-token"),
            ("IM_NATS_USER", "nats-user"),
            ("IM_NATS_PASSWORD", "nats-password"),
        ):
            assert env[name] == {"secretKeyRef": {"name": "im-server", "key": key}}
        assert env["IM_NATS_URL"] == f"nats://nats.{plan.config.namespace}.svc.cluster.local:4222"
        secret = k8s(plan, "kubernetes:core/v1:Secret", "im-server", region)
        # Secretness travels with the whole property: none of the values is sent in clear.
        assert is_secret(secret.inputs["stringData"])
        assert set(args(secret)["stringData"]) == {
            "database-url",
            "jwt-secret",
            "admin-token",
            "nats-user",
            "nats-password",
        }
        url = args(secret)["stringData"]["database-url"]
        assert url.startswith("postgresql://im:") and url.endswith("/im?sslmode=require")
        assert plan.outputs["regions"][region]["db_endpoint"] in url


def test_replicas_hpa_and_pdb_follow_config(plan: PlanRun) -> None:
    cfg = plan.config
    primary, standby = _regions(plan)
    replicas = {
        r: args(k8s(plan, DEPLOYMENT, "im-server", r))["spec"]["replicas"]
        for r in (primary, standby)
    }
    # The standby idles at zero until failover (its database is a read-only replica).
    assert replicas == {primary: cfg.replicas, standby: 0}
    for region in (primary, standby):
        hpa = args(
            k8s(plan, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "im-server", region)
        )
        spec = hpa["spec"]
        assert (spec["minReplicas"], spec["maxReplicas"]) == (cfg.hpa_min, cfg.hpa_max)
        assert spec["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "im-server",
        }
        [metric] = spec["metrics"]
        assert metric["resource"]["target"]["averageUtilization"] == cfg.hpa_cpu_percent
        pdb = args(k8s(plan, "kubernetes:policy/v1:PodDisruptionBudget", "im-server", region))
        assert pdb["spec"]["maxUnavailable"] == cfg.pdb_max_unavailable


def test_migrations_run_only_where_the_database_is_writable(plan: PlanRun) -> None:
    primary, standby = _regions(plan)
    [job] = in_region(plan, "kubernetes:batch/v1:Job", primary)
    assert not in_region(plan, "kubernetes:batch/v1:Job", standby)
    [container] = args(job)["spec"]["template"]["spec"]["containers"]
    assert container["command"] + container["args"] == ["im-server", "migrate"]
    # The Deployment waits for the Job, so a new image rolls out only after its migration.
    deployment = k8s(plan, DEPLOYMENT, "im-server", primary)
    assert job.urn in deployment.dependencies


def test_pods_spread_and_are_scraped(plan: PlanRun) -> None:
    for region in _regions(plan):
        template = args(k8s(plan, DEPLOYMENT, "im-server", region))["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == "8080"
        spec = template["spec"]
        preferred = spec["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ]
        assert preferred[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        assert spec["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"


def test_load_balancer_service_and_endpoint_output(plan: PlanRun) -> None:
    for region in _regions(plan):
        service = k8s(plan, "kubernetes:core/v1:Service", "im-server", region)
        spec = args(service)["spec"]
        assert spec["type"] == "LoadBalancer"
        # TLS (issue 13): 443 only; plain 80 with plaintext=true (tests/stacks/test_tls.py).
        assert spec["ports"] == [
            {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}
        ]
        [ingress] = service.state["status"]["loadBalancer"]["ingress"]
        # The Output the DNS records and the stack outputs use is the Service's address.
        assert plan.outputs["regions"][region]["endpoint"] in ingress.values()


def test_nats_is_a_three_node_cluster(plan: PlanRun) -> None:
    ns = plan.config.namespace
    for region in _regions(plan):
        sts = args(k8s(plan, "kubernetes:apps/v1:StatefulSet", "nats", region))
        assert sts["spec"]["replicas"] == NATS_REPLICAS == 3
        assert sts["spec"]["serviceName"] == "nats-headless"
        conf = args(k8s(plan, "kubernetes:core/v1:Secret", "nats", region))["stringData"]
        [routes] = [a for a in conf["nats.conf"].splitlines() if a.strip().startswith("routes:")]
        assert routes.count("nats://") == 3
        assert f"nats-2.nats-headless.{ns}.svc.cluster.local:6222" in routes
        headless = args(k8s(plan, "kubernetes:core/v1:Service", "nats-headless", region))
        assert headless["spec"]["clusterIP"] == "None"
        k8s(plan, "kubernetes:core/v1:Service", "nats", region)


def test_network_policies_deny_by_default(plan: PlanRun) -> None:
    for region in _regions(plan):
        deny = args(
            k8s(
                plan,
                "kubernetes:networking.k8s.io/v1:NetworkPolicy",
                "default-deny-ingress",
                region,
            )
        )
        assert deny["spec"]["podSelector"] == {} or "matchLabels" not in deny["spec"]["podSelector"]
        assert deny["spec"]["policyTypes"] == ["Ingress"]
        nats = args(k8s(plan, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "nats", region))
        client_rule = nats["spec"]["ingress"][0]
        assert client_rule["ports"] == [{"port": 4222, "protocol": "TCP"}]
        selector = client_rule["from"][0]["podSelector"]["matchExpressions"][0]
        assert selector["values"] == ["im-server"]


def test_dashboard_and_alert_rules(plan: PlanRun) -> None:
    for region in _regions(plan):
        dashboard = args(k8s(plan, "kubernetes:core/v1:ConfigMap", "im-server-dashboard", region))
        assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
        model = json.loads(dashboard["data"]["im-server.json"])
        queries = " ".join(t["expr"] for p in model["panels"] for t in p["targets"])
        assert all(metric in queries for metric in METRICS)
        rules = args(
            k8s(plan, "kubernetes:monitoring.coreos.com/v1:PrometheusRule", "im-server", region)
        )
        alerts = {r["alert"]: r["expr"] for g in rules["spec"]["groups"] for r in g["rules"]}
        assert set(alerts) >= {
            "ImServerNodeDown",
            "ImServerAckLatencyHigh",
            "ImServerDatabaseErrors",
            "ImDatabaseReplicationLag",
            "ImServerConnectionDrop",
        }
        assert "im_ack_latency_seconds_bucket" in alerts["ImServerAckLatencyHigh"]
        assert "im_db_errors_total" in alerts["ImServerDatabaseErrors"]
        assert "im_connections" in alerts["ImServerConnectionDrop"]
        k8s(plan, "kubernetes:monitoring.coreos.com/v1:PodMonitor", "im-server", region)


def test_monitoring_off_leaves_only_the_dashboard() -> None:
    plan = single_region_run("alicloud")
    assert not plan.find("kubernetes:monitoring.coreos.com/v1:PrometheusRule")
    assert not plan.find("kubernetes:monitoring.coreos.com/v1:PodMonitor")
    assert len(plan.find("kubernetes:core/v1:ConfigMap")) == 1
