"""The names a mistyped option or command most likely meant.

click's own suggestion is ``difflib.get_close_matches``, which misses a short prefix of a long
name (``--to`` for ``--to-region``, ``sna`` for ``snapshot``): a prefix is what people type.
"""

from __future__ import annotations

from collections.abc import Iterable
from difflib import get_close_matches

MIN_PREFIX = 2  # characters past the dashes; one letter begins too many names to mean one


def nearest(typed: str, names: Iterable[str], limit: int = 3) -> list[str]:
    """What ``typed`` meant, best first: the names it begins, else the close spellings."""
    candidates = sorted(set(names))
    if len(typed.lstrip("-")) >= MIN_PREFIX:
        prefixed = [n for n in candidates if n.startswith(typed) and n != typed]
        if prefixed:
            return sorted(prefixed, key=len)[:limit]
    return get_close_matches(typed, candidates, n=limit, cutoff=0.6)


def did_you_mean(found: list[str]) -> str:
    """`` Did you mean --a or --b?`` (with a leading space), or "" when nothing was found."""
    return f" Did you mean {' or '.join(found)}?" if found else ""
