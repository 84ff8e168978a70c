"""The Pulumi engine behind ``imctl deploy/destroy/plan/status --cloud X``: the only module that
uses Pulumi's Automation API (``pulumi.automation``).

What it does, per call: resolve where state and secrets live (``resolve_settings``), find and
version-check the ``pulumi`` CLI, open the stack (project ``imctl``, the inline program from
``stacks.program``), write the config the imctl flags asked for, run the operation with engine
events turned into ``ProgressEvent`` calls on an ``EventSink`` the command provides (the engine
only emits them; cli/progress_view.py and cli/output.py draw them), and turn every Pulumi
failure into an ``ImctlError`` with the CLI's exit code:

    ConcurrentUpdateError / backend lock      Locked               11
    StackNotFoundError                        StackNotFound         6
    pulumi CLI missing, too old, SDK missing  PrerequisiteMissing  10
    passphrase / cloud credentials rejected   CredentialsError      3
    a resource operation failed               ResourceFailure       4
    config the program rejects                UsageError            2
    program error, anything else              ImctlError            1

State: ``PULUMI_BACKEND_URL`` or ``file://$IMCTL_HOME/pulumi``. Secrets: the passphrase provider
(``PULUMI_CONFIG_PASSPHRASE`` / ``PULUMI_CONFIG_PASSPHRASE_FILE``) unless
``IMCTL_SECRETS_PROVIDER`` names a KMS (``awskms://...``, ``gcpkms://...``). Secrets travel in
the environment or on stdin, never on a command line (other users can read argv in ``ps``).

Importing this module imports no Pulumi package; every operation imports ``pulumi.automation``
when it runs, so ``imctl --help`` stays cheap and a missing SDK is an error with a fix.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

from cli.errors import (
    CredentialsError,
    ImctlError,
    Locked,
    PreconditionFailed,
    PrerequisiteMissing,
    ResourceFailure,
    StackNotFound,
    UsageError,
)
from cli.progress import EventSink, NullSink, ProgressEvent

if TYPE_CHECKING:
    from pulumi import automation as auto

    from cli.targets.cloud.outputs import CloudOutputs

PROJECT: Final = "imctl"
# Inline programs for destroy and refresh need `--client` (3.181); older CLIs fail mid-way.
MIN_PULUMI_VERSION: Final = "3.181.0"
SECRET: Final = "[secret]"
INSTALL_HINT: Final = (
    "install the Pulumi CLI on a machine with internet access: "
    "`curl -fsSL https://get.pulumi.com | sh` (it lands in ~/.pulumi/bin; put that on PATH), "
    "or see https://www.pulumi.com/docs/install/"
)
SDK_HINT: Final = "install the cloud extras: pip install 'imctl[aws]' (or [gcp], [alicloud], [all])"
# Config keys whose names say "secret" are stored encrypted even when passed as plain config.
_SECRET_KEY = re.compile(r"(?i)(password|passphrase|secret|token|private.?key|credential)")
# Pulumi's colour markup, in case a message arrives coloured despite `--color never`.
_COLOR = re.compile(r"<\{%[^%]*%\}>")
_CREDENTIAL_TEXT: Final = (
    "incorrect passphrase",
    "passphrase must be set",
    "PULUMI_ACCESS_TOKEN must be set",
    "[401] Unauthorized",
    "NoCredentialProviders",
    "no valid credential sources",
    "InvalidClientTokenId",
    "ExpiredToken",
    "unable to validate AWS credentials",
    "could not find default credentials",
    "invalid_grant",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
)
_PROGRAM_CONFIG_PREFIX: Final = "imctl config:"

Operation = Literal["up", "preview", "destroy", "refresh"]


@dataclass(frozen=True, slots=True)
class Failure:
    urn: str
    type: str
    name: str
    message: str


def _name_of(urn: str) -> str:
    return urn.rsplit("::", 1)[-1] if urn else ""


def _type_of(urn: str) -> str:
    # urn:pulumi:<stack>::<project>::<parent$...$type>::<name>
    parts = urn.split("::")
    return parts[2].rsplit("$", 1)[-1] if len(parts) >= 4 else ""


def _op_map(ops: Mapping[Any, int] | None) -> dict[str, int]:
    # Keys are OpType members or plain strings, depending on where the map came from.
    return {str(getattr(k, "value", k)): int(v) for k, v in (ops or {}).items()}


def _clean(message: str) -> str:
    return _COLOR.sub("", message).strip()


class EventRenderer:
    """The ``on_event`` callback: counts steps, records failures, feeds ``EventSink``.

    Pulumi calls it from its gRPC thread (or log-watcher thread on older CLIs), hence the lock.
    """

    def __init__(
        self,
        stack: str,
        operation: Operation,
        progress: EventSink | None = None,
        expected_total: int | None = None,
    ) -> None:
        self.stack = stack
        self.operation = operation
        self._progress: EventSink = progress or NullSink()
        self._expected = expected_total or 0
        self._lock = threading.Lock()
        self._started: set[tuple[str, str]] = set()
        self._finished: set[tuple[str, str]] = set()
        self.failures: list[Failure] = []
        self.errors: list[str] = []  # error diagnostics without a resource (program, engine)
        self.warnings: list[str] = []
        self.changes: dict[str, int] = {}
        self.duration_seconds: float | None = None
        self.events_seen = 0
        self.dropped = 0  # events we could not translate or the display raised on

    @property
    def done(self) -> int:
        return len(self._finished)

    @property
    def total(self) -> int:
        return max(len(self._started), len(self._finished), self._expected)

    def __call__(self, event: auto.EngineEvent) -> None:
        with self._lock:
            self.events_seen += 1
            try:
                translated = self._translate(event)
            except Exception:  # an event shape we do not know must not abort the operation
                self.dropped += 1
                return
            if translated is None:
                return
            try:
                self._progress.event(translated)
            except Exception:  # a broken display must not fail a deploy
                self.dropped += 1

    def _resource(self, kind: str, seq: int, md: Any) -> ProgressEvent:
        """A resource step started, finished or failed: counted once per (urn, operation)."""
        op = str(getattr(md.op, "value", md.op))
        self._started.add((md.urn, op))
        if kind != "resource_started":
            self._finished.add((md.urn, op))
        return self._make(kind, seq, op=op, urn=md.urn, type=md.type, name=_name_of(md.urn))

    def _make(self, kind: str, seq: int, **kw: Any) -> ProgressEvent:
        return ProgressEvent(
            kind=kind,
            stack=self.stack,
            operation=self.operation,
            sequence=seq,
            done=self.done,
            total=self.total,
            **kw,
        )

    def _translate(self, ev: auto.EngineEvent) -> ProgressEvent | None:
        seq = ev.sequence
        if ev.prelude_event is not None:
            return self._make("start", seq)
        if ev.resource_pre_event is not None:
            return self._resource("resource_started", seq, ev.resource_pre_event.metadata)
        if ev.res_outputs_event is not None:
            return self._resource("resource_done", seq, ev.res_outputs_event.metadata)
        if ev.res_op_failed_event is not None:
            md = ev.res_op_failed_event.metadata
            if not any(f.urn == md.urn for f in self.failures):
                op = str(getattr(md.op, "value", md.op))
                self.failures.append(Failure(md.urn, md.type, _name_of(md.urn), f"{op} failed"))
            return self._resource("resource_failed", seq, md)
        if ev.diagnostic_event is not None:
            d = ev.diagnostic_event
            severity = d.severity or "info"
            if severity not in ("error", "warning"):
                return None  # info diagnostics are the program's prints: too chatty for progress
            message = _clean(d.message)
            if not message:
                return None
            urn = d.urn or ""
            if severity == "error":
                if urn and _type_of(urn) != "pulumi:pulumi:Stack":
                    self._fail(urn, message)
                else:
                    self.errors.append(message)
            else:
                self.warnings.append(message)
            return self._make(
                "diagnostic",
                seq,
                severity=severity,
                message=message,
                urn=urn or None,
                type=_type_of(urn) or None,
                name=_name_of(urn) or None,
            )
        if ev.policy_event is not None:
            p = ev.policy_event
            severity = "error" if p.enforcement_level == "mandatory" else "warning"
            message = _clean(f"policy {p.policy_pack_name}/{p.policy_name}: {p.message}")
            (self.errors if severity == "error" else self.warnings).append(message)
            return self._make("diagnostic", seq, severity=severity, message=message)
        if ev.summary_event is not None:
            s = ev.summary_event
            self.changes = _op_map(s.resource_changes)
            self.duration_seconds = float(s.duration_seconds)
            return self._make(
                "summary", seq, changes=self.changes, duration_seconds=self.duration_seconds
            )
        return None

    def _fail(self, urn: str, message: str) -> None:
        # resOpFailedEvent may come first with no reason; the diagnostic carries the reason.
        for i, f in enumerate(self.failures):
            if f.urn == urn:
                if f.message.endswith(" failed"):
                    self.failures[i] = Failure(urn, f.type, f.name, message)
                return
        self.failures.append(Failure(urn, _type_of(urn), _name_of(urn), message))

    def counts(self) -> dict[str, int]:
        return {"done": self.done, "total": self.total, "failed": len(self.failures)}


# --- settings: where state, secrets and the CLI are -----------------------------------------


@dataclass(frozen=True)
class EngineSettings:
    home: Path
    backend_url: str
    work_dir: Path  # the project directory: Pulumi.yaml and Pulumi.<stack>.yaml (stack config)
    secrets_provider: str | None
    pulumi_bin: Path
    # Only what differs from this process's environment: the workspace prints it in its repr.
    env_vars: Mapping[str, str] = field(repr=False)

    @property
    def public_backend(self) -> str:
        """The backend URL without credentials someone may have put in it."""
        parts = urlsplit(self.backend_url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        if parts.scheme == "file":
            return self.backend_url
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _is_diy(backend_url: str) -> bool:
    # Every backend but Pulumi Cloud (https://...) keeps secrets with the passphrase or a KMS.
    return not backend_url.startswith(("https://", "http://"))


def find_pulumi(env: Mapping[str, str]) -> Path:
    """The ``pulumi`` binary: on ``PATH``, else where the installer puts it
    (``$PULUMI_HOME/bin`` or ``~/.pulumi/bin``, often not on a CI runner's PATH)."""
    candidates: list[Path] = []
    found = shutil.which("pulumi", path=env.get("PATH", ""))
    if found:
        candidates.append(Path(found))
    home = env.get("HOME") or str(Path.home())
    candidates.append(Path(env.get("PULUMI_HOME") or Path(home) / ".pulumi") / "bin" / "pulumi")
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise PrerequisiteMissing(
        "the Pulumi CLI (`pulumi`) is not installed or not on PATH", INSTALL_HINT
    )


def resolve_settings(home: Path, env: Mapping[str, str]) -> EngineSettings:
    """Check the prerequisites a cloud operation needs, before touching anything."""
    backend = env.get("PULUMI_BACKEND_URL", "").strip()
    if not backend:
        state = home / "pulumi"
        state.mkdir(parents=True, exist_ok=True)
        backend = f"file://{state.resolve()}"
    provider = env.get("IMCTL_SECRETS_PROVIDER", "").strip() or None
    if (provider is None or provider == "passphrase") and _is_diy(backend):
        passfile = env.get("PULUMI_CONFIG_PASSPHRASE_FILE")
        if "PULUMI_CONFIG_PASSPHRASE" not in env and not passfile:
            raise CredentialsError(
                "no secrets passphrase: the stack's secrets are encrypted with one",
                "set PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE), or use a KMS "
                "key: IMCTL_SECRETS_PROVIDER=awskms://alias/imctl?region=us-east-1 (gcpkms://...)",
            )
        if passfile and "PULUMI_CONFIG_PASSPHRASE" not in env and not Path(passfile).is_file():
            raise CredentialsError(
                f"PULUMI_CONFIG_PASSPHRASE_FILE names {passfile}, which does not exist",
                "point it at a file holding the passphrase",
            )
    work_dir = Path(env.get("IMCTL_PULUMI_WORK_DIR") or home / "pulumi" / "project")
    work_dir.mkdir(parents=True, exist_ok=True)
    binary = find_pulumi(env)
    forced = {"PULUMI_BACKEND_URL": backend, "PULUMI_SKIP_UPDATE_CHECK": "true"}
    env_vars = {k: v for k, v in env.items() if os.environ.get(k) != v}
    env_vars.update(forced)
    return EngineSettings(
        home=home,
        backend_url=backend,
        work_dir=work_dir,
        secrets_provider=provider,
        pulumi_bin=binary,
        env_vars=env_vars,
    )


# --- errors --------------------------------------------------------------------------------


def _error_lines(text: str, limit: int = 6) -> list[str]:
    """The lines of Pulumi's output that say what went wrong, without the noise around them."""
    picked: list[str] = []
    for raw in text.splitlines():
        line = _clean(raw)
        if not line:
            continue
        low = line.lower()
        if low.startswith(("error:", "panic:")) or " error: " in low:
            body = line.split("error:", 1)[-1].strip() if "error:" in line else line
            if body and body not in picked and body.lower() != "update failed":
                picked.append(body)
    return picked[:limit]


def _first(lines: list[str], fallback: str) -> str:
    return lines[0] if lines else fallback


def _lock_holder(text: str) -> str:
    for line in text.splitlines():
        if "created by" in line:
            return line.split("created by", 1)[1].strip()
    return ""


def _translate_error(
    exc: BaseException,
    *,
    stack: str,
    operation: str,
    settings: EngineSettings | None,
    renderer: EventRenderer | None,
) -> ImctlError | None:
    """The ImctlError for a Pulumi failure, or None if ``exc`` is not one of Pulumi's."""
    from pulumi.automation import errors as perr

    backend = settings.public_backend if settings is not None else "the backend"
    text = str(exc)
    if isinstance(exc, perr.ConcurrentUpdateError):
        holder = _lock_holder(text)
        where = f"cd {settings.work_dir} && " if settings is not None else ""
        return Locked(
            f"stack {stack!r} is locked by another Pulumi operation"
            + (f" ({holder})" if holder else ""),
            "wait for it to finish and re-run; only if it died, clear the lock: "
            f"{where}PULUMI_BACKEND_URL={backend} pulumi cancel --yes --stack {stack}",
        )
    if isinstance(exc, perr.StackNotFoundError):
        return StackNotFound(
            f"stack {stack!r} not found in {backend}",
            f"deploy it first (`imctl deploy -s {stack} --cloud ...`), or check "
            "PULUMI_BACKEND_URL points at the backend that holds it",
        )
    if isinstance(exc, perr.StackAlreadyExistsError):
        return ImctlError(
            f"stack {stack!r} already exists in {backend}",
            "another process created it just now; re-run",
            code="stack_exists",
        )
    if isinstance(exc, perr.InvalidVersionError):
        return PrerequisiteMissing(
            f"the Pulumi CLI is not usable: {exc}",
            f"imctl needs Pulumi >= {MIN_PULUMI_VERSION}; {INSTALL_HINT}",
        )
    if not isinstance(exc, perr.CommandError):
        return None
    lines = _error_lines(text)
    if any(s in text for s in _CREDENTIAL_TEXT):
        cred = [ln for ln in lines if any(s.lower() in ln.lower() for s in _CREDENTIAL_TEXT)]
        why = _first(cred or lines, "see the pulumi output with -v")
        return CredentialsError(
            f"pulumi {operation}: credentials rejected: {why}",
            "check PULUMI_CONFIG_PASSPHRASE (it must be the one the stack was created with) and "
            "the cloud credentials (aws sts get-caller-identity / gcloud auth list / aliyun "
            "configure list)",
        )
    config_lines = [ln for ln in lines if _PROGRAM_CONFIG_PREFIX in ln]
    if config_lines:
        message = config_lines[0].split(_PROGRAM_CONFIG_PREFIX, 1)[1].strip()
        return UsageError(f"stack config: {message}", "fix it with --set key=value", code="config")
    if isinstance(exc, perr.CompilationError | perr.InlineSourceRuntimeError | perr.RuntimeError):
        return ImctlError(
            f"the Pulumi program failed during {operation}: {_first(lines, 'see -v output')}",
            "a bug in stacks/ or an unexpected cloud answer; `imctl plan --cloud ...` runs the "
            "same program offline under mocks",
            code="program_error",
        )
    if renderer is not None and renderer.failures:
        first = renderer.failures[0]
        more = f" (and {len(renderer.failures) - 1} more)" if len(renderer.failures) > 1 else ""
        return ResourceFailure(
            f"pulumi {operation}: {first.type} {first.name} failed: {first.message}{more}",
            "fix the cause and re-run (deploys are idempotent: done resources are kept)",
        )
    if renderer is not None and renderer.errors:
        lines = renderer.errors + lines
    tail = [ln for ln in text.strip().splitlines() if ln.strip()][-1:] or ["no output"]
    return ImctlError(
        f"pulumi {operation} failed: {_first(lines, tail[0].strip())}",
        "re-run with -v for the engine's events",
        code="pulumi_error",
    )


@contextlib.contextmanager
def _translated(
    stack: str,
    operation: str,
    settings: EngineSettings | None = None,
    renderer: EventRenderer | None = None,
) -> Iterator[None]:
    try:
        yield
    except ImctlError:
        raise
    except ImportError as exc:
        if (exc.name or "").split(".")[0] in ("pulumi", "grpc", "semver"):
            raise PrerequisiteMissing(
                f"the Pulumi SDK is not installed ({exc})", SDK_HINT
            ) from None
        raise
    except FileNotFoundError as exc:
        # The Automation API runs `pulumi` by name; a CLI removed since find_pulumi lands here.
        if "pulumi" in str(exc.filename or exc):
            raise PrerequisiteMissing(
                f"the Pulumi CLI could not be run: {exc}", INSTALL_HINT
            ) from None
        raise
    except Exception as exc:
        mapped = _translate_error(
            exc, stack=stack, operation=operation, settings=settings, renderer=renderer
        )
        if mapped is None:
            raise
        raise mapped from exc


# --- the CLI, the workspace, the stack ------------------------------------------------------


def _pulumi_command(settings: EngineSettings) -> auto.PulumiCommand:
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


def _program() -> None:
    """The inline program: what ``stacks/__main__.py`` does for a plain ``pulumi up``."""
    from stacks.program import run

    run(_PROGRAM_CONFIG_PREFIX)


def _options(settings: EngineSettings, cmd: auto.PulumiCommand) -> auto.LocalWorkspaceOptions:
    from pulumi.automation import LocalWorkspaceOptions, ProjectSettings

    return LocalWorkspaceOptions(
        work_dir=str(settings.work_dir),
        program=_program,
        env_vars=dict(settings.env_vars),
        secrets_provider=settings.secrets_provider,
        project_settings=ProjectSettings(name=PROJECT, runtime="python"),
        pulumi_command=cmd,
    )


def _select(settings: EngineSettings, stack: str) -> auto.Stack:
    from pulumi import automation as auto

    cmd = _pulumi_command(settings)
    return auto.select_stack(
        stack_name=stack, project_name=PROJECT, program=_program, opts=_options(settings, cmd)
    )


def _qualified(key: str) -> str:
    return key if ":" in key else f"{PROJECT}:{key}"


def _imctl_config(stack: auto.Stack) -> dict[str, str]:
    """The stack's imctl-namespace config, plain values only (secrets are not typed config)."""
    out: dict[str, str] = {}
    for key, value in stack.get_all_config().items():
        ns, _, name = key.partition(":")
        if ns == PROJECT and not value.secret:
            out[name] = str(value.value)
    return out


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


def _validated(
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


def _write_config(
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

    cmd = _pulumi_command(settings)
    created = False
    try:
        st = auto.select_stack(
            stack_name=stack, project_name=PROJECT, program=_program, opts=_options(settings, cmd)
        )
        existing = _imctl_config(st)
    except auto.StackNotFoundError:
        # Validate before creating, so a typo in --region leaves no empty stack behind.
        _validated(stack, cloud, {}, config)
        st = auto.create_or_select_stack(
            stack_name=stack, project_name=PROJECT, program=_program, opts=_options(settings, cmd)
        )
        existing, created = {}, True
    if existing.get("teardown") == "true" and "teardown" not in config:
        # A destroy that failed half-way lifted the databases' protection: a deploy restores it.
        config = {**config, "teardown": "false"}
    changed = _validated(stack, cloud, existing, config)
    merged = {**existing, **config, "cloud": cloud}
    _refuse_undeployable(stack, merged)
    _write_config(settings, st, changed, secret_config or {})
    return st, created, changed, merged


def _roles_moved(st: auto.Stack, config: Mapping[str, str]) -> bool:
    """A failover was recorded since the last deploy: the state still shows the promoted
    instance as a replica. Refresh first, so Pulumi compares the program with what the cloud
    now has, instead of trying to undo the promotion."""
    deployed = st.outputs().get("failovers")
    configured = config.get("failovers", "0")
    return deployed is not None and str(deployed.value) != configured


def _refuse_undeployable(stack: str, merged: Mapping[str, str]) -> None:
    """The program refuses these too (for a plain ``pulumi up``); checking here first gives the
    precondition exit code and writes nothing."""
    from stacks.config import KEY_NAMES, ConfigError, check_deployable, parse

    try:
        check_deployable(parse({k: v for k, v in merged.items() if k in KEY_NAMES}))
    except ConfigError as exc:
        raise PreconditionFailed(f"stack {stack!r}: {exc.message}", exc.hint) from None


# --- outputs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackOutputs:
    """The stack's outputs. ``values`` holds secrets in plain text: keep it in memory, print
    ``public()``."""

    values: Mapping[str, Any] = field(repr=False)
    secret_keys: frozenset[str] = frozenset()
    config: Mapping[str, str] = field(default_factory=dict)  # the stack's plain imctl config

    def public(self) -> dict[str, Any]:
        return {k: (SECRET if k in self.secret_keys else v) for k, v in self.values.items()}

    def contract(self) -> dict[str, Any]:
        """The outputs contract document, each region's kubeconfig folded into its entry (and
        nowhere else, so ``CloudOutputs.extra`` holds no credentials)."""
        doc = {k: v for k, v in self.values.items() if k not in ("kubeconfig", "kubeconfigs")}
        kubeconfigs = dict(self.values.get("kubeconfigs") or {})
        primary = self.values.get("primary_region")
        if self.values.get("kubeconfig") and primary and primary not in kubeconfigs:
            kubeconfigs[primary] = self.values["kubeconfig"]
        regions = {
            name: {**entry, **({"kubeconfig": kubeconfigs[name]} if name in kubeconfigs else {})}
            for name, entry in dict(doc.get("regions") or {}).items()
        }
        doc["regions"] = regions
        return doc

    def cloud(self, stack: str = "") -> CloudOutputs:
        from cli.targets.cloud.outputs import CloudOutputs

        if not self.values:
            raise PreconditionFailed(
                f"stack {stack!r} has no outputs: it was never deployed, or was destroyed",
                f"deploy it: imctl deploy -s {stack} --cloud ... --region ...",
            )
        outs = CloudOutputs.from_json(self.contract(), source=f"stack {stack} outputs")
        writer, failovers = self.configured_writer()
        if writer is not None and writer != outs.primary_region:
            deployed = self.values.get("failovers", 0)
            outs = outs.with_writer(
                writer,
                f"the stack config records {failovers} failover(s), the deployed outputs"
                f" {deployed}: {writer} holds the writer. Run imctl deploy -s {stack} when"
                " both regions are reachable, to create the new replica and record the roles",
            )
        if restored := self.config.get("restoredInstance"):
            outs = replace(
                outs,
                extra={
                    **outs.extra,
                    "restore_note": f"the workload runs on {restored}, restored outside the"
                    " stack: deploys refuse until you keep it (imctl restore <snapshot> --target"
                    " in-place) or drop it (imctl deploy --set restoredInstance=)",
                },
            )
        return outs

    def configured_writer(self) -> tuple[str | None, int]:
        """The writer region the stack config names (``failovers`` written back by
        ``imctl failover``), which may be ahead of the outputs until the next deploy."""
        from stacks.config import writer_of

        region = self.config.get("region")
        try:
            failovers = int(self.config.get("failovers", "0") or 0)
        except ValueError:
            return None, 0
        if region is None:
            return None, failovers
        return writer_of(region, self.config.get("standbyRegion") or None, failovers), failovers


def _outputs_of(
    output_map: Mapping[str, auto.OutputValue], config: Mapping[str, str] | None = None
) -> StackOutputs:
    return StackOutputs(
        values={k: v.value for k, v in output_map.items()},
        secret_keys=frozenset(k for k, v in output_map.items() if v.secret),
        config=dict(config or {}),
    )


def outputs(ctx_stack: str, *, home: Path, env: Mapping[str, str]) -> StackOutputs:
    """The deployed stack's outputs (``stack output --json --show-secrets``), with its config:
    a failover writes the new roles to the config before any deploy updates the outputs."""
    settings = resolve_settings(home, env)
    with _translated(ctx_stack, "outputs", settings):
        st = _select(settings, ctx_stack)
        return _outputs_of(st.outputs(), _imctl_config(st))


def config_values(ctx_stack: str, *, home: Path, env: Mapping[str, str]) -> dict[str, str]:
    """The stack's plain imctl config (``pulumi config``)."""
    settings = resolve_settings(home, env)
    with _translated(ctx_stack, "config", settings):
        return _imctl_config(_select(settings, ctx_stack))


def set_config(
    ctx_stack: str, cloud: str, values: Mapping[str, str], *, home: Path, env: Mapping[str, str]
) -> dict[str, str]:
    """Write config back to an existing stack (``imctl scale``), so the next deploy keeps it.
    -> the keys that changed."""
    settings = resolve_settings(home, env)
    with _translated(ctx_stack, "config", settings):
        st = _select(settings, ctx_stack)
        changed = _validated(ctx_stack, cloud, _imctl_config(st), values)
        _write_config(settings, st, changed, {})
        return changed


# --- operations ----------------------------------------------------------------------------


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
    with _translated(ctx_stack, "up", settings, renderer):
        st, created, changed, merged = _prepare(settings, ctx_stack, cloud, config, secret_config)
        refresh = not created and _roles_moved(st, merged)
        result = st.up(
            on_event=renderer,
            color="never",
            message=message or f"imctl deploy -s {ctx_stack}",
            show_secrets=False,
            suppress_progress=True,
            refresh=refresh,
        )
    outs = _outputs_of(result.outputs)
    if not renderer.changes:
        renderer.changes = _op_map(result.summary.resource_changes)
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
    with _translated(ctx_stack, "preview", settings, renderer):
        st, created, changed, _ = _prepare(settings, ctx_stack, cloud, config, None)
        result = st.preview(on_event=renderer, color="never", suppress_progress=True)
    renderer.changes = _op_map(result.change_summary) or renderer.changes
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
    with _translated(ctx_stack, "destroy", settings, renderer):
        st = _select(settings, ctx_stack)
        config = _imctl_config(st)
        cloud = config.get("cloud")
        if cloud is not None and st.outputs():
            _write_config(settings, st, {"teardown": "true"}, {})
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
        renderer.changes = _op_map(result.summary.resource_changes)
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
    with _translated(ctx_stack, "refresh", settings, renderer):
        st = _select(settings, ctx_stack)
        cloud = _imctl_config(st).get("cloud")
        result = st.refresh(
            on_event=renderer, color="never", show_secrets=False, suppress_progress=True
        )
    if not renderer.changes:
        renderer.changes = _op_map(result.summary.resource_changes)
    return _doc(
        "refresh", ctx_stack, cloud, settings, renderer, started, result=result.summary.result
    )
