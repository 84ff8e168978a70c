"""Snapshots and verified restore on the local target.

A snapshot is ``pg_dump -Fc`` of the primary's database taken from an exported snapshot, plus a
manifest::

    $IMCTL_HOME/stacks/<stack>/snapshots/<id>/db.dump        custom format, gzip level 1
                                             /manifest.json  written last, atomically

Why a logical dump and not pg_basebackup: it restores into any later PostgreSQL major version
(a base backup only into the same one), it is a third of the database's size on disk (no
indexes, no dead rows, no WAL), and the content digest can be computed *in the transaction
whose snapshot pg_dump reads*, so the digest describes exactly the dumped data even while
sends are being committed. A base backup would need the digest taken separately, from a
restored copy.

Restore never writes over the live data first. ``--target new`` (the default) restores into a
new cluster next to the live one, compares every conversation with the manifest, and only then
drains the nodes and swaps the data directories (the old one is kept). ``--target in-place``
restores into a second database of the running cluster and swaps the databases, deleting the
old one: it needs no second cluster, and a streaming standby follows it.

``LocalSnapshots`` is the ``cli.snapshots.SnapshotStore`` face; each verb lives in the module
named for it: ``catalog`` (the files on disk; list, show, delete, prune), ``create``, ``verify``,
``restore`` (and ``cutover``, putting restored data into service), over ``pg_client`` (pg_restore,
the content digest, throwaway clusters).
"""

from __future__ import annotations

import builtins

from cli.deadline import Deadline
from cli.progress import Step
from cli.snapshots import (
    CreateResult,
    DeleteResult,
    ListResult,
    RestoreResult,
    RestoreTarget,
    ShowResult,
    VerifyResult,
)
from cli.state import StackFiles
from cli.targets.local.snapshots import create, restore, verify
from cli.targets.local.snapshots.catalog import Catalog


class LocalSnapshots:
    """``cli.snapshots.SnapshotStore`` for the local target."""

    def __init__(self, files: StackFiles) -> None:
        self.files = files
        self.catalog = Catalog(files)
        self.root = self.catalog.root

    def create(self, note: str | None, deadline: Deadline, progress: Step) -> CreateResult:
        return create.create(self.catalog, note, deadline, progress)

    def list(self) -> ListResult:
        return self.catalog.list()

    def show(self, snapshot_id: str) -> ShowResult:
        return self.catalog.show(snapshot_id)

    def delete_plan(self, snapshot_id: str) -> builtins.list[str]:
        return self.catalog.delete_plan(snapshot_id)

    def delete(self, snapshot_id: str) -> DeleteResult:
        return self.catalog.delete(snapshot_id)

    def prune_plan(self, keep: int, previous_data: bool) -> builtins.list[str]:
        return self.catalog.prune_plan(keep, previous_data)

    def prune(self, keep: int, previous_data: bool) -> DeleteResult:
        return self.catalog.prune(keep, previous_data)

    def verify(
        self, snapshot_id: str, deep: bool, deadline: Deadline, progress: Step
    ) -> VerifyResult:
        return verify.verify(self.catalog, snapshot_id, deep, deadline, progress)

    def restore_plan(
        self, snapshot_id: str, target: RestoreTarget, source: Catalog | None = None
    ) -> builtins.list[str]:
        return restore.restore_plan(self.catalog, snapshot_id, target, source)

    def restore(
        self,
        snapshot_id: str,
        target: RestoreTarget,
        deadline: Deadline,
        progress: Step,
        source: Catalog | None = None,
    ) -> RestoreResult:
        return restore.restore(self.catalog, snapshot_id, target, deadline, progress, source)
