"""The CLI's structure, checked: one error tree with one exit code per class.

The table below is the contract scripts depend on; changing an exit code means changing it here
too, on purpose.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import cli.errors
from cli.errors import ExitStatus, ImctlError

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "cli"

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
}


def _python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


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
