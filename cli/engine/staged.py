"""A stack opened for a deploy, with the config the imctl flags asked for written to it, and put
back as it was unless the deploy was applied.

The program reads its config from the stack, so previewing the new config means writing it
first. ``imctl deploy --preview``, a declined confirmation and a refused plan must still change
nothing: on leaving without ``up``, the keys written are removed (those the stack lacked) or get
their old values back, and a stack this call created is removed again.

    with staged("dev", "aws", {"region": "us-east-1"}, home=..., env=...) as stage:
        doc = stage.preview(progress)       # the planned steps: stage.planned
        ...                                 # show them, ask; raising here restores
        doc = stage.up(progress)            # from here on the config is the stack's
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from cli.engine.config import _qualified, restore_config, validated, write_config
from cli.engine.events import EventRenderer, Operation, op_map
from cli.engine.pulumi_errors import translated
from cli.engine.roles import refuse_undeployable, roles_moved
from cli.engine.settings import EngineSettings, resolve_settings
from cli.engine.stack_outputs import outputs_of
from cli.engine.steps import PlannedStep
from cli.engine.workspace import PROJECT, imctl_values, program, pulumi_command, workspace_options
from cli.errors import ImctlError
from cli.progress import EventSink

if TYPE_CHECKING:
    from pulumi import automation as auto


def result_doc(
    operation: Operation,
    stack: str,
    cloud: str | None,
    settings: EngineSettings,
    renderer: EventRenderer,
    started: float,
    **extra: Any,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "stack": stack,
        "cloud": cloud,
        "operation": operation,
        "backend": settings.public_backend,
        "changes": renderer.changes,
        "resources": renderer.counts(),
        "duration_seconds": round(time.monotonic() - started, 3),
        "warnings": renderer.warnings,
    }
    doc.update(extra)
    return doc


class Staged:
    """See the module docstring. Not reusable: one ``with`` per deploy."""

    def __init__(
        self,
        settings: EngineSettings,
        stack: str,
        cloud: str,
        config: Mapping[str, str],
        secret_config: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.name = stack
        self.cloud = cloud
        self._config = dict(config)
        self._secret_config = dict(secret_config or {})
        self._st: auto.Stack | None = None
        self._before: Mapping[str, auto.ConfigValue] = {}
        self._written: list[str] = []
        self.created = False  # the stack did not exist: a deploy creates it
        self.changed: dict[str, str] = {}  # the imctl keys whose value the deploy changes
        self.merged: dict[str, str] = {}  # the stack's plain imctl config as the deploy sees it
        self.applied = False  # up ran (even if it failed): the config is the stack's now
        self.planned: list[PlannedStep] = []
        self._refresh: bool | None = None

    # --- entering: open or create the stack, write the config ----------------------------------

    def __enter__(self) -> Staged:
        try:
            with translated(self.name, "config", self.settings):
                self._open()
        except BaseException as exc:
            self._leave(exc)
            raise
        return self

    def _open(self) -> None:
        from pulumi import automation as auto

        cmd = pulumi_command(self.settings)
        opts = workspace_options(self.settings, cmd)
        try:
            st = auto.select_stack(
                stack_name=self.name, project_name=PROJECT, program=program, opts=opts
            )
        except auto.StackNotFoundError:
            # Validate before creating, so a typo in --region leaves no empty stack behind.
            validated(self.name, self.cloud, {}, self._config)
            st = auto.create_or_select_stack(
                stack_name=self.name, project_name=PROJECT, program=program, opts=opts
            )
            self.created = True
        self._st = st
        self._before = {} if self.created else st.get_all_config()
        existing = imctl_values(self._before)
        config = self._config
        if existing.get("teardown") == "true" and "teardown" not in config:
            # A destroy that failed half-way lifted the databases' protection: a deploy restores it.
            config = {**config, "teardown": "false"}
        self.changed = validated(self.name, self.cloud, existing, config)
        self.merged = {**existing, **config, "cloud": self.cloud}
        refuse_undeployable(self.name, self.merged)
        self._written = [_qualified(k) for k in (*self.changed, *self._secret_config)]
        write_config(self.settings, st, self.changed, self._secret_config)

    @property
    def stack(self) -> auto.Stack:
        assert self._st is not None, "use Staged in a with statement"
        return self._st

    @property
    def refresh(self) -> bool:
        """Whether a failover was recorded since the last deploy (see roles.roles_moved): the
        preview and the update then both read the cloud first."""
        if self._refresh is None:
            self._refresh = not self.created and roles_moved(self.stack, self.merged)
        return self._refresh

    # --- the operations -------------------------------------------------------------------------

    def preview(
        self, progress: EventSink | None = None, expected_total: int | None = None
    ) -> dict[str, Any]:
        """``pulumi preview`` with the staged config; the steps go to ``planned`` too."""
        renderer = EventRenderer(self.name, "preview", progress, expected_total)
        started = time.monotonic()
        with translated(self.name, "preview", self.settings, renderer):
            result = self.stack.preview(
                on_event=renderer, color="never", suppress_progress=True, refresh=self.refresh
            )
        renderer.changes = op_map(result.change_summary) or renderer.changes
        self.planned = renderer.plan.steps()
        return result_doc(
            "preview",
            self.name,
            self.cloud,
            self.settings,
            renderer,
            started,
            new_stack=self.created,
            config_changed=sorted(self.changed),
            steps=[s.to_json() for s in self.planned],
        )

    def up(
        self,
        progress: EventSink | None = None,
        expected_total: int | None = None,
        message: str | None = None,
    ) -> dict[str, Any]:
        """``pulumi up``: create or update the stack's resources; -> the result document."""
        renderer = EventRenderer(self.name, "up", progress, expected_total)
        started = time.monotonic()
        with translated(self.name, "up", self.settings, renderer):
            refresh = self.refresh
            # A failed update may have changed resources with this config: it stays the stack's.
            self.applied = True
            result = self.stack.up(
                on_event=renderer,
                color="never",
                message=message or f"imctl deploy -s {self.name}",
                show_secrets=False,
                suppress_progress=True,
                refresh=refresh,
            )
        outs = outputs_of(result.outputs)
        if not renderer.changes:
            renderer.changes = op_map(result.summary.resource_changes)
        changes = {k: v for k, v in renderer.changes.items() if k != "same" and v}
        return result_doc(
            "up",
            self.name,
            self.cloud,
            self.settings,
            renderer,
            started,
            result=result.summary.result,
            created=self.created,
            changed=bool(changes),
            config_changed=sorted(self.changed),
            refreshed=refresh,
            outputs=outs.public(),
        )

    # --- leaving: put back what was not applied -------------------------------------------------

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._leave(exc)

    def _leave(self, exc: BaseException | None) -> None:
        if self.applied or self._st is None:
            return
        try:
            with translated(self.name, "config", self.settings):
                self._restore(self._st)
        except ImctlError as failed:
            if exc is None:
                failed.message = f"could not put the stack back as it was: {failed.message}"
                raise
            if isinstance(exc, ImctlError):  # the first failure is the one to report
                exc.hint = (
                    f"{exc.hint}; and the stack config could not be put back"
                    f" ({failed.message}): check it with `pulumi config -s {self.name}`"
                )

    def _restore(self, st: auto.Stack) -> None:
        if self.created:
            # Removes its config file with it; nothing ran on it, so it holds no resources.
            st.workspace.remove_stack(self.name)
        elif self._written:
            restore_config(self.settings, st, self._before, self._written)
        self._st = None


def staged(
    ctx_stack: str,
    cloud: str,
    config: Mapping[str, str],
    *,
    home: Path,
    env: Mapping[str, str],
    secret_config: Mapping[str, str] | None = None,
) -> Staged:
    """The stack staged for a deploy (a context manager: see the module docstring)."""
    return Staged(resolve_settings(home, env), ctx_stack, cloud, config, secret_config)
