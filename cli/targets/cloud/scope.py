"""The stack a cloud's parts work on (``Scope``), apart from the operations' protocols in
ops.py, which name the restore sequence's types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cli.deadline import DEFAULT_HINT
from cli.targets.cloud.kube import KubeApi
from cli.targets.cloud.outputs import CloudOutputs


@dataclass(frozen=True)
class Scope:
    """The stack a cloud's parts work on: its outputs, a Kubernetes client per region, how
    often waits poll, and what a timeout tells the user (it depends on what the cloud keeps
    doing after imctl gives up)."""

    outputs: CloudOutputs
    kube: Callable[[str], KubeApi]
    interval: float
    timeout_hint: str = DEFAULT_HINT
