"""The im-server image recipe, read as text (no Docker daemon here to build it), and the build
context the stacks assemble for it, installed with pip as the Dockerfile does."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from stacks import build_context

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
INSTRUCTIONS = [
    line.strip()
    for line in re.sub(r"\\\n\s*", " ", DOCKERFILE).splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]


def _all(keyword: str) -> list[str]:
    return [i.split(None, 1)[1] for i in INSTRUCTIONS if i.split(None, 1)[0] == keyword]


def test_multi_stage_with_pip_install_of_the_repo() -> None:
    assert len(_all("FROM")) >= 2
    assert any(re.search(r"pip install (--\S+ )*\.$", run) for run in _all("RUN"))
    assert any("--from=build" in copy for copy in _all("COPY"))


def test_runs_as_the_non_root_uid_the_deployment_expects() -> None:
    # server.py is plain text here: this test must not need the Kubernetes SDK.
    server = (ROOT / "stacks" / "workload" / "server.py").read_text()
    uid = re.search(r"SERVER_UID: Final = (\d+)", server)
    assert uid is not None
    [user] = _all("USER")
    assert user.split(":")[0] == uid.group(1) != "0"


def test_healthcheck_and_entrypoint() -> None:
    [check] = _all("HEALTHCHECK")
    assert "/healthz" in check and ":8080" in check
    [entrypoint] = _all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["im-server"]
    [cmd] = _all("CMD")
    assert json.loads(cmd) == ["serve", "--host", "0.0.0.0", "--port", "8080"]
    assert _all("EXPOSE") == ["8080"]


def test_build_context_leaves_out_the_virtualenv_and_git() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv"} <= set(ignored)


# --- the build context the stack hands to the image build ------------------------------------


def _copy_sources(dockerfile: str) -> list[str]:
    sources = []
    for instruction in _all_in(dockerfile, "COPY"):
        words = [w for w in instruction.split() if not w.startswith("--")]
        if "--from=" not in instruction:
            sources += words[:-1]
    return sources


def _all_in(dockerfile: str, keyword: str) -> list[str]:
    lines = re.sub(r"\\\n\s*", " ", dockerfile).splitlines()
    return [
        line.strip().split(None, 1)[1]
        for line in lines
        if line.strip() and not line.lstrip().startswith("#") and line.split()[0] == keyword
    ]


def _pip(*args: str) -> None:
    # Offline on purpose: everything the build needs must be in the context.
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([sys.executable, "-m", "pip", "--quiet", *args], check=True, env=env)


@pytest.fixture(scope="module")
def checkout_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_context.assemble(tmp_path_factory.mktemp("context"))


def test_packages_in_the_context_are_the_ones_pyproject_builds() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(p.rstrip("*") for p in include) == sorted(build_context.PACKAGES)
    data = pyproject["tool"]["setuptools"]["data-files"][build_context.DATA_DIR]
    assert sorted(data) == sorted(build_context.PROJECT_FILES)


def test_context_from_a_checkout_holds_everything_the_dockerfile_copies(
    checkout_context: Path,
) -> None:
    dockerfile = (checkout_context / "Dockerfile").read_text()
    assert dockerfile == DOCKERFILE
    for source in _copy_sources(dockerfile):
        assert (checkout_context / source).exists(), source
    for name in (*build_context.PROJECT_FILES, *build_context.PACKAGES):
        assert (checkout_context / name).exists(), name
    assert not list(checkout_context.rglob("__pycache__"))
    # Same content, same directory: an unchanged imctl does not look like a new build context.
    assert build_context.assemble(checkout_context.parent) == checkout_context


def test_pip_installed_imctl_assembles_a_context_pip_can_install(
    checkout_context: Path, tmp_path: Path
) -> None:
    """The Dockerfile's `pip install .`, offline, on the context; then the same from an imctl
    installed from that wheel (no checkout anywhere near), which must ship the project files."""
    wheels = tmp_path / "wheels"
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(checkout_context))
    [wheel] = wheels.glob("imctl-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert any(n.startswith("im_server/migrations/") and n.endswith(".sql") for n in names)
    assert any(n.endswith("entry_points.txt") for n in names)

    installed = tmp_path / "site"
    _pip("install", "--no-deps", "--target", str(installed), str(wheel))
    script = (
        "import json, sys\n"
        "from stacks import build_context as b\n"
        "source = b.find_source()\n"
        f"context = b.assemble(__import__('pathlib').Path({str(tmp_path / 'out')!r}))\n"
        "print(json.dumps([b.__file__, str(context), source.revision]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(installed)}
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module, context, revision = json.loads(out)
    assert module.startswith(str(installed))  # the installed copy, not the checkout
    assert revision is None
    assert (Path(context) / "Dockerfile").read_text() == DOCKERFILE
    _pip("install", "--no-deps", "--no-build-isolation", "--target", str(tmp_path / "t"), context)
    assert list((tmp_path / "t" / "im_server" / "migrations").glob("*.sql"))
