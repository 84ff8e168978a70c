"""imctl version: the versions a bug report needs."""

from __future__ import annotations

import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import typer

from cli.errors import ExitStatus
from cli.options import Cloud, NoColor, Output, Stack, Verbose, Yes, make_context
from cli.runner import run


def imctl_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("imctl")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


@dataclass
class VersionResult:
    imctl: str
    python: str
    platform: str
    exit_status: ExitStatus = ExitStatus.OK

    def to_json(self) -> dict[str, Any]:
        return {"imctl": self.imctl, "python": self.python, "platform": self.platform}


def _render_version(console: Any, doc: Mapping[str, Any]) -> None:
    console.print(f"imctl {doc['imctl']} (Python {doc['python']}, {doc['platform']})")


def version(
    tctx: typer.Context,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Show the imctl, Python and platform versions."""
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> VersionResult:
        py = ".".join(map(str, sys.version_info[:3]))
        return VersionResult(imctl_version(), py, platform.platform(terse=True))

    run(ctx, "version", {}, body, _render_version, mutating=False, create_stack=True)
