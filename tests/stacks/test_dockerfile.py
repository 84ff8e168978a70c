"""The im-server image recipe, read as text (no Docker daemon here to build it)."""

from __future__ import annotations

import json
import re
from pathlib import Path

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
