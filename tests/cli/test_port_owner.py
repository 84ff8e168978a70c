"""``imctl deploy --port P`` on a port another imctl stack holds names that stack (exit 10, as for
any port in use) and says how to free it; a port held by a stranger says so as before, also
when a stopped stack's files name that port."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
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


@pytest.fixture
def listen_in() -> Iterator[Callable[[Path], int]]:
    """A process listening on a free port with its working directory in ``where``, as the
    stack's nodes run in theirs."""
    started: list[subprocess.Popen[str]] = []

    def start(where: Path) -> int:
        where.mkdir(parents=True, exist_ok=True)
        code = (
            "import socket, sys, time\n"
            "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
            "print(s.getsockname()[1], flush=True); time.sleep(120)\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=where, stdout=subprocess.PIPE, text=True
        )
        started.append(proc)
        assert proc.stdout is not None
        return int(proc.stdout.readline())

    yield start
    for proc in started:
        proc.kill()
        proc.wait(10)


def recorded_stack(home: Path, name: str, endpoint: int, pg: int | None = None) -> None:
    files = StackFiles(home / "stacks" / name)
    files.load_or_create_secrets()
    files.save_config(StackConfig(name, "local", [RegionConfig("a", endpoint, 2)]))
    if pg is not None:
        ports = files.region_dir("a") / "ports.json"
        ports.parent.mkdir(parents=True, exist_ok=True)
        ports.write_text(json.dumps({"pg": pg, "nats": pg + 1, "nats_monitor": pg + 2}))


def test_the_endpoint_of_another_stack(home: Path, listen_in: Callable[[Path], int]) -> None:
    listening = listen_in(home / "stacks" / "prod" / "regions" / "a" / "nodes")
    recorded_stack(home, "prod", listening)
    ran = invoke(make_env(home), ["deploy", "--port", str(listening), "-o", "json"])
    assert ran.code == 10, ran
    err = one_document(ran.stdout)["error"]
    assert (
        err["message"]
        == f"port {listening} is in use by stack 'prod' (the endpoint of its region a)"
    )
    assert err["hint"] == (
        "`imctl destroy -s prod --keep-data` stops that stack and keeps its data, or pick"
        " another --port"
    )
    assert not (home / "stacks" / "dev" / "config.json").exists()  # nothing was started


def test_the_database_of_another_stack(home: Path, listen_in: Callable[[Path], int]) -> None:
    listening = listen_in(home / "stacks" / "prod" / "regions" / "a" / "pg")
    recorded_stack(home, "prod", free_port(), pg=listening)
    ran = invoke(make_env(home), ["deploy", "-s", "qa", "--port", str(listening)])
    assert ran.code == 10, ran
    assert f"port {listening} is in use by stack 'prod' (PostgreSQL of its region a)" in ran.stderr


def test_a_stranger_is_not_named(home: Path, listening: int) -> None:
    # prod's files name the port, but prod is stopped and a stranger took it: stopping prod
    # would not free it, so prod is not named.
    recorded_stack(home, "prod", listening)
    recorded_stack(home, "qa", free_port())
    ran = invoke(make_env(home), ["deploy", "--port", str(listening), "-o", "json"])
    assert ran.code == 10, ran
    message = one_document(ran.stdout)["error"]["message"]
    assert "in use by another program" in message and "prod" not in message


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
