"""What a preview plans to change, one entry per resource, from the engine's ``resourcePreEvent``s:
what the deploy shows before it asks, what ``imctl deploy --preview -o json`` lists, and what
``--refuse-replace`` judges.

One entry per (resource, change), in the order the engine announced them:
``{op, urn, type, name, replace_keys, diffs, stateful, why}``. ``op`` is create, update,
replace, delete or import; reads and unchanged resources are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cli.engine.stateful import is_stateful, what_is_lost
from cli.errors import PreconditionFailed

# Steps that change nothing in the cloud (reads, refreshes, state bookkeeping).
_NO_CHANGE: Final = frozenset(
    {
        "same",
        "read",
        "refresh",
        "read-replacement",
        "read-discard",
        "discard",
        "discard-replaced",
        "remove-pending-replace",
    }
)
# A replacement reaches the event stream as up to three steps for one resource (the new one
# created, the logical replace, the old one deleted): one planned "replace" here.
_REPLACEMENT: Final = frozenset(
    {"replace", "create-replacement", "delete-replaced", "import-replacement"}
)
DESTRUCTIVE: Final = frozenset({"replace", "delete"})


@dataclass(frozen=True, slots=True)
class PlannedStep:
    op: str
    urn: str
    type: str
    name: str
    replace_keys: tuple[str, ...] = ()
    diffs: tuple[str, ...] = ()
    retained: bool = False  # retainOnDelete: the old resource stays in the cloud, unmanaged
    tainted: bool = False

    @property
    def stateful(self) -> bool:
        return is_stateful(self.type)

    @property
    def loses_state(self) -> bool:
        """A stateful resource replaced or deleted: what --refuse-replace refuses."""
        return self.stateful and self.op in DESTRUCTIVE

    @property
    def why(self) -> str:
        if self.op == "replace":
            if self.replace_keys:
                why = f"changing {', '.join(self.replace_keys)} forces a new resource"
            elif self.tainted:
                why = "marked for replacement (tainted)"
            else:
                why = "the provider must replace it (it names no property)"
            if self.retained:
                why += "; the old one is retained in the cloud, no longer managed"
            return why
        if self.op == "delete":
            why = "no longer in the program"
            if self.retained:
                why += " (retained in the cloud: only removed from the stack)"
            return why
        if self.op == "update":
            return f"changes {', '.join(self.diffs)}" if self.diffs else "changes in place"
        if self.op == "import":
            return "adopted from the cloud"
        return "new in the program"

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "replace_keys": list(self.replace_keys),
            "diffs": list(self.diffs),
            "stateful": self.stateful,
            "why": self.why,
        }

    def describe(self) -> str:
        """One line for a confirmation: the resource, why, and what is lost with it."""
        lost = what_is_lost(self.type)
        tail = f"; loses {lost}" if lost and self.op in DESTRUCTIVE else ""
        return f"{self.op.upper()} {self.type} {self.name}: {self.why}{tail}"


def _op_name(op: Any) -> str:
    return str(getattr(op, "value", op))


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _replace_keys(keys: Iterable[str] | None, detailed: Mapping[str, Any] | None) -> list[str]:
    # The engine names them in ``keys``; providers with detailed diffs also mark each property
    # whose change forces the replacement (``update-replace``, ``add-replace``, ...).
    found = list(keys or [])
    for path, diff in (detailed or {}).items():
        if _op_name(getattr(diff, "diff_kind", "")).endswith("-replace"):
            found.append(path)
    return found


class StepLog:
    """The planned steps, collected from the engine's event thread (the caller holds a lock)."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, str], PlannedStep] = {}

    def add(self, md: Any) -> None:
        """Record one ``StepEventMetadata`` (a ``resourcePreEvent``'s)."""
        op = _op_name(md.op)
        if op in _NO_CHANGE:
            return
        if op in _REPLACEMENT:
            op = "replace"
        old = getattr(md, "old", None)
        step = PlannedStep(
            op=op,
            urn=md.urn,
            type=md.type,
            name=md.urn.rsplit("::", 1)[-1],
            replace_keys=_unique(_replace_keys(md.keys, md.detailed_diff)),
            # ``diffs`` names top-level properties; the detailed paths only when it is missing.
            diffs=_unique(md.diffs or list(md.detailed_diff or {})),
            retained=bool(getattr(old, "retain_on_delete", False)),
            tainted=bool(getattr(old, "taint", False)),
        )
        key = (md.urn, op)
        seen = self._steps.get(key)
        if seen is not None:  # another step of the same replacement: keep what each one says
            step = PlannedStep(
                op=op,
                urn=step.urn,
                type=step.type,
                name=step.name,
                replace_keys=_unique([*seen.replace_keys, *step.replace_keys]),
                diffs=_unique([*seen.diffs, *step.diffs]),
                retained=seen.retained or step.retained,
                tainted=seen.tainted or step.tainted,
            )
        self._steps[key] = step

    def steps(self) -> list[PlannedStep]:
        return list(self._steps.values())


def state_losses(steps: Iterable[PlannedStep]) -> list[PlannedStep]:
    return [s for s in steps if s.loses_state]


def refuse_state_loss(stack: str, steps: Iterable[PlannedStep]) -> None:
    """``--refuse-replace``: exit 10 naming every stateful resource the plan would replace or
    delete, and why, before anything is applied."""
    losses = state_losses(steps)
    if not losses:
        return
    named = "; ".join(s.describe() for s in losses)
    err = PreconditionFailed(
        f"stack {stack!r}: the plan replaces or deletes {len(losses)} stateful"
        f" resource{'s' if len(losses) != 1 else ''}: {named}",
        "nothing was applied. Change the config back, or take a snapshot (imctl snapshot create)"
        " and deploy without --refuse-replace once the loss is intended",
        code="stateful_replacement",
    )
    err.details = {"steps": [s.to_json() for s in losses]}
    raise err
