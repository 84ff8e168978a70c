"""The CLI's structure, checked: no import cycles, a domain that knows nothing of the command
line, and one error tree with one exit code per class.

Imports are read with ``ast``, not executed. A cycle counts module-level imports only (those
under ``if TYPE_CHECKING:`` too: mypy follows them, and they were how the old cycles hid);
imports inside functions are how a module defers a heavy or command-side dependency, and do not
count. The domain rule counts every import, wherever it is.

The exit-code table is the contract scripts depend on; changing an exit code means changing it
here too, on purpose.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest

import cli.errors
from cli.errors import ExitStatus, ImctlError, UsageError
from cli.targets.cloud.outputs import CloudOutputs

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "cli"

# The domain: what the operations do. It may be driven by any front end, so it must not import
# the command line (typer, rich, the commands and their output).
DOMAIN = (
    "cli.targets",
    "cli.engine",
    "cli.snapshots",
    "cli.state",
    "cli.statecheck",
    "cli.journal",
    "cli.locks",
    "cli.errors",
    "cli.deadline",
    "cli.progress",
)
COMMAND_LAYER = (
    "typer",
    "rich",
    "cli.commands",
    "cli.main",
    "cli.options",
    "cli.output",
    "cli.progress_view",
    "cli.step_progress",
    "cli.hints",
    "cli.runner",
    "cli.tables",
)

EXIT_CODES: dict[str, ExitStatus] = {
    "ImctlError": ExitStatus.ERROR,
    "InternalError": ExitStatus.ERROR,
    "SnapshotNotFound": ExitStatus.ERROR,
    "DigestUnavailable": ExitStatus.ERROR,
    "UsageError": ExitStatus.USAGE,
    "CredentialsError": ExitStatus.AUTH,
    "ResourceFailure": ExitStatus.RESOURCE_FAILURE,
    "StackNotFound": ExitStatus.STACK_NOT_FOUND,
    "Cancelled": ExitStatus.CANCELLED,
    "OperationTimeout": ExitStatus.TIMEOUT,
    "PreconditionFailed": ExitStatus.PRECONDITION,
    "StateInvalid": ExitStatus.PRECONDITION,
    "SnapshotCorrupt": ExitStatus.PRECONDITION,
    "SmokeTestFailed": ExitStatus.PRECONDITION,
    "ContentMismatch": ExitStatus.PRECONDITION,
    "RestoredContentMismatch": ExitStatus.PRECONDITION,
    "PrerequisiteMissing": ExitStatus.PRECONDITION,
    "Locked": ExitStatus.LOCKED,
    "Partial": ExitStatus.PARTIAL,
    "ContentUnverified": ExitStatus.PARTIAL,
    "FailoverIncomplete": ExitStatus.PARTIAL,
    "Interrupted": ExitStatus.INTERRUPTED,
    "InterruptedUnchanged": ExitStatus.INTERRUPTED,
}


def _python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _imports(path: Path, *, module_level_only: bool) -> set[str]:
    """The modules ``path`` imports; ``from pkg import name`` counts as ``pkg.name`` when that
    is a module, else as ``pkg``."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            )
            if module_level_only and nested:
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                for alias in child.names:
                    candidate = f"{base}.{alias.name}"
                    is_module = _module_path(candidate) is not None
                    found.add(candidate if is_module else base)
            visit(child, nested)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def _module_path(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _cli_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in _python_files(CLI)}
    return {
        name: {m for m in _imports(path, module_level_only=True) if m in modules and m != name}
        for name, path in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_import_graph_sees_the_modules() -> None:
    graph = _cli_graph()
    assert "cli.errors" in graph["cli.runner"]
    assert "cli.journal" in graph["cli.runner"]  # from cli import journal
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_in_cli() -> None:
    assert _cycles(_cli_graph()) == []


def test_the_domain_does_not_import_the_command_line() -> None:
    offences: list[str] = []
    for path in _python_files(CLI):
        name = _module_name(path)
        if not _within(name, DOMAIN):
            continue
        for imported in sorted(_imports(path, module_level_only=False)):
            if _within(imported, COMMAND_LAYER):
                offences.append(f"{name} imports {imported}")
    assert offences == []


def _error_tree() -> dict[str, type[ImctlError]]:
    return {
        name: obj
        for name, obj in vars(cli.errors).items()
        if inspect.isclass(obj) and issubclass(obj, ImctlError)
    }


def test_every_error_class_is_defined_in_the_errors_module() -> None:
    tree = _error_tree()
    outside: list[str] = []
    for path in _python_files(CLI):
        if path == CLI / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
            if bases & tree.keys():
                outside.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert outside == []


def test_each_error_class_maps_to_its_exit_code() -> None:
    tree = _error_tree()
    assert {name: cls.status for name, cls in tree.items()} == EXIT_CODES


def test_the_docstring_draws_every_class_with_its_exit_code() -> None:
    doc = cli.errors.__doc__ or ""
    for name, status in EXIT_CODES.items():
        line = next((ln for ln in doc.splitlines() if f" {name} " in f" {ln} "), "")
        assert f"exit {int(status)}" in line, f"{name} is not drawn with exit {int(status)}"


def _ops(cloud: str, outputs: CloudOutputs) -> Any:
    from tests.cloud.fake_kube import FakeKube

    def kube(region: str) -> FakeKube:
        return FakeKube()

    if cloud == "aws":
        from cli.targets.cloud.aws import AwsOps

        return AwsOps(outputs, kube)
    if cloud == "gcp":
        from cli.targets.cloud.gcp import GcpOps

        return GcpOps(outputs, kube, project="p")
    from cli.targets.cloud.alicloud import AlicloudOps

    return AlicloudOps(outputs, kube, access_key_id="k", access_key_secret="s")


@pytest.mark.parametrize(
    ("cloud", "other"), [("aws", "gcp"), ("gcp", "alicloud"), ("alicloud", "aws")]
)
def test_outputs_of_another_cloud_exit_2_on_every_cloud(cloud: str, other: str) -> None:
    # It was 2 on AWS and 10 on GCP and Alibaba: the caller named the wrong file or --cloud.
    doc = {
        "cloud": other,
        "primary_region": "r1",
        "regions": {
            "r1": {
                "cluster_name": "c",
                "nodegroup_name": "n",
                "db_instance_id": "d",
                "endpoint": "e",
            }
        },
        "hosted_zone_id": "z",
        "dns_name": "im.example.com",
        "backup_bucket": "b",
    }
    outputs = CloudOutputs.from_json(doc)
    with pytest.raises(UsageError, match=f"describe a {other} stack, not {cloud}") as err:
        _ops(cloud, outputs)
    assert err.value.status is ExitStatus.USAGE


# --- commands: parse, call the target, render -------------------------------------------------

COMMANDS = CLI / "commands"
# What a command may import of the domain: the interface, its result types and the target
# chooser; never a target's own modules or the engine (they are behind the Target).
TARGET_INTERNALS = ("cli.targets.local", "cli.targets.cloud", "cli.engine", "cli.state")


def _compares_cloud(tree: ast.AST) -> list[int]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(s, ast.Attribute) and s.attr == "cloud" for s in sides):
                found.append(node.lineno)
    return found


def test_no_command_asks_which_target_it_has() -> None:
    offences: list[str] = []
    for path in _python_files(COMMANDS):
        rel = path.relative_to(ROOT)
        offences += [f"{rel}:{line} compares .cloud" for line in _compares_cloud(
            ast.parse(path.read_text(), str(path))
        )]  # fmt: skip
        for imported in sorted(_imports(path, module_level_only=False)):
            if _within(imported, TARGET_INTERNALS):
                offences.append(f"{rel} imports {imported}")
    assert offences == []


def test_the_check_sees_a_comparison_of_the_cloud() -> None:
    assert _compares_cloud(ast.parse("if ctx.cloud != 'local':\n    pass\n")) == [1]
    assert _compares_cloud(ast.parse("x = ctx.stack == 'dev'\n")) == []


def test_an_option_of_another_target_exits_2_naming_the_target() -> None:
    from cli.targets.choose import check_options

    with pytest.raises(UsageError, match="--port is not an option of the aws target") as err:
        check_options("aws", {"--port": 8700})
    assert "it is for local" in err.value.hint
    with pytest.raises(UsageError, match="--nodes is not an option of the local target") as err:
        check_options("local", {"--nodes": 3})
    assert "aws, gcp, alicloud" in err.value.hint
    check_options("local", {"--nodes": None, "--port": 8700})  # not given: fine
