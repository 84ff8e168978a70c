"""imctl doctor: are the prerequisites for a target in place? Each failed check says how to fix it.

Read-only and offline: nothing is installed, imported (provider SDKs are only looked up with
find_spec) or contacted. Exit 10 when a required check fails; optional ones only warn.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import typer

from cli.context import Context
from cli.errors import ExitStatus, ImctlError
from cli.options import Cloud, NoColor, Output, Stack, Verbose, Yes, make_context
from cli.runner import run

DEFAULT_PORT = 8700
MIN_FREE_BYTES = 1 << 30
MIN_PYTHON = (3, 11)
PG_SYSTEM_USER = "imctl-pg"  # keep in step with cli.targets.local.postgres (not imported: psutil)
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


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


@dataclass
class DoctorResult:
    cloud: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if c.required)

    @property
    def exit_status(self) -> ExitStatus:
        return ExitStatus.OK if self.ok else ExitStatus.PRECONDITION

    def to_json(self) -> dict[str, Any]:
        return {"cloud": self.cloud, "ok": self.ok, "checks": [asdict(c) for c in self.checks]}


# --- checks common to every target ----------------------------------------------------------


def check_python() -> Check:
    found = ".".join(map(str, sys.version_info[:3]))
    return Check(
        "python",
        sys.version_info[:2] >= MIN_PYTHON,
        f"Python {found} at {sys.executable}",
        f"use Python >= {'.'.join(map(str, MIN_PYTHON))} (e.g. python3.11 -m venv .venv)",
    )


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_home_writable(home: Path) -> Check:
    fix = f"make {home} writable for this user, or point IMCTL_HOME at a writable directory"
    if home.is_dir():
        try:  # a real write: os.access is wrong for root, read-only mounts and ACLs
            with tempfile.NamedTemporaryFile(dir=home, prefix=".doctor-"):
                pass
        except OSError as exc:
            return Check("imctl_home", False, f"{home} is not writable: {exc.strerror}", fix)
        return Check("imctl_home", True, f"{home} is writable", fix)
    parent = _existing_ancestor(home)
    if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
        return Check("imctl_home", True, f"{home} does not exist yet; {parent} is writable", fix)
    return Check("imctl_home", False, f"{home} cannot be created under {parent}", fix)


def check_disk(home: Path) -> Check:
    where = _existing_ancestor(home)
    free = shutil.disk_usage(where).free
    return Check(
        "disk_space",
        free >= MIN_FREE_BYTES,
        f"{free / (1 << 30):.1f} GiB free at {where} (need >= {MIN_FREE_BYTES >> 30} GiB)",
        "free some space there, or point IMCTL_HOME at a larger disk",
    )


# --- local target ---------------------------------------------------------------------------


def check_postgres() -> Check:
    from cli.targets.local import postgres

    try:
        path = postgres.pg_bin("pg_ctl")
    except ImctlError as err:
        return Check("postgresql", False, err.message, err.hint)
    return Check("postgresql", True, f"PostgreSQL binaries at {path.parent}", "")


def check_nats() -> Check:
    from cli.targets.local import nats

    try:
        path = nats.find_nats_server()
    except ImctlError as err:
        return Check("nats_server", False, err.message, err.hint)
    return Check("nats_server", True, f"nats-server at {path}", "")


def check_pg_user(is_root: bool, which: Callable[[str], str | None] = shutil.which) -> Check | None:
    if not is_root:
        return None
    import pwd

    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        pass
    else:
        return Check("pg_system_user", True, f"system user {PG_SYSTEM_USER} exists", "")
    found = which("useradd")
    return Check(
        "pg_system_user",
        found is not None,
        f"running as root: PostgreSQL will run as {PG_SYSTEM_USER}, created with {found}"
        if found
        else f"running as root and useradd is missing: cannot create user {PG_SYSTEM_USER}",
        f"install useradd (apt-get install passwd), create {PG_SYSTEM_USER} yourself, "
        "or run imctl as a non-root user",
    )


def _stack_ports(stack_dir: Path) -> set[int]:
    """Ports this stack's config claims; best effort, any unreadable config counts as none."""
    try:
        doc = json.loads((stack_dir / "config.json").read_text())
    except (OSError, ValueError):
        return set()
    if not isinstance(doc, dict):
        return set()
    regions = doc.get("regions")
    items = regions.values() if isinstance(regions, dict) else regions or []
    ports = {r.get("port") for r in items if isinstance(r, dict)} | {doc.get("global_port")}
    return {p for p in ports if isinstance(p, int)}


def port_in_use(port: int) -> bool:
    from cli.targets.local import procs

    # 0.0.0.0 conflicts with a listener on any local address, loopback included.
    return not procs.port_is_free("0.0.0.0", port)


def check_ports(ctx: Context) -> list[Check]:
    mine = _stack_ports(ctx.stack_dir)
    ports = sorted(mine) or [DEFAULT_PORT]
    checks = []
    for port in ports:
        name = f"port_{port}"
        fix = (
            f"stop what listens there (find it: ss -ltnp 'sport = :{port}') or deploy the "
            f"stack on another port (imctl deploy --port N)"
        )
        if not port_in_use(port):
            checks.append(Check(name, True, f"port {port} is free", fix))
        elif port in mine:
            checks.append(Check(name, True, f"port {port} in use by stack {ctx.stack!r}", fix))
        else:
            checks.append(Check(name, False, f"port {port} is in use by another program", fix))
    return checks


def local_checks(ctx: Context) -> list[Check]:
    checks = [check_postgres(), check_nats()]
    pg_user = check_pg_user(os.geteuid() == 0)
    if pg_user is not None:
        checks.append(pg_user)
    return checks + check_ports(ctx)


# --- cloud targets --------------------------------------------------------------------------


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


# A line of Pulumi.<stack>.yaml; read with a pattern so doctor needs no YAML parser.
_K8S_VERSION_LINE = re.compile(
    r"""^\s+imctl:kubernetesVersion:\s*["']?([^"'\s#]*)["']?\s*(#.*)?$"""
)
_DOCKER_FIX = (
    "install Docker with the buildx plugin (Docker Desktop has both; on Linux: the docker-ce and "
    "docker-buildx-plugin packages) and start the daemon; or skip the build and run an image "
    "you publish: imctl deploy --set image=<registry>/im-server@sha256:..."
)
# `image: ...` under `config:` in Pulumi.<stack>.yaml, as `pulumi config set` writes it.
_IMAGE_LINE = re.compile(r"^\s+imctl:image:\s*(\S.*?)\s*$", re.MULTILINE)


def _stack_yaml(home: Path, environ: Mapping[str, str], stack: str) -> str:
    """Pulumi.<stack>.yaml as ``imctl deploy`` wrote it (in the engine's work dir, see
    cli.engine.resolve_settings); "" when absent or unreadable."""
    work_dir = Path(environ.get("IMCTL_PULUMI_WORK_DIR") or home / "pulumi" / "project")
    try:
        return (work_dir / f"Pulumi.{stack}.yaml").read_text()
    except OSError:
        return ""


def configured_kubernetes_version(home: Path, environ: Mapping[str, str], stack: str) -> str:
    """The stack's ``kubernetesVersion``; "" when unset or unreadable."""
    for line in _stack_yaml(home, environ, stack).splitlines():
        match = _K8S_VERSION_LINE.match(line)
        if match:
            return match.group(1)
    return ""


def stack_image(environ: Mapping[str, str], home: Path, stack: str) -> str | None:
    """The ``image`` the stack's config names, if any (then the deploy builds nothing)."""
    found = _IMAGE_LINE.search(_stack_yaml(home, environ, stack))
    value = found.group(1).strip("'\"") if found else ""
    return value or None


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
    k8s_version: str = "",
    today: date | None = None,
    image: str | None = None,
) -> list[Check]:
    checks = [
        check_pulumi(environ),
        check_packages(cloud),
        check_credentials(cloud, environ),
    ]
    # Only a stack that builds its image needs Docker; one given image=REF pulls it as is.
    if image is None:
        checks.append(check_docker_buildx(environ))
    return [
        *checks,
        check_kubectl(environ),
        check_kubernetes_version(cloud, k8s_version, today or date.today()),
    ]


def diagnose(ctx: Context, today: date | None = None) -> DoctorResult:
    result = DoctorResult(ctx.cloud)
    home = ctx.env.home
    result.checks += [check_python(), check_home_writable(home), check_disk(home)]
    if ctx.cloud == "local":
        result.checks += local_checks(ctx)
    else:
        version = configured_kubernetes_version(home, ctx.env.environ, ctx.stack)
        image = stack_image(ctx.env.environ, home, ctx.stack)
        result.checks += cloud_checks(ctx.cloud, ctx.env.environ, version, today, image)
    return result


# --- the command ------------------------------------------------------------------------------


def _render_doctor(console: Any, doc: Mapping[str, Any]) -> None:
    from rich.markup import escape

    console.print(f"imctl doctor: target [bold]{escape(doc['cloud'])}[/bold]")
    for c in doc["checks"]:
        if c["ok"]:
            mark = "[green]✓[/green]"
        else:
            mark = "[red]✗[/red]" if c["required"] else "[yellow]![/yellow]"
        console.print(f"{mark} {escape(c['name'])}: {escape(c['detail'])}")
        if not c["ok"] and c["fix"]:
            console.print(f"    [cyan]fix:[/cyan] {escape(c['fix'])}")
    if doc["ok"]:
        console.print("[green]ready[/green]")
    else:
        console.print("[red]not ready[/red]: fix the checks marked ✗ (exit 10)")


def doctor(
    tctx: typer.Context,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Check the prerequisites for a target (--cloud); each failure comes with a fix.

    Exit 10 when a required check fails; optional ones (kubectl) only warn.
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)
    args = {"cloud": ctx.cloud}

    def body() -> DoctorResult:
        return diagnose(ctx)

    # create_stack=True: doctor runs before the first deploy; it only peeks at the config.
    run(ctx, "doctor", args, body, _render_doctor, mutating=False, create_stack=True)
