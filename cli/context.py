"""What one imctl invocation knows: the outside world (``Env``, cli/env.py) and the resolved
common options.

Commands never read ``os.environ``, ``sys.stdout`` or ``~`` themselves; they go through
``Context.env`` so tests can run a whole command against StringIO streams and a temp home.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from cli.env import Env
from cli.output import Output
from cli.targets.base import Operator


class OutputFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


@dataclass
class Context:
    env: Env
    stack: str = "dev"
    cloud: str = "local"
    output: OutputFormat = OutputFormat.TEXT
    yes: bool = False
    verbose: bool = False
    no_color: bool = False
    _out: Output | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def json(self) -> bool:
        return self.output is OutputFormat.JSON

    @property
    def stack_dir(self) -> Path:
        return self.env.home / "stacks" / self.stack

    @property
    def out(self) -> Output:
        if self._out is None:
            self._out = Output(self)
        return self._out

    @property
    def operator(self) -> Operator:
        """How the targets' verbs report and ask, through this invocation's output."""
        from cli import progress_view

        return Operator(
            note=self.out.info,
            step=self.out.step,
            confirm=self.out.confirm,
            confirm_typed=self.out.confirm_typed,
            engine_progress=lambda: progress_view.progress_for(self),
            end_engine_progress=self.out.end_engine_progress,
        )
