"""A cloud stack's ``Pulumi.<stack>.yaml`` as ``imctl deploy`` writes it, read without Pulumi or
a YAML parser: ``imctl doctor`` and ``imctl stack ls`` need a few ``imctl:`` keys and must stay
fast and free of the cloud extras."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from cli.engine.settings import pulumi_work_dir

# `  imctl:region: us-east-1` under `config:`, as `pulumi config set` writes it.
_CONFIG_LINE = re.compile(r"""^\s+imctl:([A-Za-z]+):\s*["']?([^"'\s#]*)["']?\s*(#.*)?$""")


def config_values(text: str) -> dict[str, str]:
    """The ``imctl:`` keys of a stack's YAML text and their plain values."""
    return {m[1]: m[2] for m in map(_CONFIG_LINE.match, text.splitlines()) if m}


def read(home: Path, environ: Mapping[str, str], stack: str) -> dict[str, str]:
    """One stack's ``imctl:`` keys; empty when its file is absent or unreadable."""
    try:
        return config_values((pulumi_work_dir(home, environ) / f"Pulumi.{stack}.yaml").read_text())
    except OSError:
        return {}


def read_all(home: Path, environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Every stack's ``imctl:`` keys, by stack name."""
    work = pulumi_work_dir(home, environ)
    found: dict[str, dict[str, str]] = {}
    for path in sorted(work.glob("Pulumi.*.yaml")) if work.is_dir() else []:
        name = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
        try:
            found[name] = config_values(path.read_text())
        except OSError:
            continue
    return found
