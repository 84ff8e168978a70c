"""The im-server image's build context, from a git checkout or from a pip-installed imctl.

The Dockerfile runs ``pip install .`` on a copy of the project, so the context needs the
project's packaging (``pyproject.toml``, ``README.md``), the ``Dockerfile`` and the Python
packages. A checkout has them at its root; a wheel installs the first three as data files
(``share/imctl/image``, see ``pyproject.toml``) and the packages into site-packages. Either way
the context is assembled into a directory named for its content, so an unchanged imctl gives the
same path (and the build provider sees no change) on every deploy.

This module imports no Pulumi package: ``imctl doctor`` and the SDK-free tests use it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

DISTRIBUTION: Final = "imctl"
# The packages `pip install .` builds (pyproject.toml [tool.setuptools.packages.find]).
PACKAGES: Final = ("im_server", "cli", "stacks")
# What `pip install .` and the Dockerfile read besides the packages.
PROJECT_FILES: Final = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md")
DATA_DIR: Final = "share/imctl/image"  # where a wheel installs PROJECT_FILES, under the prefix
_SKIP: Final = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")


class BuildContextError(RuntimeError):
    """The installed imctl lacks something the image build needs."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where the project files come from, and the git revision when that is a checkout."""

    project_files: dict[str, Path]
    revision: str | None


def _checkout_root() -> Path | None:
    root = Path(__file__).resolve().parent.parent
    if all((root / name).is_file() for name in PROJECT_FILES):
        return root
    return None


def _installed_data_files() -> dict[str, Path]:
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return {}
    # RECORD names the files relative to site-packages, which holds for a venv or system
    # install; `pip install --target` moves them under the target instead, and `--user` under
    # the user base, so those places are looked at too.
    recorded = [
        Path(str(dist.locate_file(entry))).resolve().parent
        for entry in dist.files or ()
        if entry.as_posix().rpartition("/")[0].endswith(DATA_DIR)
    ]
    candidates = [
        *recorded,
        Path(str(dist.locate_file(""))) / DATA_DIR,
        Path(sys.prefix) / DATA_DIR,
        Path(sysconfig.get_path("data", f"{os.name}_user")) / DATA_DIR,
    ]
    for directory in candidates:
        if all((directory / name).is_file() for name in PROJECT_FILES):
            return {name: directory / name for name in PROJECT_FILES}
    return {}


def git_revision(root: Path) -> str | None:
    """The checkout's short commit, with ``-dirty`` when tracked files differ from it."""
    if not (root / ".git").exists() or shutil.which("git") is None:
        return None
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}-dirty" if rev and dirty else rev or None


def find_source() -> Source:
    root = _checkout_root()
    if root is not None:
        return Source({name: root / name for name in PROJECT_FILES}, git_revision(root))
    files = _installed_data_files()
    if not files:
        raise BuildContextError(
            f"the installed imctl lacks {', '.join(PROJECT_FILES)} ({DATA_DIR}) for the image"
            " build",
            "reinstall it from a wheel or sdist of this version (pip install --force-reinstall"
            " imctl[...]), or bring an image: --set image=REF",
        )
    return Source(files, None)


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise BuildContextError(f"package {name} is not importable", "reinstall imctl")
    return Path(locations[0]).resolve()


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def assemble(base: Path | None = None, source: Source | None = None) -> Path:
    """Copy what the build needs into ``base`` (default: the temp dir) under a name made of the
    content's hash, and return that directory; an existing one with that name is reused."""
    source = source or find_source()
    base = base or Path(tempfile.gettempdir()) / "imctl-image"
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=base))
    try:
        for name, path in source.project_files.items():
            shutil.copy2(path, staging / name)
        for package in PACKAGES:
            shutil.copytree(_package_dir(package), staging / package, ignore=_SKIP)
        final = base / f"im-server-{version()}-{_tree_digest(staging)[:16]}"
        if final.is_dir():
            shutil.rmtree(staging)
        else:
            try:
                os.replace(staging, final)
            except OSError:
                if not final.is_dir():  # not a concurrent deploy that got there first
                    raise
                shutil.rmtree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def image_tags(revision: str | None) -> list[str]:
    """Tags for humans (the workload pins the digest): the version, and the commit if known."""
    tags = [version()]
    if revision:
        tags.append(f"git-{revision}")
    return tags
