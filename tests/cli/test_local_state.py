"""A local stack's own files are not trusted, and its processes are found without them: through
the real ``imctl`` command and real processes.

- A bad value in config.json, secrets.json, ports.json or a pid file stops every command with
  exit 2 or 10 naming the file and the key, and changes nothing (files and processes).
- A process whose pid file was deleted is shown by ``status``, adopted or stopped by
  ``deploy``/``scale``, and stopped by ``destroy``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.targets.local.procs import free_port
from tests.cli.test_local_e2e import alive, imctl, imctl_home, ok_json

pytestmark = pytest.mark.slow

STACK = "dev"


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    yield from imctl_home("imctl-state-")


def stack_dir(home: Path, stack: str = STACK) -> Path:
    return home / "stacks" / stack


def region_dir(home: Path, stack: str = STACK) -> Path:
    return stack_dir(home, stack) / "regions" / "local"


def state_files(home: Path) -> dict[Path, bytes]:
    """Every file imctl reads to know the stack, with its bytes."""
    d, r = stack_dir(home), region_dir(home)
    paths = [d / "config.json", d / "secrets.json", r / "ports.json", r / "nats" / "nats.pid"]
    paths += [*sorted((r / "nodes").glob("*.pid")), r / "pg" / "data" / "postmaster.pid"]
    return {p: p.read_bytes() for p in paths if p.exists()}


@pytest.fixture(scope="module")
def deployed(home: Path) -> dict[str, Any]:
    ok_json(home, "deploy", "--replicas", "2", "--port", str(free_port()))
    st = ok_json(home, "status", "--check")
    (region,) = st["regions"]
    pids = [n["pid"] for n in region["nodes"]] + [region["database"]["pid"], region["bus"]["pid"]]
    return {"pids": pids, "files": state_files(home), "port": region["port"]}


Edit = Callable[[Any], Any]


def _set(path: str, value: Any) -> Edit:
    """An edit of a JSON document: set (or, with ..., delete) the key at ``path``
    ("regions.0.replicas")."""

    def edit(doc: Any) -> Any:
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        key: Any = int(last) if isinstance(node, list) else last
        if value is ...:
            del node[key]
        else:
            node[key] = value
        return doc

    return edit


# (file relative to the stack directory, edit of its JSON, the key the message must name)
CASES: list[tuple[str, Edit, str]] = [
    ("config.json", _set("regions.0.replicas", -3), "replicas"),
    ("config.json", _set("regions.0.replicas", 0), "replicas"),
    ("config.json", _set("regions.0.replicas", 33), "replicas"),
    ("config.json", _set("regions.0.replicas", "2"), "replicas"),
    ("config.json", _set("regions.0.replicas", True), "replicas"),
    ("config.json", _set("regions.0.replicas", 1.5), "replicas"),
    ("config.json", _set("regions.0.replicas", ...), "replicas"),
    ("config.json", _set("regions.0.port", 80), "port"),
    ("config.json", _set("regions.0.port", 70000), "port"),
    ("config.json", _set("regions.0.port", None), "port"),
    ("config.json", _set("regions.0.role", "leader"), "role"),
    ("config.json", _set("regions.0.role", "standby"), "role"),  # no primary left
    ("config.json", _set("regions.0.name", "Not A Region"), "name"),
    ("config.json", _set("regions.0.name", "x" * 40), "name"),
    ("config.json", _set("regions.0.zone", "a"), "zone"),
    ("config.json", _set("regions", []), "regions"),
    ("config.json", _set("regions", ...), "regions"),
    ("config.json", _set("replication", "semi"), "replication"),
    ("config.json", _set("drain_grace", -1), "drain_grace"),
    ("config.json", _set("drain_grace", 0), "drain_grace"),
    ("config.json", _set("drain_grace", 1e9), "drain_grace"),
    ("config.json", _set("drain_grace", "10"), "drain_grace"),
    ("config.json", _set("global_port", 22), "global_port"),
    ("config.json", _set("stack", "other"), "stack"),
    ("config.json", _set("cloud", "aws"), "cloud"),
    ("config.json", _set("replicaz", 2), "replicaz"),
    ("config.json", lambda doc: [doc], "the document"),
    ("secrets.json", _set("pg_password", ...), "pg_password"),
    ("secrets.json", _set("pg_password", "two\nlines"), "pg_password"),
    ("secrets.json", _set("jwt_secret", "short"), "jwt_secret"),
    ("secrets.json", _set("admin_token", 12345678901234567890), "admin_token"),
    ("secrets.json", _set("api_key", "x" * 20), "api_key"),
    ("regions/local/ports.json", _set("pg", 80), "pg"),
    ("regions/local/ports.json", _set("pg", "5432"), "pg"),
    ("regions/local/ports.json", _set("nats", ...), "nats"),
    ("regions/local/ports.json", lambda d: {**d, "nats_monitor": d["nats"]}, "nats_monitor"),
    ("regions/local/ports.json", _set("extra", 1), "extra"),
    ("regions/local/nodes/n1.pid", _set("pid", -5), "pid"),
    ("regions/local/nodes/n1.pid", _set("pid", "123"), "pid"),
    ("regions/local/nodes/n1.pid", _set("create_time", ...), "create_time"),
    ("regions/local/nodes/n1.pid", _set("argv", "python -m im_server"), "argv"),
    ("regions/local/nats/nats.pid", _set("pid", 0), "pid"),
    ("regions/local/nats/nats.pid", _set("port", 4222), "port"),
]


def _case_id(case: tuple[str, Edit, str]) -> str:
    return f"{Path(case[0]).name}:{case[2]}"


# Every command reads the files through the same checks, so each file's first case goes through
# every command and the rest through deploy alone (the command that would act on a bad value);
# all of them through every command took 3.5 minutes of CI.
_FIRST_OF_FILE = {rel: i for i, (rel, _, _) in reversed(list(enumerate(CASES)))}


@pytest.mark.parametrize("case", CASES, ids=[f"{i}-{_case_id(c)}" for i, c in enumerate(CASES)])
def test_a_bad_value_stops_every_command_and_changes_nothing(
    home: Path, deployed: dict[str, Any], case: tuple[str, Edit, str]
) -> None:
    rel, edit, key = case
    path = stack_dir(home) / rel
    original = path.read_bytes()
    bad = json.dumps(edit(json.loads(original)), indent=2) + "\n"
    path.write_text(bad)
    files = {**deployed["files"], path: bad.encode()}
    try:
        commands: list[tuple[str, ...]] = [("deploy",)]
        if _FIRST_OF_FILE[rel] == CASES.index(case):
            commands += [("status",), ("scale", "--replicas", "1"), ("destroy", "--yes")]
            if rel in ("config.json", "secrets.json"):  # all token reads
                commands.append(("token", "--user", "u"))
        for args in commands:
            r = imctl(home, *args, "-o", "json")
            assert r.returncode in (2, 10), (args, r.returncode, r.stdout, r.stderr)
            err = json.loads(r.stdout)["error"]
            assert str(path) in err["message"], (args, err)
            assert key in err["message"] and err["hint"], (args, err)
            assert state_files(home) == files, args  # no file written, none removed
            assert alive(deployed["pids"]) == deployed["pids"], args  # nothing stopped
    finally:
        path.write_bytes(original)
    assert ok_json(home, "status", "--check")["healthy"] is True


def test_not_json_and_stray_pid_files_are_refused(home: Path, deployed: dict[str, Any]) -> None:
    nodes = region_dir(home) / "nodes"
    stray = nodes / "nx.pid"
    stray.write_text("{}")
    try:
        r = imctl(home, "deploy", "-o", "json")
        assert r.returncode == 10 and str(stray) in json.loads(r.stdout)["error"]["message"]
    finally:
        stray.unlink()
    for rel in ("config.json", "secrets.json", "regions/local/ports.json"):
        path = stack_dir(home) / rel
        original = path.read_bytes()
        path.write_text('{"truncated":')
        try:
            r = imctl(home, "deploy", "-o", "json")
            assert r.returncode == 10, (rel, r.stdout, r.stderr)
            assert str(path) in json.loads(r.stdout)["error"]["message"]
        finally:
            path.write_bytes(original)
    # A deployed stack without its secrets must not get new ones: they would not open its
    # database.
    secrets = stack_dir(home) / "secrets.json"
    original = secrets.read_bytes()
    secrets.unlink()
    try:
        r = imctl(home, "deploy", "-o", "json")
        assert r.returncode == 10 and "secrets.json is missing" in r.stdout
        assert not secrets.exists()
    finally:
        secrets.write_bytes(original)
    assert alive(deployed["pids"]) == deployed["pids"]
    assert ok_json(home, "status", "--check")["healthy"] is True


# --- processes without pid files --------------------------------------------------------------


def _orphans(home: Path, stack: str) -> dict[str, int]:
    (region,) = ok_json(home, "status", "-s", stack)["regions"]
    return {o["name"]: o["pid"] for o in region["orphans"]}


def test_a_node_and_nats_without_pid_files_are_seen_adopted_and_stopped(home: Path) -> None:
    stack = "orph"
    s = ("-s", stack)
    ok_json(home, "deploy", *s, "--replicas", "2", "--port", str(free_port()))
    (region,) = ok_json(home, "status", *s)["regions"]
    n2 = next(n["pid"] for n in region["nodes"] if n["id"] == "n2")
    nats = region["bus"]["pid"]
    r = region_dir(home, stack)

    (r / "nodes" / "n2.pid").unlink()
    (r / "nats" / "nats.pid").unlink()
    assert _orphans(home, stack) == {"n2": n2, "nats": nats}
    text = imctl(home, "status", *s)
    assert "without a pid file" in text.stdout and str(n2) in text.stdout

    # deploy records them again instead of starting twins next to them
    doc = ok_json(home, "deploy", *s)
    assert any(a.startswith("adopted im-server n2") for a in doc["actions"]), doc["actions"]
    assert any(a.startswith("adopted nats") for a in doc["actions"]), doc["actions"]
    (region,) = ok_json(home, "status", *s, "--check")["regions"]
    assert region["orphans"] == [] and region["bus"]["pid"] == nats
    assert {n["id"]: n["pid"] for n in region["nodes"]}["n2"] == n2

    # a node the region should not run is stopped, and the result says why
    (r / "nodes" / "n2.pid").unlink()
    scaled = ok_json(home, "scale", *s, "--replicas", "1")
    assert any("n2" in a and "runs 1 node" in a for a in scaled["orphans"]), scaled
    assert alive([n2]) == []

    # destroy stops what has no pid file
    (region,) = ok_json(home, "status", *s)["regions"]
    n1, pg = region["nodes"][0]["pid"], region["database"]["pid"]
    (r / "nodes" / "n1.pid").unlink()
    (r / "nats" / "nats.pid").unlink()
    (r / "pg" / "data" / "postmaster.pid").unlink()  # pg_ctl cannot stop it now
    assert _orphans(home, stack) == {"n1": n1, "nats": nats, "postgres": pg}
    ok_json(home, "destroy", *s, "--yes", "--delete-snapshots")
    assert alive([n1, nats, pg]) == []
    assert not stack_dir(home, stack).exists()
