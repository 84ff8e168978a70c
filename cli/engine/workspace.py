"""The Pulumi CLI, the workspace and the stack: the project, its inline program and the
stack's imctl config as the Automation API sees them."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from cli.engine.settings import INSTALL_HINT, MIN_PULUMI_VERSION, EngineSettings
from cli.errors import PrerequisiteMissing

if TYPE_CHECKING:
    from pulumi import automation as auto

PROJECT: Final = "imctl"
# The program starts its config errors with this, so that they exit 2 (pulumi_errors), not 1.
PROGRAM_CONFIG_PREFIX: Final = "imctl config:"


def pulumi_command(settings: EngineSettings) -> auto.PulumiCommand:
    from pulumi.automation import PulumiCommand
    from semver import VersionInfo

    binary = settings.pulumi_bin
    # PulumiCommand runs <root>/bin/pulumi, or a bare `pulumi` from this process's PATH.
    root = str(binary.parent.parent) if binary.parent.name == "bin" else None
    try:
        return PulumiCommand(root=root, version=VersionInfo.parse(MIN_PULUMI_VERSION))
    except (FileNotFoundError, PermissionError) as exc:
        raise PrerequisiteMissing(f"cannot run {binary}: {exc}", INSTALL_HINT) from None
    except subprocess.CalledProcessError as exc:
        raise PrerequisiteMissing(
            f"`{binary} version` failed with exit code {exc.returncode}", INSTALL_HINT
        ) from None


def program() -> None:
    """The inline program: what ``stacks/__main__.py`` does for a plain ``pulumi up``."""
    from stacks.program import run

    run(PROGRAM_CONFIG_PREFIX)


def workspace_options(
    settings: EngineSettings, cmd: auto.PulumiCommand
) -> auto.LocalWorkspaceOptions:
    from pulumi.automation import LocalWorkspaceOptions, ProjectSettings

    return LocalWorkspaceOptions(
        work_dir=str(settings.work_dir),
        program=program,
        env_vars=dict(settings.env_vars),
        secrets_provider=settings.secrets_provider,
        project_settings=ProjectSettings(name=PROJECT, runtime="python"),
        pulumi_command=cmd,
    )


def open_stack(settings: EngineSettings, stack: str) -> auto.Stack:
    from pulumi import automation as auto

    cmd = pulumi_command(settings)
    return auto.select_stack(
        stack_name=stack,
        project_name=PROJECT,
        program=program,
        opts=workspace_options(settings, cmd),
    )


def imctl_config(stack: auto.Stack) -> dict[str, str]:
    """The stack's imctl-namespace config, plain values only (secrets are not typed config)."""
    return imctl_values(stack.get_all_config())


def imctl_values(config: Mapping[str, auto.ConfigValue]) -> dict[str, str]:
    """``imctl_config`` of a config map already read."""
    out: dict[str, str] = {}
    for key, value in config.items():
        ns, _, name = key.partition(":")
        if ns == PROJECT and not value.secret:
            out[name] = str(value.value)
    return out
