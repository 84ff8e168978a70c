"""Which stack's catalog holds a snapshot id: a restore may take it from another stack's
snapshots, such as a destroyed stack's, whose snapshots outlive it.

The stack restored into is searched first (its own snapshot needs no other name); then every
other stack under ``$IMCTL_HOME/stacks``. Ids carry the second they were taken and random
hex, so two stacks share one only when a snapshot directory was copied: that is ambiguous, and
``--from-stack`` names the one meant.
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
    if len(found) > 1:
        raise UsageError(
            f"snapshot {snapshot_id} is in several stacks: {', '.join(found)}",
            "name the one to restore from with --from-stack NAME",
            code="ambiguous_snapshot",
        )
    if found:
        return Catalog(StackFiles(files.dir.parent / found[0]))
    if not files.exists():
        raise SnapshotNotFound(
            f"snapshot {snapshot_id!r} not found: stack {files.name!r} does not exist and no"
            " other stack has it",
            "`imctl snapshot list -s NAME` lists a stack's snapshots",
        )
    return own
