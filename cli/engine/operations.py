"""The four operations (``pulumi up``, preview, destroy, refresh), each one's result document."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.engine.config import validated, write_config
from cli.engine.events import EventRenderer, Operation, op_map
from cli.engine.pulumi_errors import translated
from cli.engine.roles import refuse_undeployable, roles_moved
from cli.engine.settings import EngineSettings, resolve_settings
from cli.engine.stack_outputs import outputs_of
from cli.engine.workspace import (
    PROJECT,
    imctl_config,
    open_stack,
    program,
    pulumi_command,
    workspace_options,
)
from cli.progress import EventSink

if TYPE_CHECKING:
    from pulumi import automation as auto


def _prepare(
    settings: EngineSettings,
    stack: str,
    cloud: str,
    config: Mapping[str, str],
    secret_config: Mapping[str, str] | None,
) -> tuple[auto.Stack, bool, dict[str, str], dict[str, str]]:
    """Open (or create) the stack and write the config; -> (stack, created, changed keys, the
    stack's plain config as written)."""
    from pulumi import automation as auto

    cmd = pulumi_command(settings)
    created = False
    try:
        st = auto.select_stack(
            stack_name=stack,
            project_name=PROJECT,
            program=program,
            opts=workspace_options(settings, cmd),
        )
        existing = imctl_config(st)
    except auto.StackNotFoundError:
        # Validate before creating, so a typo in --region leaves no empty stack behind.
        validated(stack, cloud, {}, config)
        st = auto.create_or_select_stack(
            stack_name=stack,
            project_name=PROJECT,
            program=program,
            opts=workspace_options(settings, cmd),
        )
        existing, created = {}, True
    if existing.get("teardown") == "true" and "teardown" not in config:
        # A destroy that failed half-way lifted the databases' protection: a deploy restores it.
        config = {**config, "teardown": "false"}
    changed = validated(stack, cloud, existing, config)
    merged = {**existing, **config, "cloud": cloud}
    refuse_undeployable(stack, merged)
    write_config(settings, st, changed, secret_config or {})
    return st, created, changed, merged


def _doc(
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


def deploy(
    ctx_stack: str,
    cloud: str,
    config: Mapping[str, str],
    *,
    home: Path,
    env: Mapping[str, str],
    progress: EventSink | None = None,
    secret_config: Mapping[str, str] | None = None,
    expected_total: int | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """``pulumi up``: create or update the stack's resources; -> the result document."""
    settings = resolve_settings(home, env)
    renderer = EventRenderer(ctx_stack, "up", progress, expected_total)
    started = time.monotonic()
    with translated(ctx_stack, "up", settings, renderer):
        st, created, changed, merged = _prepare(settings, ctx_stack, cloud, config, secret_config)
        refresh = not created and roles_moved(st, merged)
        result = st.up(
            on_event=renderer,
            color="never",
            message=message or f"imctl deploy -s {ctx_stack}",
            show_secrets=False,
            suppress_progress=True,
            refresh=refresh,
        )
    outs = outputs_of(result.outputs)
    if not renderer.changes:
        renderer.changes = op_map(result.summary.resource_changes)
    changes = {k: v for k, v in renderer.changes.items() if k != "same" and v}
    return _doc(
        "up",
        ctx_stack,
        cloud,
        settings,
        renderer,
        started,
        result=result.summary.result,
        created=created,
        changed=bool(changes),
        config_changed=sorted(changed),
        refreshed=refresh,
        outputs=outs.public(),
    )


def preview(
    ctx_stack: str,
    cloud: str,
    config: Mapping[str, str],
    *,
    home: Path,
    env: Mapping[str, str],
    progress: EventSink | None = None,
    expected_total: int | None = None,
) -> dict[str, Any]:
    """``pulumi preview``: what deploy would change, asking the cloud (needs credentials).
    Creates the (empty) stack and writes its config, as deploy would."""
    settings = resolve_settings(home, env)
    renderer = EventRenderer(ctx_stack, "preview", progress, expected_total)
    started = time.monotonic()
    with translated(ctx_stack, "preview", settings, renderer):
        st, created, changed, _ = _prepare(settings, ctx_stack, cloud, config, None)
        result = st.preview(on_event=renderer, color="never", suppress_progress=True)
    renderer.changes = op_map(result.change_summary) or renderer.changes
    return _doc(
        "preview",
        ctx_stack,
        cloud,
        settings,
        renderer,
        started,
        created=created,
        config_changed=sorted(changed),
    )


def destroy(
    ctx_stack: str,
    *,
    home: Path,
    env: Mapping[str, str],
    progress: EventSink | None = None,
    expected_total: int | None = None,
    remove: bool = False,
) -> dict[str, Any]:
    """``pulumi destroy``: delete every resource of the stack; ``remove`` also deletes the
    stack and its config (its history goes with it).

    The databases are deletion-protected and retained when dropped (a failover must never
    delete the old writer), and ``pulumi destroy`` honours both. So the stack is first updated
    with ``teardown=true``, which lifts them and the clusters', keys' and buckets' protections
    (AWS still takes a final snapshot of the writer), and only then destroyed."""
    settings = resolve_settings(home, env)
    renderer = EventRenderer(ctx_stack, "destroy", progress, expected_total)
    started = time.monotonic()
    with translated(ctx_stack, "destroy", settings, renderer):
        st = open_stack(settings, ctx_stack)
        config = imctl_config(st)
        cloud = config.get("cloud")
        if cloud is not None and st.outputs():
            write_config(settings, st, {"teardown": "true"}, {})
            st.up(
                on_event=EventRenderer(ctx_stack, "up", progress, None),
                color="never",
                message=f"imctl destroy -s {ctx_stack}: lift every deletion protection",
                show_secrets=False,
                suppress_progress=True,
            )
        result = st.destroy(
            on_event=renderer,
            color="never",
            show_secrets=False,
            suppress_progress=True,
            remove=remove,
        )
    if not renderer.changes:
        renderer.changes = op_map(result.summary.resource_changes)
    return _doc(
        "destroy",
        ctx_stack,
        cloud,
        settings,
        renderer,
        started,
        result=result.summary.result,
        removed=remove,
    )


def refresh(
    ctx_stack: str,
    *,
    home: Path,
    env: Mapping[str, str],
    progress: EventSink | None = None,
    expected_total: int | None = None,
) -> dict[str, Any]:
    """``pulumi refresh``: read every resource back from the cloud into the stack's state
    (drift shows as updates)."""
    settings = resolve_settings(home, env)
    renderer = EventRenderer(ctx_stack, "refresh", progress, expected_total)
    started = time.monotonic()
    with translated(ctx_stack, "refresh", settings, renderer):
        st = open_stack(settings, ctx_stack)
        cloud = imctl_config(st).get("cloud")
        result = st.refresh(
            on_event=renderer, color="never", show_secrets=False, suppress_progress=True
        )
    if not renderer.changes:
        renderer.changes = op_map(result.summary.resource_changes)
    return _doc(
        "refresh", ctx_stack, cloud, settings, renderer, started, result=result.summary.result
    )
