"""Entry point for `pulumi up` in the repository (Pulumi.yaml: main: stacks/).

Reads the project's config keys into the typed StackConfig, builds, exports the outputs.
"""

from __future__ import annotations

import os
import sys

# Pulumi runs this directory as a script: make the repository importable as `stacks.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pulumi

from stacks.config import ConfigError
from stacks.program import build, from_pulumi_config


def main() -> None:
    try:
        config = from_pulumi_config()
    except ConfigError as exc:
        raise pulumi.RunError(f"config: {exc}") from None
    for name, value in build(config).items():
        pulumi.export(name, value)


main()
