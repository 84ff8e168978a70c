"""How a cloud step's failure is told: a partial success (the switch happened, a later step
failed), an unknown outcome (the call never got an answer), and the hints that say what was
left behind."""

from __future__ import annotations

import time

from cli.errors import ImctlError, Partial, ResourceFailure


def partial(done: str, exc: BaseException, left: str) -> Partial:
    why = exc.message if isinstance(exc, ImctlError) else f"{type(exc).__name__}: {exc}"
    return Partial(f"{done}, but then: {why}", left)


def since(t0: float) -> float:
    return round(time.monotonic() - t0, 3)


def join_hint(hint: str, more: str) -> str:
    return f"{hint}; {more}" if hint else more


def unreachable(what: str, exc: BaseException, *, mutation: bool) -> ResourceFailure:
    """A call that never got an answer: for a mutation the outcome is unknown, and the code
    says so, so that no caller undoes or retries what may have happened."""
    unknown = "; whether it took effect is unknown" if mutation else ""
    return ResourceFailure(
        f"{what}: could not reach the API ({exc}){unknown}",
        "check the network; for a mutation, look at the resource before retrying",
        code="outcome_unknown" if mutation else None,
    )
