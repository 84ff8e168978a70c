"""Which catalog a restore reads: the stack's own snapshots, or, only when ``--from-stack``
names it, another stack's (a destroyed stack's, say, whose snapshots outlive it).

Never found by searching: a snapshot id pasted into the wrong ``-s`` would otherwise replace
that stack's data with another stack's, and ``--yes`` shows nobody the plan that says so. An id
that only another stack holds is refused with that stack's name, so the fix is one flag away.
"""

from __future__ import annotations

from cli.errors import SnapshotNotFound, UsageError
from cli.snapshots import SNAPSHOT_ID_RE
from cli.state import StackFiles
from cli.targets.local.snapshots.catalog import MANIFEST, Catalog


def holders(files: StackFiles, snapshot_id: str) -> list[str]:
    """The other stacks with a complete snapshot of this id, by name."""
    stacks = files.dir.parent
    if not SNAPSHOT_ID_RE.fullmatch(snapshot_id) or not stacks.is_dir():
        return []
    return sorted(
        d.name
        for d in stacks.iterdir()
        if d.is_dir()
        and d.name != files.name
        and (d / "snapshots" / snapshot_id / MANIFEST).exists()
    )


def source_catalog(files: StackFiles, snapshot_id: str, from_stack: str | None) -> Catalog:
    """The catalog to restore ``snapshot_id`` from; its ``load`` says when the id is unknown."""
    if from_stack is not None:
        source = Catalog(StackFiles(files.dir.parent / from_stack))
        if not source.root.is_dir():
            raise SnapshotNotFound(
                f"stack {from_stack!r} (--from-stack) has no snapshots",
                f"`imctl snapshot list -s {from_stack}` shows a stack's snapshots",
            )
        return source
    own = Catalog(files)
    if SNAPSHOT_ID_RE.fullmatch(snapshot_id) and (own.root / snapshot_id).is_dir():
        return own
    found = holders(files, snapshot_id)
    if found:
        raise UsageError(
            f"snapshot {snapshot_id} is not stack {files.name!r}'s: it is"
            f" {' and '.join(repr(n) for n in found)}'s",
            f"to restore another stack's snapshot into {files.name!r}, name it:"
            f" --from-stack {found[0]}",
            code="snapshot_of_another_stack",
        )
    if not files.exists():
        raise SnapshotNotFound(
            f"snapshot {snapshot_id!r} not found: stack {files.name!r} does not exist and"
            " has no snapshots",
            "`imctl stack ls` lists the stacks; `imctl snapshot list -s NAME` a stack's"
            " snapshots; --from-stack NAME restores one of another stack's",
        )
    return own
