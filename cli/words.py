"""Values from a result document in words, for text output: no Python reprs (None, True,
[...], {...}) ever reach an operator's screen; ``-o json`` keeps the values themselves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def human(value: Any) -> str:
    """None -> "-", True/False -> "yes"/"no", a list comma-separated, a mapping as
    "key value, ..."; anything else as str()."""
    if value is None:
        return "-"
    if value is True:
        return "yes"
    if value is False:
        return "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {human(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(human(v) for v in value) or "-"
    return str(value)
