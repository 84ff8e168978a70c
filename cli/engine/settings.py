"""Where a cloud operation's state and secrets live, and which ``pulumi`` CLI runs it: checked
before anything is touched."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from cli.errors import CredentialsError, PrerequisiteMissing

# Inline programs for destroy and refresh need `--client` (3.181); older CLIs fail mid-way.
MIN_PULUMI_VERSION: Final = "3.181.0"
INSTALL_HINT: Final = (
    "install the Pulumi CLI on a machine with internet access: "
    "`curl -fsSL https://get.pulumi.com | sh` (it lands in ~/.pulumi/bin; put that on PATH), "
    "or see https://www.pulumi.com/docs/install/"
)
SDK_HINT: Final = "install the cloud extras: pip install 'imctl[aws]' (or [gcp], [alicloud], [all])"


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


def pulumi_work_dir(home: Path, env: Mapping[str, str]) -> Path:
    """Where the engine keeps Pulumi.yaml and Pulumi.<stack>.yaml (doctor reads them too)."""
    return Path(env.get("IMCTL_PULUMI_WORK_DIR") or home / "pulumi" / "project")


def backend_url(home: Path, env: Mapping[str, str]) -> str:
    """Where stack state lives: PULUMI_BACKEND_URL, else a directory under the home."""
    return env.get("PULUMI_BACKEND_URL", "").strip() or f"file://{(home / 'pulumi').resolve()}"


def resolve_settings(home: Path, env: Mapping[str, str]) -> EngineSettings:
    """Check the prerequisites a cloud operation needs, before touching anything."""
    backend = backend_url(home, env)
    if backend == f"file://{(home / 'pulumi').resolve()}":
        (home / "pulumi").mkdir(parents=True, exist_ok=True)
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
    work_dir = pulumi_work_dir(home, env)
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
