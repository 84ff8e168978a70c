"""``imctl doctor`` on a cloud target: the Pulumi CLI, the provider packages (looked up with
find_spec, never imported), credentials, Docker buildx for the image build, kubectl (optional),
and the stack's Kubernetes version against the provider's support calendar."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from cli.errors import PrerequisiteMissing
from cli.prereqs import Check

_PULUMI_FIX = (
    "install the Pulumi CLI: curl -fsSL https://get.pulumi.com | sh (needs internet; on an "
    "offline host run it on a connected machine and copy ~/.pulumi/bin over), then put "
    "~/.pulumi/bin on PATH"
)
_PACKAGES = {
    "aws": (
        "pulumi",
        "pulumi_aws",
        "pulumi_kubernetes",
        "pulumi_random",
        "pulumi_docker_build",
        "boto3",
    ),
    "gcp": (
        "pulumi",
        "pulumi_gcp",
        "pulumi_kubernetes",
        "pulumi_random",
        "pulumi_docker_build",
        "googleapiclient",
    ),
    "alicloud": (
        "pulumi",
        "pulumi_alicloud",
        "pulumi_kubernetes",
        "pulumi_random",
        "pulumi_docker_build",
    ),
}


# The cloud's own API client, which the day-2 verbs need even with --outputs (no Pulumi).
_SDK = {"aws": ("boto3",), "gcp": ("googleapiclient",), "alicloud": ("alibabacloud_tea_openapi",)}


def require_packages(cloud: str, *, pulumi: bool) -> None:
    """Exit 10 naming the extra to install, before a cloud verb reaches a package that only
    ``imctl[<cloud>]`` brings (``make deploy`` installs the local target's alone). ``pulumi``:
    the verb runs Pulumi too, not only the cloud's API."""
    wanted = [*(_PACKAGES[cloud] if pulumi else ()), *_SDK[cloud]]
    missing = [m for m in dict.fromkeys(wanted) if not _installed(m)]
    if missing:
        raise PrerequisiteMissing(
            f"the {cloud} target needs Python packages that are not installed:"
            f" {', '.join(missing)}",
            f"pip install 'imctl[{cloud}]' (or 'imctl[all]'); `imctl doctor --cloud {cloud}`"
            " checks the rest",
        )


def check_pulumi(environ: Mapping[str, str]) -> Check:
    found = shutil.which("pulumi", path=environ.get("PATH"))
    if found:
        return Check("pulumi_cli", True, f"pulumi at {found}", _PULUMI_FIX)
    home = environ.get("HOME")
    installed = Path(home, ".pulumi", "bin", "pulumi") if home else None
    if installed is not None and installed.is_file():
        return Check(
            "pulumi_cli",
            False,
            f"pulumi is installed at {installed} but not on PATH",
            f'export PATH="{installed.parent}:$PATH"',
        )
    return Check("pulumi_cli", False, "pulumi CLI not found on PATH", _PULUMI_FIX)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_packages(cloud: str) -> Check:
    missing = [m for m in _PACKAGES[cloud] if not _installed(m)]
    fix = f"pip install 'imctl[{cloud}]'"
    if missing:
        return Check(
            f"{cloud}_packages", False, f"missing Python packages: {', '.join(missing)}", fix
        )
    return Check(f"{cloud}_packages", True, f"{', '.join(_PACKAGES[cloud])} installed", fix)


def _first_file(*candidates: Path | None) -> Path | None:
    return next((p for p in candidates if p is not None and p.is_file()), None)


def check_credentials(cloud: str, environ: Mapping[str, str]) -> Check:
    home = Path(environ["HOME"]) if environ.get("HOME") else None
    name = f"{cloud}_credentials"
    if cloud == "aws":
        found = next(
            (
                var
                for var in (
                    "AWS_ACCESS_KEY_ID",
                    "AWS_PROFILE",
                    "AWS_WEB_IDENTITY_TOKEN_FILE",
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                )
                if environ.get(var)
            ),
            None,
        )
        aws_dir = home / ".aws" if home else None
        if found is None and aws_dir is not None and aws_dir.is_dir():
            found = str(aws_dir)
        return Check(
            name,
            found is not None,
            f"AWS credentials from {found}" if found else "no AWS credentials found",
            "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run `aws configure` "
            "(an EC2 instance profile is not detected here)",
        )
    if cloud == "gcp":
        config = environ.get("CLOUDSDK_CONFIG")
        adc_dir = Path(config) if config else (home / ".config" / "gcloud" if home else None)
        explicit = environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        found_file = _first_file(
            Path(explicit) if explicit else None,
            adc_dir / "application_default_credentials.json" if adc_dir else None,
        )
        detail = (
            f"GCP credentials from {found_file}"
            if found_file
            else "GOOGLE_CREDENTIALS is set"
            if environ.get("GOOGLE_CREDENTIALS")
            else f"GOOGLE_APPLICATION_CREDENTIALS points at a missing file: {explicit}"
            if explicit
            else "no GCP application default credentials found"
        )
        return Check(
            name,
            found_file is not None or bool(environ.get("GOOGLE_CREDENTIALS")),
            detail,
            "run `gcloud auth application-default login`, or set "
            "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file",
        )
    found_var = next(
        (v for v in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALICLOUD_ACCESS_KEY") if environ.get(v)), None
    )
    return Check(
        name,
        found_var is not None,
        f"Alibaba Cloud credentials from ${found_var}" if found_var else "no Alibaba credentials",
        "export ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    )


def check_kubectl(environ: Mapping[str, str]) -> Check:
    found = shutil.which("kubectl", path=environ.get("PATH"))
    return Check(
        "kubectl",
        found is not None,
        f"kubectl at {found}" if found else "kubectl not found (optional: imctl does not need it)",
        "install kubectl to inspect the clusters by hand: https://kubernetes.io/docs/tasks/tools/",
        required=False,
    )


_DOCKER_FIX = (
    "install Docker with the buildx plugin (Docker Desktop has both; on Linux: the docker-ce and "
    "docker-buildx-plugin packages) and start the daemon; or skip the build and run an image "
    "you publish: imctl deploy --set image=<registry>/im-server@sha256:..."
)


@dataclass(frozen=True)
class StackSettings:
    """What doctor needs of the stack's config: its Kubernetes version ("" when unset) and the
    image it runs (None: the deploy builds one)."""

    kubernetes_version: str = ""
    image: str | None = None


def stack_settings(home: Path, environ: Mapping[str, str], stack: str) -> StackSettings:
    from cli.engine import stack_yaml  # standard library only: no Pulumi

    values = stack_yaml.read(home, environ, stack)
    return StackSettings(values.get("kubernetesVersion", ""), values.get("image") or None)


def check_kubernetes_version(cloud: str, configured: str, today: date) -> Check:
    """Past standard support: a warning; past end of life: a failure (deploy would refuse)."""
    from stacks import k8s_support

    version = configured or k8s_support.CALENDARS[cloud].default
    where = "configured" if configured else "default"
    if not k8s_support.is_minor(version):
        return Check(
            "kubernetes_version",
            False,
            f"kubernetesVersion {version!r} is not a minor version",
            "imctl deploy --set kubernetesVersion=1.NN",
        )
    verdict = k8s_support.verdict(cloud, version, today)
    fix = f"imctl deploy --set kubernetesVersion=... ({verdict.hint})" if verdict.hint else ""
    return Check(
        "kubernetes_version",
        verdict.level == "ok",
        f"{where} version: {verdict.message}",
        fix,
        required=verdict.level == "refuse",
    )


def check_docker_buildx(
    environ: Mapping[str, str],
    run_cmd: Callable[[list[str]], subprocess.CompletedProcess[str]] | None = None,
) -> Check:
    """The deploy builds im-server with buildx (pulumi-docker-build talks to the daemon)."""
    docker = shutil.which("docker", path=environ.get("PATH"))
    if docker is None:
        return Check("docker_buildx", False, "docker not found on PATH", _DOCKER_FIX)

    def default_run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)

    try:
        done = (run_cmd or default_run)([docker, "buildx", "version"])
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("docker_buildx", False, f"docker buildx version failed: {exc}", _DOCKER_FIX)
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        detail = why[0] if why else f"exit {done.returncode}"
        return Check("docker_buildx", False, f"docker buildx is missing: {detail}", _DOCKER_FIX)
    return Check("docker_buildx", True, done.stdout.strip() or "docker buildx found", _DOCKER_FIX)


def cloud_checks(
    cloud: str,
    environ: Mapping[str, str],
    settings: StackSettings = StackSettings(),
    today: date | None = None,
) -> list[Check]:
    checks = [
        check_pulumi(environ),
        check_packages(cloud),
        check_credentials(cloud, environ),
    ]
    # Only a stack that builds its image needs Docker; one given image=REF pulls it as is.
    if settings.image is None:
        checks.append(check_docker_buildx(environ))
    return [
        *checks,
        check_kubectl(environ),
        check_kubernetes_version(cloud, settings.kubernetes_version, today or date.today()),
    ]
