"""``imctl deploy --port P`` on a port another imctl stack holds names that stack (exit 10, as for
any port in use) and says how to free it; a port held by a stranger says so as before."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.state import RegionConfig, StackConfig, StackFiles
from cli.targets.local.procs import free_port
from tests.cli.test_contract import invoke, make_env, one_document
from tests.cli.test_local_e2e import imctl, imctl_home


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "imctl-home"


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def recorded_stack(home: Path, name: str, endpoint: int, pg: int | None = None) -> None:
    files = StackFiles(home / "stacks" / name)
    files.load_or_create_secrets()
    files.save_config(StackConfig(name, "local", [RegionConfig("a", endpoint, 2)]))
    if pg is not None:
        ports = files.region_dir("a") / "ports.json"
        ports.parent.mkdir(parents=True)
        ports.write_text(json.dumps({"pg": pg, "nats": pg + 1, "nats_monitor": pg + 2}))


def test_the_endpoint_of_another_stack(home: Path, listening: int) -> None:
    recorded_stack(home, "prod", listening)
    ran = invoke(make_env(home), ["deploy", "--port", str(listening), "-o", "json"])
    assert ran.code == 10, ran
    err = one_document(ran.stdout)["error"]
    assert (
        err["message"]
        == f"port {listening} is in use by stack 'prod' (the endpoint of its region a)"
    )
    assert err["hint"] == "`imctl destroy -s prod` frees it, or pick another --port"
    assert not (home / "stacks" / "dev" / "config.json").exists()  # nothing was started


def test_the_database_of_another_stack(home: Path, listening: int) -> None:
    recorded_stack(home, "prod", free_port(), pg=listening)
    ran = invoke(make_env(home), ["deploy", "-s", "qa", "--port", str(listening)])
    assert ran.code == 10, ran
    assert f"port {listening} is in use by stack 'prod' (PostgreSQL of its region a)" in ran.stderr


def test_a_stranger_is_not_named(home: Path, listening: int) -> None:
    recorded_stack(home, "prod", free_port())
    ran = invoke(make_env(home), ["deploy", "--port", str(listening), "-o", "json"])
    assert ran.code == 10, ran
    assert "in use by another program" in one_document(ran.stdout)["error"]["message"]


@pytest.fixture(scope="module")
def real_home() -> Iterator[Path]:
    yield from imctl_home("imctl-ports-")  # destroys every stack in it afterwards


@pytest.mark.slow
def test_two_real_stacks(real_home: Path) -> None:
    port = free_port()
    first = imctl(real_home, "deploy", "-s", "one", "--port", str(port), "-o", "json")
    assert first.returncode == 0, first.stderr
    second = imctl(real_home, "deploy", "-s", "two", "--port", str(port), "-o", "json")
    assert second.returncode == 10, second.stdout
    err = json.loads(second.stdout)["error"]
    assert err["message"].startswith(f"port {port} is in use by stack 'one'")
    assert "imctl destroy -s one" in err["hint"]
