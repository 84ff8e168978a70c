"""The cloud bus is authenticated (issue 12), checked on the objects each cloud's program renders
under Pulumi's mocks: the NATS config and its Secret, the pods that use them, and who can reach
the monitoring port. Whether a real cluster accepts them is not proven here (docs/security.md);
the rendered nats.conf is, however, parsed by the real nats-server binary."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from cli.targets.local.nats import find_nats_server
from stacks.plan import PlanRun, is_secret
from stacks.workload.nats import MONITOR_PORT
from tests.stacks.helpers import REGIONS, args, k8s, run

CLOUDS = ("aws", "gcp", "alicloud")
PASSWORD = "random:index/randomPassword:RandomPassword"


@pytest.fixture(scope="module", params=CLOUDS)
def plan(request: pytest.FixtureRequest) -> PlanRun:
    return run(request.param)


def _random(plan: PlanRun, suffix: str) -> dict[str, Any]:
    [reg] = [r for r in plan.find(PASSWORD) if r.name.endswith(suffix)]
    state: dict[str, Any] = reg.state
    return state


def _secret_values(plan: PlanRun) -> list[str]:
    return [str(r.state["result"]) for r in plan.find(PASSWORD)]


def _nats_conf(plan: PlanRun, region: str) -> str:
    secret = k8s(plan, "kubernetes:core/v1:Secret", "nats", region)
    assert is_secret(secret.inputs["stringData"])
    data = args(secret)["stringData"]
    assert set(data) == {"nats.conf"}
    conf: str = data["nats.conf"]
    return conf


def _pod(plan: PlanRun, region: str) -> dict[str, Any]:
    sts = args(k8s(plan, "kubernetes:apps/v1:StatefulSet", "nats", region))
    pod: dict[str, Any] = sts["spec"]["template"]["spec"]
    return pod


def test_nats_config_requires_a_login_for_clients_and_routes(plan: PlanRun) -> None:
    client = _random(plan, "-nats-password")
    route = _random(plan, "-nats-route-password")
    for region in REGIONS[plan.config.cloud]:
        conf = _nats_conf(plan, region)
        top, cluster = conf.split("cluster {", 1)
        assert f'authorization {{\n  user: "im"\n  password: "{client["bcryptHash"]}"\n}}' in top
        # Only the hash: the NATS pods never hold im-server's password.
        assert client["result"] not in conf
        assert f'user: "route"\n    password: "{route["result"]}"' in cluster
        routes = next(line for line in cluster.splitlines() if "routes:" in line)
        assert routes.count(f"nats://route:{route['result']}@nats-") == 3


def test_rendered_nats_config_is_valid_for_the_real_nats_server(
    plan: PlanRun, tmp_path: Path
) -> None:
    primary, _ = REGIONS[plan.config.cloud]
    path = tmp_path / "nats.conf"
    path.write_text(_nats_conf(plan, primary))
    checked = subprocess.run(
        [str(find_nats_server()), "-t", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_nats_pods_read_the_config_from_the_secret_and_hold_no_token(plan: PlanRun) -> None:
    secrets = _secret_values(plan)
    for region in REGIONS[plan.config.cloud]:
        pod = _pod(plan, region)
        [container] = pod["containers"]
        assert container["args"] == ["--config=/etc/nats/nats.conf", "--name=$(POD_NAME)"]
        spec_text = repr(container)  # args, env, probes: no secret anywhere in the pod spec
        assert not [s for s in secrets if s in spec_text]
        assert [e["name"] for e in container["env"]] == ["POD_NAME"]
        [mount] = container["volumeMounts"]
        assert (mount["mountPath"], mount["readOnly"]) == ("/etc/nats", True)
        [volume] = pod["volumes"]
        assert volume["name"] == mount["name"]
        assert volume["secret"] == {
            "secretName": "nats",
            "items": [{"key": "nats.conf", "path": "nats.conf"}],
            "defaultMode": 0o440,  # nobody but root and the pod's fsGroup
        }
        assert pod["securityContext"]["fsGroup"] == container["securityContext"]["runAsUser"]
        assert pod["automountServiceAccountToken"] is False


def test_im_server_logs_in_with_env_from_its_secret(plan: PlanRun) -> None:
    client = _random(plan, "-nats-password")
    secrets = _secret_values(plan)
    for region in REGIONS[plan.config.cloud]:
        deployment = args(k8s(plan, "kubernetes:apps/v1:Deployment", "im-server", region))
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        for name, key in (("IM_NATS_USER", "nats-user"), ("IM_NATS_PASSWORD", "nats-password")):
            assert env[name] == {
                "name": name,
                "valueFrom": {"secretKeyRef": {"name": "im-server", "key": key}},
            }
        assert "@" not in env["IM_NATS_URL"]["value"]
        assert not [s for s in secrets if s in repr(container)]
        secret = k8s(plan, "kubernetes:core/v1:Secret", "im-server", region)
        assert is_secret(secret.inputs["stringData"])
        data = args(secret)["stringData"]
        assert (data["nats-user"], data["nats-password"]) == ("im", client["result"])


def test_monitoring_port_is_published_by_no_service_and_opened_by_no_policy(
    plan: PlanRun,
) -> None:
    for region in REGIONS[plan.config.cloud]:
        for svc in ("nats", "nats-headless"):
            ports = args(k8s(plan, "kubernetes:core/v1:Service", svc, region))["spec"]["ports"]
            assert MONITOR_PORT not in [p["port"] for p in ports]
        policy = args(k8s(plan, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "nats", region))
        opened = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
        assert sorted(opened) == [4222, 6222]
        # The kubelet still probes it (from the node, which policies do not filter).
        [container] = _pod(plan, region)["containers"]
        assert container["readinessProbe"]["httpGet"]["port"] == MONITOR_PORT
