"""The stack's config: what the imctl flags stand for, checked against what the program accepts,
and written with secrets kept off every command line."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cli.engine.pulumi_errors import translated
from cli.engine.settings import EngineSettings, resolve_settings
from cli.engine.workspace import PROJECT, imctl_config, open_stack
from cli.errors import UsageError

if TYPE_CHECKING:
    from pulumi import automation as auto

# Config keys whose names say "secret" are stored encrypted even when passed as plain config.
_SECRET_KEY = re.compile(r"(?i)(password|passphrase|secret|token|private.?key|credential)")


def _qualified(key: str) -> str:
    return key if ":" in key else f"{PROJECT}:{key}"


def stack_config(
    region: str | None, standby_region: str | None, overrides: Mapping[str, str]
) -> dict[str, str]:
    """The config keys the imctl flags stand for: ``--region``, ``--standby-region`` (``""``
    removes the standby) and ``--set key=value``. Flags not given stay as the stack has them, so
    a deploy does not undo what ``imctl scale`` wrote back."""
    for key in ("cloud", "region", "standbyRegion"):
        if key in overrides:
            raise UsageError(f"{key} is set by a flag, not by --set", f"drop {key} from --set")
    values = dict(overrides)
    if region is not None:
        values["region"] = region
    if standby_region is not None:
        values["standbyRegion"] = standby_region
    return values


def validated(
    stack: str, cloud: str, existing: Mapping[str, str], new: Mapping[str, str]
) -> dict[str, str]:
    """The changed keys, after checking the merged config the program will see."""
    from stacks.config import KEY_NAMES, ConfigError, parse

    stored = existing.get("cloud")
    if stored and stored != cloud:
        raise UsageError(
            f"stack {stack!r} is a {stored} stack, not {cloud}",
            f"use --cloud {stored}, or another stack name with -s",
        )
    wanted = {**new, "cloud": cloud}
    typed = {k: v for k, v in {**existing, **wanted}.items() if k in KEY_NAMES}
    extra = sorted(k for k in new if k not in KEY_NAMES and not _SECRET_KEY.search(k))
    try:
        if extra:
            parse({**typed, extra[0]: new[extra[0]]})  # parse names it and suggests a fix
        parse(typed)
    except ConfigError as exc:
        raise UsageError(
            f"stack config: {exc.message}", exc.hint or "fix it with --set key=value", code="config"
        ) from None
    return {k: v for k, v in wanted.items() if existing.get(k) != v}


def _set_secret(settings: EngineSettings, st: auto.Stack, key: str, value: str) -> None:
    """``pulumi config set KEY --secret`` with the value on stdin: the Automation API puts
    values on the command line, where any local user can read them in ``ps``."""
    from pulumi.automation import CommandResult
    from pulumi.automation.errors import create_command_error

    command = st.workspace.pulumi_command.command
    argv = [command, "--non-interactive", "config", "set", _qualified(key), "--secret"]
    argv += ["--stack", st.name]
    env = {**os.environ, **settings.env_vars, "PULUMI_AUTOMATION_API": "true"}
    done = subprocess.run(
        argv,
        input=value,
        capture_output=True,
        text=True,
        cwd=st.workspace.work_dir,
        env=env,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise create_command_error(CommandResult(done.stdout, done.stderr, done.returncode))


def write_config(
    settings: EngineSettings,
    st: auto.Stack,
    plain: Mapping[str, str],
    secret: Mapping[str, str],
) -> None:
    from pulumi.automation import ConfigValue

    to_hide = {k: v for k, v in plain.items() if _SECRET_KEY.search(k)}
    shown = {k: v for k, v in plain.items() if k not in to_hide}
    if shown:
        st.set_all_config(
            {_qualified(k): ConfigValue(value=v, secret=False) for k, v in shown.items()}
        )
    for key, value in {**to_hide, **secret}.items():
        _set_secret(settings, st, key, value)


def restore_config(
    settings: EngineSettings,
    st: auto.Stack,
    before: Mapping[str, auto.ConfigValue],
    keys: Iterable[str],
) -> None:
    """Put ``keys`` back as ``before`` (the stack's whole config, secrets shown) had them: those
    it lacked are removed, the others get their old value back (a secret on stdin again)."""
    from pulumi.automation import ConfigValue

    written = list(dict.fromkeys(_qualified(k) for k in keys))
    added = [k for k in written if k not in before]
    if added:
        st.remove_all_config(added)
    plain = {
        k: ConfigValue(value=before[k].value, secret=False)
        for k in written
        if k in before and not before[k].secret
    }
    if plain:
        st.set_all_config(plain)
    for key in written:
        if key in before and before[key].secret:
            _set_secret(settings, st, key, before[key].value)


def config_values(ctx_stack: str, *, home: Path, env: Mapping[str, str]) -> dict[str, str]:
    """The stack's plain imctl config (``pulumi config``)."""
    settings = resolve_settings(home, env)
    with translated(ctx_stack, "config", settings):
        return imctl_config(open_stack(settings, ctx_stack))


def set_config(
    ctx_stack: str, cloud: str, values: Mapping[str, str], *, home: Path, env: Mapping[str, str]
) -> dict[str, str]:
    """Write config back to an existing stack (``imctl scale``), so the next deploy keeps it.
    -> the keys that changed."""
    settings = resolve_settings(home, env)
    with translated(ctx_stack, "config", settings):
        st = open_stack(settings, ctx_stack)
        changed = validated(ctx_stack, cloud, imctl_config(st), values)
        write_config(settings, st, changed, {})
        return changed
