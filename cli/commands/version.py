"""imctl version: the versions a bug report needs."""

from __future__ import annotations

import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import typer

from cli.errors import ExitStatus
from cli.options import (
    CloudAccepted,
    NoColor,
    Output,
    StackAccepted,
    VerboseAccepted,
    YesAccepted,
    make_context,
)
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
    stack: StackAccepted = None,
    cloud: CloudAccepted = None,
    output: Output = None,
    yes: YesAccepted = False,
    verbose: VerboseAccepted = False,
    no_color: NoColor = False,
) -> None:
    """Show the imctl, Python and platform versions (for a bug report).

    \b
    Examples:
      imctl version
      imctl version -o json
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> VersionResult:
        py = ".".join(map(str, sys.version_info[:3]))
        return VersionResult(imctl_version(), py, platform.platform(terse=True))

    run(ctx, "version", {}, body, _render_version, mutating=False, create_stack=True)
