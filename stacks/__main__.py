"""Entry point for `pulumi up` in the repository (Pulumi.yaml: main: stacks/).

Reads the project's config keys into the typed StackConfig, builds, exports the outputs.
"""

from __future__ import annotations

import os
import sys

# Pulumi runs this directory as a script: make the repository importable as `stacks.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stacks.program import run

run("imctl config:")
