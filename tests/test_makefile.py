"""The quick start's two commands, as make would run them in a fresh clone (``make -n``: what
would run, nothing run): `make deploy` installs the base dependencies only and passes ARGS on;
`make test` installs the test extra itself, with or without a `make deploy` before it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def planned(clone: Path, *args: str) -> list[str]:
    # Under `make test` this runs inside make: without its variables, or the inner make prints
    # "Entering/Leaving directory" lines among the commands.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", *args],
        cwd=clone, capture_output=True, text=True, timeout=60, check=True, env=env,
    )  # fmt: skip
    return done.stdout.splitlines()


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_deploy_installs_the_base_dependencies_only_and_passes_args(clone: Path) -> None:
    steps = planned(clone, "deploy", "ARGS=--port 8800 --replicas 3")
    installs = [s for s in steps if "pip install" in s]
    assert len(installs) == 1 and installs[0].endswith(" -e .")
    assert steps[-1] == ".venv/bin/imctl deploy --port 8800 --replicas 3"


def test_test_installs_the_test_extra_in_a_fresh_clone_and_after_deploy(clone: Path) -> None:
    fresh = planned(clone, "test")
    assert [s.split("pip install")[1] for s in fresh if "pip install" in s] == [
        " --quiet --no-compile -e .",
        " --quiet -e '.[test]'",
    ]
    assert fresh[-1].startswith(".venv/bin/pytest")
    # after `make deploy`: the base install is there (its stamp newer than pyproject.toml)
    (clone / ".venv" / "bin").mkdir(parents=True)
    (clone / ".venv" / "bin" / "python").touch()
    (clone / ".venv" / ".imctl-local").touch()
    after = planned(clone, "test")
    assert [s for s in after if "pip install" in s] == [
        ".venv/bin/python -m pip install --quiet -e '.[test]'"
    ]
