"""The four operations (``pulumi up``, preview, destroy, refresh), each one's result document."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cli.engine.config import write_config
from cli.engine.events import EventRenderer, op_map
from cli.engine.pulumi_errors import translated
from cli.engine.settings import resolve_settings
from cli.engine.staged import result_doc, staged
from cli.engine.workspace import imctl_config, open_stack
from cli.progress import EventSink


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
    """``pulumi up`` without a preview: create or update the stack's resources; -> the result
    document. ``imctl deploy`` previews first, through ``staged``."""
    with staged(ctx_stack, cloud, config, home=home, env=env, secret_config=secret_config) as stage:
        return stage.up(progress, expected_total, message)


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
    """``pulumi preview``: what deploy would change, asking the cloud (needs credentials), each
    planned step under ``steps`` (cli/engine/steps.py). Leaves the stack as it was: the config
    it wrote to preview with is put back, a stack it created is removed."""
    with staged(ctx_stack, cloud, config, home=home, env=env) as stage:
        return stage.preview(progress, expected_total)


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
    return result_doc(
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
    return result_doc(
        "refresh", ctx_stack, cloud, settings, renderer, started, result=result.summary.result
    )
