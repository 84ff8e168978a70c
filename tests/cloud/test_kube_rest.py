"""KubeRest against tests/cloud/fake_kube_api.py: what goes on the wire, how credentials are
obtained (token, token file, client certificates, exec plugins), and how failures map to exit
codes. The fake is a few endpoints of the real API's shape, not a cluster: it proves the
requests and their handling, not what a real API server or controller does with them."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import socket
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.errors import ExitStatus, ImctlError
from cli.targets.cloud.kube import KubeApi
from cli.targets.cloud.kube_access import kube_for_region
from cli.targets.cloud.kube_rest import RESTARTED_AT, KubeConfig, KubeRest, run_exec_plugin
from cli.targets.cloud.outputs import CloudOutputs, RegionOutputs
from stacks import kubeconfig as stack_kubeconfig
from tests.cloud.fake_kube_api import FakeKubeApi
from tests.cloud.kube_fixtures import b64, make_pki, tls_api

NS, DEP = "im", "im-server"


@pytest.fixture
def api() -> Iterator[FakeKubeApi]:
    fake = FakeKubeApi()
    fake.add_deployment(NS, DEP, replicas=3)
    fake.add_hpa(NS, DEP)
    fake.add_secret(NS, "im-server", {"IM_ADMIN_TOKEN": base64.b64encode(b"old").decode()})
    fake.start()
    yield fake
    fake.stop()


def kubeconfig(server: str, user: dict[str, Any], **cluster: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
            "users": [{"name": "u", "user": user}],
        }
    )


def client(text: str, **kw: Any) -> KubeRest:
    kw.setdefault("poll_interval", 0.01)
    kw.setdefault("sleep", lambda s: None)
    kw.setdefault("env", {"PATH": os.environ.get("PATH", "")})
    return KubeRest.from_kubeconfig(text, **kw)


def error(fn: Any, *args: Any) -> ImctlError:
    with pytest.raises(ImctlError) as info:
        fn(*args)
    return info.value


def test_token_auth_and_every_call_on_the_wire(api: FakeKubeApi) -> None:
    rest = client(kubeconfig(api.url, {"token": "t0ken"}))
    kube: KubeApi = rest  # the protocol the cloud ops program against
    assert kube.get_replicas(NS, DEP) == (3, 3)

    kube.scale_deployment(NS, DEP, 5)
    kube.patch_hpa(NS, DEP, 5, None)
    kube.patch_hpa(NS, DEP, None, None)  # nothing to change: no request
    kube.patch_secret(NS, "im-server", {"IM_DATABASE_URL": "postgresql://new-host/im"})
    kube.restart_deployment(NS, DEP)

    patches = api.requests("PATCH")
    assert [p.path for p in patches] == [
        f"/apis/apps/v1/namespaces/{NS}/deployments/{DEP}/scale",
        f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/{DEP}",
        f"/api/v1/namespaces/{NS}/secrets/im-server",
        f"/apis/apps/v1/namespaces/{NS}/deployments/{DEP}",
    ]
    for p in patches:
        assert p.content_type == "application/merge-patch+json"
        assert p.query == {"fieldManager": ["imctl"]}
        assert p.authorization == "Bearer t0ken"
    assert patches[0].body == {"spec": {"replicas": 5}}
    assert patches[1].body == {"spec": {"minReplicas": 5}}  # max left as it was
    wire = patches[2].body["data"]["IM_DATABASE_URL"]
    assert base64.b64decode(wire) == b"postgresql://new-host/im"  # base64 on the wire
    stamp = patches[3].body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
    assert abs(dt.datetime.fromisoformat(stamp).timestamp() - dt.datetime.now().timestamp()) < 60

    assert api.hpas[(NS, DEP)]["spec"] == {"minReplicas": 5, "maxReplicas": 12}
    assert rest.get_secret(NS, "im-server") == {
        "IM_ADMIN_TOKEN": "old",
        "IM_DATABASE_URL": "postgresql://new-host/im",
    }
    assert api.deployments[(NS, DEP)]["metadata"]["generation"] == 3  # scale, then restart


def test_wait_ready_polls_until_the_rollout_is_complete(api: FakeKubeApi) -> None:
    api.ready_after = 4
    kube = client(kubeconfig(api.url, {"token": "t0ken"}))
    kube.scale_deployment(NS, DEP, 6)
    assert kube.get_replicas(NS, DEP) == (6, 3)  # mid-rollout: 3 old pods still ready
    gets_before = len(api.requests("GET"))
    kube.wait_ready(NS, DEP, timeout=10)
    assert len(api.requests("GET")) - gets_before == 3  # polled until rolled out
    assert kube.get_replicas(NS, DEP) == (6, 6)


def test_wait_ready_times_out_and_fails_on_a_progress_deadline(api: FakeKubeApi) -> None:
    api.stuck.add((NS, DEP))
    ticks = iter(range(0, 1000, 5))  # a clock that moves 5 s per look
    kube = client(kubeconfig(api.url, {"token": "t0ken"}), clock=lambda: float(next(ticks)))
    kube.scale_deployment(NS, DEP, 4)
    err = error(kube.wait_ready, NS, DEP, 30)
    assert err.status is ExitStatus.TIMEOUT and "3/4 ready, 0 updated" in err.message
    assert "rollout status" in err.hint

    api.deadline_exceeded.add((NS, DEP))
    err = error(kube.wait_ready, NS, DEP, 30)
    assert err.status is ExitStatus.RESOURCE_FAILURE and "progress deadline" in err.message


def test_api_errors_map_to_exit_codes(api: FakeKubeApi) -> None:
    err = error(client(kubeconfig(api.url, {"token": "wrong"})).get_replicas, NS, DEP)
    assert err.status is ExitStatus.AUTH

    kube = client(kubeconfig(api.url, {"token": "t0ken"}))
    err = error(kube.get_replicas, NS, "nope")
    assert err.status is ExitStatus.RESOURCE_FAILURE and '"nope" not found' in err.message

    slept: list[float] = []
    kube = client(kubeconfig(api.url, {"token": "t0ken"}), sleep=slept.append)
    api.fail_next = [503, 503]
    assert kube.get_replicas(NS, DEP) == (3, 3)  # retried through two 503s
    assert len(slept) == 2
    api.fail_next = [503, 503, 503]
    assert error(kube.get_replicas, NS, DEP).status is ExitStatus.RESOURCE_FAILURE

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    err = error(client(kubeconfig(dead, {"token": "t0ken"})).get_replicas, NS, DEP)
    assert err.status is ExitStatus.RESOURCE_FAILURE and "cannot reach" in err.message

    with pytest.raises(ImctlError, match="above max"):
        kube.patch_hpa(NS, DEP, 9, 3)


def _plugin(bin_dir: Path, name: str, log: Path, tokens: list[str], fail: bool = False) -> None:
    """A stand-in credential plugin: logs argv + KUBERNETES_EXEC_INFO, hands out ``tokens``
    in turn (one per run), each valid for an hour."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / name
    expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    script.write_text(
        f"#!{sys.executable} -I\n"
        "import json, os, sys\n"
        f"log = {str(log)!r}\n"
        "runs = open(log).read().count('\\n') if os.path.exists(log) else 0\n"
        "with open(log, 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'info': os.environ.get("
        "'KUBERNETES_EXEC_INFO'), 'extra': os.environ.get('EXTRA')}) + '\\n')\n"
        + ("sys.stderr.write('token expired, run aws sso login\\n'); sys.exit(1)\n" if fail else "")
        + f"tokens = {tokens!r}\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1',\n"
        "    'kind': 'ExecCredential',\n"
        f"    'status': {{'token': tokens[min(runs, len(tokens) - 1)],"
        f" 'expirationTimestamp': {expiry!r}}}}}))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_exec_plugin_from_the_eks_kubeconfig_the_stacks_export(
    api: FakeKubeApi, tmp_path: Path
) -> None:
    log = tmp_path / "aws-calls.jsonl"
    _plugin(tmp_path / "bin", "aws", log, ["t0ken", "t0ken-2"])
    text = stack_kubeconfig.eks("imctl-use1", api.url, "", "us-east-1")
    env = {"PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    kube = client(text, env=env)
    kube.get_replicas(NS, DEP)
    kube.scale_deployment(NS, DEP, 4)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 1  # the token is cached until it nears expiry
    assert calls[0]["argv"] == ["eks", "get-token", "--cluster-name", "imctl-use1",
                                "--region", "us-east-1"]  # fmt: skip
    info = json.loads(calls[0]["info"])
    assert info["kind"] == "ExecCredential" and info["spec"]["interactive"] is False

    api.tokens = {"t0ken-2"}  # the cluster revoked the first token early
    assert kube.get_replicas(NS, DEP)[0] == 4
    assert len(log.read_text().splitlines()) == 2  # one refresh after the 401
    assert api.requests()[-1].authorization == "Bearer t0ken-2"


def test_exec_plugin_missing_or_failing(api: FakeKubeApi, tmp_path: Path) -> None:
    text = stack_kubeconfig.eks("imctl-use1", api.url, "", "us-east-1")
    err = error(client(text, env={"PATH": str(tmp_path)}).get_replicas, NS, DEP)
    assert err.status is ExitStatus.PRECONDITION and "AWS CLI" in err.hint

    _plugin(tmp_path / "bin", "aws", tmp_path / "log", [], fail=True)
    err = error(client(text, env={"PATH": str(tmp_path / "bin")}).get_replicas, NS, DEP)
    assert err.status is ExitStatus.AUTH and "run aws sso login" in err.message


def test_exec_plugin_gets_cluster_info_and_spec_env(tmp_path: Path) -> None:
    log = tmp_path / "gke.jsonl"
    _plugin(tmp_path / "bin", "gke-gcloud-auth-plugin", log, ["ya29.token"])
    text = stack_kubeconfig.gke("c1", "10.0.0.2", "Q0E=", "europe-west1")
    config = KubeConfig.parse(text)
    assert config.server == "https://10.0.0.2" and config.ca_pem == "CA"
    spec = {**(config.exec_spec or {}), "env": [{"name": "EXTRA", "value": "1"}]}
    cred = run_exec_plugin(spec, config.cluster, {"PATH": str(tmp_path / "bin")})
    assert cred.token == "ya29.token" and cred.expires_at is not None
    call = json.loads(log.read_text())
    assert json.loads(call["info"])["spec"]["cluster"]["server"] == "https://10.0.0.2"
    assert call["extra"] == "1"


def test_yaml_kubeconfig_contexts_token_file_and_a_region_context(
    api: FakeKubeApi, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text("t0ken\n")
    config = tmp_path / "config"
    config.write_text(
        f"""apiVersion: v1
kind: Config
current-context: us-east-1
clusters:
- name: east
  cluster: {{server: "http://127.0.0.1:1"}}
- name: west
  cluster: {{server: "{api.url}"}}
contexts:
- name: us-east-1
  context: {{cluster: east, user: nobody}}
- name: us-west-2
  context: {{cluster: west, user: ci}}
users:
- name: nobody
  user: {{token: x}}
- name: ci
  user: {{tokenFile: token}}
"""
    )
    kube = KubeRest.from_file(config, context="us-west-2", sleep=lambda s: None)
    assert kube.get_replicas(NS, DEP) == (3, 3)  # the token file is relative to the config

    region = RegionOutputs("us-west-2", "c", "ng", "db", "lb.example")  # no kubeconfig output
    outputs = CloudOutputs("aws", "us-west-2", None, {"us-west-2": region}, "Z", "d.example", "b")
    env = {"KUBECONFIG": str(config)}
    kube = kube_for_region(outputs, "us-west-2", env, sleep=lambda s: None)
    assert kube.get_replicas(NS, DEP) == (3, 3)

    with pytest.raises(ImctlError, match="no context named 'eu-west-1'"):
        KubeRest.from_file(config, context="eu-west-1")


# --- TLS: CA data and client certificates ----------------------------------------------------


def test_mutual_tls_with_ca_data_and_client_certificate(tmp_path: Path) -> None:
    pki = make_pki()
    temp_root = Path(tempfile.gettempdir())
    before = set(temp_root.glob("imctl-kube-*"))
    with tls_api(FakeKubeApi(tokens=set()), tmp_path, pki, client_certs=True) as api:
        user = {
            "client-certificate-data": b64(pki["user"]),
            "client-key-data": b64(pki["user_key"]),
        }
        text = kubeconfig(api.url, user, **{"certificate-authority-data": b64(pki["ca"])})
        kube = client(text)
        assert kube.get_replicas(NS, DEP) == (2, 2)
        kube.scale_deployment(NS, DEP, 3)
        assert api.requests("PATCH")[0].authorization is None  # the certificate authenticated

        untrusted = client(kubeconfig(api.url, user), retries=1)
        err = error(untrusted.get_replicas, NS, DEP)
        assert err.status is ExitStatus.RESOURCE_FAILURE and "does not trust" in err.message

        insecure = client(kubeconfig(api.url, user, **{"insecure-skip-tls-verify": True}))
        assert insecure.get_replicas(NS, DEP)[0] == 3
        assert set(temp_root.glob("imctl-kube-*")) <= before  # the key files were removed
