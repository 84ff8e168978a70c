"""Helpers around the stand-in ``pulumi`` CLI (the script next to this file).

``FakePulumi.create(tmp)`` installs the script as ``<tmp>/pulumi-root/bin/pulumi`` (the layout
``PulumiCommand(root=...)`` expects) with this interpreter in its shebang, and prepares the env
an engine call needs: PATH with the fake first, a throwaway HOME, a passphrase, the call log.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).with_name("pulumi")
ENGINE = Path(__file__).with_name("fake_engine.py")  # the script imports it from its directory
PASSPHRASE = "correct horse battery staple"


def install(root: Path) -> Path:
    """Copy the stand-in to ``root/bin/pulumi``, runnable by this interpreter, with the module it
    imports next to it; -> its path."""
    binary = root / "bin" / "pulumi"
    binary.parent.mkdir(parents=True, exist_ok=True)
    body = SCRIPT.read_text().split("\n", 1)[1]
    # -I: the user's site-packages and PYTHON* variables cannot change what the fake does.
    binary.write_text(f"#!{sys.executable} -I\n{body}")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    (binary.parent / ENGINE.name).write_text(ENGINE.read_text())
    return binary


@dataclass
class FakePulumi:
    binary: Path
    log: Path
    home: Path  # IMCTL_HOME
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, tmp: Path) -> FakePulumi:
        binary = install(tmp / "pulumi-root")
        log = tmp / "pulumi-calls.jsonl"
        user_home = tmp / "user-home"
        user_home.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": f"{binary.parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(user_home),
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "FAKE_PULUMI_LOG": str(log),
        }
        return cls(binary=binary, log=log, home=tmp / "imctl-home", env=env)

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def commands(self) -> list[list[str]]:
        """The words of each call (flags and their values left out), e.g. ["config", "set"]."""
        out = []
        for call in self.calls():
            argv: list[str] = list(call["argv"])
            while argv and argv[0].startswith("-"):  # leading global flags: --non-interactive
                argv.pop(0)
            words: list[str] = []
            for tok in argv:
                if tok.startswith("-"):
                    break
                words.append(tok)
            out.append(words[:2] if words and words[0] in ("stack", "config") else words[:1])
        return out

    def find(self, *words: str) -> list[dict[str, Any]]:
        want = list(words)
        return [c for c, w in zip(self.calls(), self.commands(), strict=True) if w == want]

    def state_dir(self) -> Path:
        return self.home / "pulumi" / ".pulumi-fake"

    def stack_state(self, stack: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(
            (self.state_dir() / "stacks" / f"imctl.{stack}.json").read_text()
        )
        return doc

    def work_dir(self) -> Path:
        return self.home / "pulumi" / "project"
