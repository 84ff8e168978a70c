"""Reading the files imctl keeps about a stack without trusting them.

config.json, secrets.json, ports.json and the pid files are written by imctl, but a hand edit,
a bad merge or a damaged disk can put anything there, and every command acts on what they say
(``replicas: -3`` once drained every node and exited 0). Each read goes through a ``FileCheck``,
which refuses a wrong type, a value out of range or a missing or unknown key with one error
naming the file, the key, what is wrong and what to do, before any command acts on it.

Light on purpose: ``cli.state`` imports it, and ``imctl --help`` imports ``cli.state``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from cli.errors import StateInvalid

PORT_MIN, PORT_MAX = 1024, 65535


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


class FileCheck:
    """Checks on one parsed JSON file; every failure names ``path`` and the key."""

    def __init__(self, path: Path, hint: str) -> None:
        self.path = path
        self.hint = hint

    def fail(self, key: str, problem: str, hint: str | None = None) -> NoReturn:
        where = f"key {key!r}" if key else "the document"
        raise StateInvalid(f"{self.path}: {where} {problem}", hint or self.hint)

    def load(self) -> Any:
        """The parsed file; a file that is not JSON fails here."""
        try:
            text = self.path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise StateInvalid(f"{self.path} cannot be read ({exc})", self.hint) from exc
        return self.parse(text)

    def parse(self, text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError as exc:
            raise StateInvalid(f"{self.path} is not valid JSON ({exc})", self.hint) from exc

    def obj(self, value: Any, key: str = "") -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key, f"is {_show(value)}; it must be a JSON object")
        return value

    def keys(
        self, doc: Mapping[str, Any], prefix: str, required: Iterable[str], known: Iterable[str]
    ) -> None:
        known = set(known)
        for k in doc:
            if k not in known:
                self.fail(
                    prefix + k,
                    f"is not a key imctl knows (expected: {', '.join(sorted(known))})",
                    f"remove {k!r} from {self.path.name} (or fix its spelling)",
                )
        for k in required:
            if k not in doc:
                self.fail(prefix + k, "is missing")

    def int_in(self, value: Any, key: str, lo: int, hi: int, what: str = "an integer") -> int:
        # bool is an int to Python, not to whoever wrote `true` in a config
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            self.fail(key, f"is {_show(value)}; it must be {what} from {lo} to {hi}")
        return value

    def port(self, value: Any, key: str) -> int:
        return self.int_in(value, key, PORT_MIN, PORT_MAX, "a TCP port")

    def number_in(self, value: Any, key: str, lo: float, hi: float) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or not lo <= value <= hi:
            self.fail(key, f"is {_show(value)}; it must be a number from {lo:g} to {hi:g}")
        return float(value)

    def text(self, value: Any, key: str, *, min_len: int = 1, one_line: bool = False) -> str:
        if not isinstance(value, str) or len(value) < min_len:
            need = "a non-empty string" if min_len <= 1 else f"a string of {min_len}+ characters"
            shown = "a string that is too short" if isinstance(value, str) else _show(value)
            self.fail(key, f"is {shown}; it must be {need}")
        if one_line and ("\n" in value or "\r" in value):
            self.fail(key, "holds a line break; it must be one line")
        return value

    def choice(self, value: Any, key: str, choices: Iterable[str]) -> str:
        options = list(choices)
        if value not in options:
            self.fail(key, f"is {_show(value)}; it must be one of {', '.join(options)}")
        return str(value)

    def distinct(self, values: Mapping[str, int], what: str) -> None:
        seen: dict[int, str] = {}
        for key, v in values.items():
            if v in seen:
                self.fail(key, f"is {v}, the same {what} as {seen[v]!r}; each must differ")
            seen[v] = key
