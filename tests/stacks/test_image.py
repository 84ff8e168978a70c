"""The bundled image: a registry in each site's region, one build pushed to all of them, and
workloads that run the pushed digest (issue 13: nothing published the default image)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stacks import build_context
from stacks.plan import PlanRun, Registration, is_secret, run_program
from tests.stacks.helpers import REGIONS, args, config, in_region, k8s, only, run

ROOT = Path(__file__).resolve().parents[2]
CLOUDS = ("aws", "gcp", "alicloud")
REPOSITORY_TYPE = {
    "aws": "aws:ecr/repository:Repository",
    "gcp": "gcp:artifactregistry/repository:Repository",
    "alicloud": "alicloud:cr/repo:Repo",
}
IMAGE = "docker-build:index:Image"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def _pod_images(plan: PlanRun, region: str) -> dict[str, tuple[str, object]]:
    """Container image and pull secrets of the im-server Deployment and, where it runs, the
    migration Job."""
    found = {}
    deployment = k8s(plan, "kubernetes:apps/v1:Deployment", "im-server", region)
    jobs = in_region(plan, "kubernetes:batch/v1:Job", region)
    for reg in [deployment, *jobs]:
        spec = args(reg)["spec"]["template"]["spec"]
        found[reg.type] = (spec["containers"][0]["image"], spec.get("imagePullSecrets"))
    return found


def _build(plan: PlanRun) -> Registration:
    return only(plan, IMAGE)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_each_site_has_a_private_repository(cloud: str) -> None:
    plan = run(cloud)
    for region in REGIONS[cloud]:
        repo = args(only(plan, REPOSITORY_TYPE[cloud], region))
        if cloud == "aws":
            assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
            assert repo["forceDelete"] is True  # destroy must not stop at a non-empty repo
        elif cloud == "gcp":
            assert repo["format"] == "DOCKER" and repo["location"] == region
            reader = args(
                only(plan, "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember", region)
            )
            assert reader["role"] == "roles/artifactregistry.reader"
            assert re.fullmatch(
                r"serviceAccount:\d+-compute@developer\.gserviceaccount\.com", reader["member"]
            )
        else:
            assert repo["repoType"] == "PRIVATE"
            namespace = args(only(plan, "alicloud:cr/namespace:Namespace", region))
            assert namespace["defaultVisibility"] == "PRIVATE" and len(namespace["name"]) <= 30


@pytest.mark.parametrize("cloud", CLOUDS)
def test_one_build_pushes_the_checkout_for_the_nodes_platform(cloud: str) -> None:
    plan = run(cloud)
    build = args(_build(plan))
    assert build["push"] is True
    assert build["platforms"] == ["linux/amd64"]
    context = Path(build["context"]["location"])
    assert build["dockerfile"]["location"] == str(context / "Dockerfile")
    assert (context / "Dockerfile").read_text() == (ROOT / "Dockerfile").read_text()
    assert (context / "im_server").is_dir() and (context / "pyproject.toml").is_file()

    version = build_context.version()
    revision = build_context.git_revision(ROOT)
    for region in REGIONS[cloud]:
        repo_tags = [t for t in build["tags"] if region in t]
        assert any(t.endswith(f":{version}") for t in repo_tags), build["tags"]
        if revision is not None:  # a git checkout: the commit is a tag too
            assert any(t.endswith(f":git-{revision}") for t in repo_tags), build["tags"]


@pytest.mark.parametrize("cloud", CLOUDS)
def test_registry_logins_are_present_and_secret(cloud: str) -> None:
    build = _build(run(cloud))
    # The engine stores a secret anywhere in the list as the list being secret.
    assert is_secret(build.inputs["registries"])
    registries = args(build)["registries"]
    assert len(registries) == len(REGIONS[cloud])
    pushed_hosts = {t.split("/", 1)[0] for t in args(build)["tags"]}
    assert {r["address"] for r in registries} == pushed_hosts
    assert all(r["username"] is not None and "password" in r for r in registries)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_workloads_run_the_pushed_digest_from_their_own_region(cloud: str) -> None:
    plan = run(cloud)
    build = _build(plan)
    digest = build.state["digest"]
    for region in REGIONS[cloud]:
        images = _pod_images(plan, region)
        for kind, (image, _) in images.items():
            assert DIGEST.search(image), (kind, image)
            assert image.endswith(f"@{digest}")
            # Each cluster pulls in-region, so the standby starts while the primary is down.
            assert region in image.split("@")[0], (kind, image)
    primary = REGIONS[cloud][0]
    assert "kubernetes:batch/v1:Job" in _pod_images(plan, primary)


def test_alicloud_pods_pull_with_a_docker_registry_secret_made_from_the_acr_login() -> None:
    plan = run("alicloud")
    for region in REGIONS["alicloud"]:
        secret = k8s(plan, "kubernetes:core/v1:Secret", "im-server-registry", region)
        assert args(secret)["type"] == "kubernetes.io/dockerconfigjson"
        assert is_secret(secret.inputs["stringData"])
        assert (
            f"registry-vpc.{region}.aliyuncs.com" in args(secret)["stringData"][".dockerconfigjson"]
        )
        for image, pull_secrets in _pod_images(plan, region).values():
            assert pull_secrets == [{"name": "im-server-registry"}]
            assert image.startswith(f"registry-vpc.{region}.aliyuncs.com/")


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_node_identity_pulls_on_aws_and_gcp(cloud: str) -> None:
    plan = run(cloud)
    for region in REGIONS[cloud]:
        for _, pull_secrets in _pod_images(plan, region).values():
            assert not pull_secrets


@pytest.mark.parametrize("cloud", CLOUDS)
def test_a_given_image_replaces_registry_and_build(cloud: str) -> None:
    ref = "registry.example.com/team/im-server@sha256:" + "ab" * 32
    plan = run_program(
        config(cloud, standby=False, monitoring="false", image=ref, imagePullSecret="team-pull")
    )
    assert not plan.find(IMAGE)
    assert not plan.find(REPOSITORY_TYPE[cloud])
    region = REGIONS[cloud][0]
    for image, pull_secrets in _pod_images(plan, region).values():
        assert image == ref
        assert pull_secrets == [{"name": "team-pull"}]
