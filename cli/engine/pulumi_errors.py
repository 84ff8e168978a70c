"""Every Pulumi failure as the ``ImctlError`` with the CLI's exit code (the table is in the
package docstring, cli/engine/__init__.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Final

from cli.engine.events import EventRenderer, clean
from cli.engine.settings import INSTALL_HINT, MIN_PULUMI_VERSION, SDK_HINT, EngineSettings
from cli.engine.workspace import PROGRAM_CONFIG_PREFIX
from cli.errors import (
    CredentialsError,
    ImctlError,
    Locked,
    PrerequisiteMissing,
    ResourceFailure,
    StackNotFound,
    UsageError,
)

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


def _error_lines(text: str, limit: int = 6) -> list[str]:
    """The lines of Pulumi's output that say what went wrong, without the noise around them."""
    picked: list[str] = []
    for raw in text.splitlines():
        line = clean(raw)
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


def translate_error(
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
    config_lines = [ln for ln in lines if PROGRAM_CONFIG_PREFIX in ln]
    if config_lines:
        message = config_lines[0].split(PROGRAM_CONFIG_PREFIX, 1)[1].strip()
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
def translated(
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
        mapped = translate_error(
            exc, stack=stack, operation=operation, settings=settings, renderer=renderer
        )
        if mapped is None:
            raise
        raise mapped from exc
