"""Verified restore: the plan, then the data restored beside the live data and compared with the
snapshot's digest before anything is switched (a new cluster, or a second database in place)."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import time
from pathlib import Path

from cli.deadline import Deadline, poll
from cli.errors import ContentMismatch, ImctlError, PreconditionFailed, ResourceFailure
from cli.progress import Step
from cli.snapshots import ContentDigest, RestoreResult, RestoreTarget, diff_content
from cli.state import StackConfig
from cli.targets.local.postgres import PgInstance
from cli.targets.local.procs import free_port
from cli.targets.local.runtime import DATABASE, Region
from cli.targets.local.snapshots.catalog import DUMP, PREVIOUS_PREFIX, STAGING, Catalog
from cli.targets.local.snapshots.cutover import (
    drain,
    migrate_schema,
    no_progress,
    smoke_test,
    start_nodes,
    switch,
)
from cli.targets.local.snapshots.pg_client import digest, discard, pg_restore, restore_jobs
from cli.targets.local.snapshots.verify import verified

SCRATCH_DB = "im_restore"


def mb_per_s(size: int, seconds: float) -> float:
    return round(size / 1e6 / seconds, 1) if seconds > 0 else 0.0


def live_messages(pg: PgInstance) -> int | None:
    if not pg.is_running():
        return None
    try:
        out = pg.sql("SELECT coalesce(sum(last_seq), 0) FROM conversations", DATABASE)
        return int(out)
    except (ImctlError, ValueError):
        return None


def describe_source(source: Catalog, snapshot_id: str, into: str) -> str:
    _path, manifest = source.load(snapshot_id)
    note = f", note {manifest['note']!r}" if manifest.get("note") else ""
    origin = f" of stack {source.files.name!r}" if source.files.name != into else ""
    return (
        f"verify snapshot {snapshot_id}{origin} (taken {manifest['created_at']}, "
        f"{manifest['messages']} messages{note}) against its checksums"
    )


def restore_plan(
    catalog: Catalog, snapshot_id: str, target: RestoreTarget, source: Catalog | None = None
) -> list[str]:
    """``source``: the catalog holding the snapshot, when another stack's (default: this
    stack's own)."""
    source = source or catalog
    cfg, region = catalog.primary()
    _path, manifest = source.load(snapshot_id)
    if target == "new":
        _refuse_with_standby(cfg)
    now = live_messages(region.pg())
    now_text = f"{now} messages now" if now is not None else "PostgreSQL is not running"
    nodes = len(region.node_ids())
    lines = [describe_source(source, snapshot_id, cfg.stack)]
    if target == "new":
        lines += [
            f"restore it into a new PostgreSQL cluster next to region {region.cfg.name}'s "
            "and compare every conversation with the snapshot's digest",
            f"then drain the {nodes} im-server node(s) (clients are told to reconnect), "
            "switch PostgreSQL to the restored data, restart the nodes and smoke-test a send",
            f"messages committed after {manifest['created_at']} leave service ({now_text}, "
            f"{manifest['messages']} in the snapshot)",
            f"the current data is kept in {region.root / 'pg' / PREVIOUS_PREFIX}"
            f"{snapshot_id}-<time> until `imctl snapshot prune --previous-data`",
        ]
    else:
        lines += [
            "restore it into a second database of the running PostgreSQL and compare every "
            "conversation with the snapshot's digest",
            f"then drain the {nodes} im-server node(s), replace database {DATABASE!r} with "
            "it, restart the nodes and smoke-test a send",
            f"the current data is DELETED, not kept ({now_text}, {manifest['messages']} in "
            f"the snapshot; messages after {manifest['created_at']} are lost)",
        ]
    # Snapshots hold no secrets: the stack keeps its own, so its tokens keep working.
    lines.append("the stack's JWT secret does not change: tokens issued before stay valid")
    return lines


def _refuse_with_standby(cfg: StackConfig) -> None:
    # A fenced former primary is rebuilt from whatever the primary holds: no obstacle.
    standbys = [r.name for r in cfg.regions if r.role == "standby"]
    if standbys:
        raise PreconditionFailed(
            f"stack {cfg.stack!r} has a standby region ({', '.join(standbys)}) that streams "
            "from the primary's cluster; a new cluster would leave it behind",
            "use --target in-place (the standby follows it)",
        )


def restore(
    catalog: Catalog,
    snapshot_id: str,
    target: RestoreTarget,
    deadline: Deadline,
    progress: Step,
    source: Catalog | None = None,
) -> RestoreResult:
    cfg, region = catalog.primary()
    if target == "new":
        _refuse_with_standby(cfg)
    path, manifest = verified(source or catalog, snapshot_id, progress)
    deadline.check("after verifying the snapshot; nothing was changed")
    expected = ContentDigest.from_json(manifest["content"])
    if target == "new":
        done = _restore_new(region, snapshot_id, path / DUMP, expected, deadline, progress)
    else:
        done = _restore_in_place(
            catalog, region, snapshot_id, path / DUMP, expected, deadline, progress
        )
    # Whose snapshot it was, in every result: another stack's is only ever taken when asked.
    return dataclasses.replace(done, from_stack=(source or catalog).files.name)


def _compare(
    pg: PgInstance, database: str, expected: ContentDigest, deadline: Deadline
) -> tuple[ContentDigest, int]:
    actual, size = digest(pg, database, deadline)
    problems = diff_content(expected, actual)
    if problems:
        raise ContentMismatch(
            "the restored data does not match the snapshot's digest; the current data "
            "stays in service: " + "; ".join(problems),
            "the snapshot or the restore is damaged; try `imctl snapshot verify --deep`, or "
            "another snapshot",
        )
    return actual, size


def _restore_new(
    region: Region,
    snapshot_id: str,
    dump: Path,
    expected: ContentDigest,
    deadline: Deadline,
    progress: Step,
) -> RestoreResult:
    live = region.pg()
    staging = PgInstance(
        data_dir=live.data_dir.with_name(STAGING),
        port=free_port(),
        log_file=live.data_dir.with_name(STAGING + ".log"),
        password=region.secrets.pg_password,
    )
    timings: dict[str, float] = {}
    discard(staging)  # what an interrupted restore left behind
    switched = False
    try:
        with progress(
            f"restoring into a new PostgreSQL cluster ({staging.data_dir}, port "
            f"{staging.port}, pg_restore -j {restore_jobs()})"
        ):
            t0 = time.monotonic()
            staging.init(region.secrets.pg_password)
            deadline.check("while creating the new cluster; the current data is untouched")
            staging.start(timeout=max(1.0, min(60.0, deadline.remaining())))
            staging.create_database(DATABASE)
            t1 = time.monotonic()
            pg_restore(staging, DATABASE, dump, deadline)
            timings["pg_restore_s"] = round(time.monotonic() - t1, 3)
            timings["new_cluster_s"] = round(time.monotonic() - t0, 3)
        deadline.check("before comparing content; the current data is untouched")
        with progress("comparing every conversation with the snapshot's digest"):
            actual, db_bytes = _compare(staging, DATABASE, expected, deadline)
        deadline.check("before switching; the current data is untouched")
        staging.stop()
        switched = True
        previous, switch_timings, killed = switch(region, staging, snapshot_id, progress)
    finally:
        if not switched:
            discard(staging)
    timings.update(switch_timings)
    smoke = smoke_test(region, previous, progress, timings)
    return RestoreResult(
        id=snapshot_id,
        target="new",
        region=region.cfg.name,
        messages=actual.messages,
        conversations=len(actual.conversations),
        previous_data=str(previous),
        smoke=smoke,
        timings=timings,
        restore_mb_per_s=mb_per_s(db_bytes, timings["pg_restore_s"]),
        nodes_killed=killed,
    )


def _restore_in_place(
    catalog: Catalog,
    region: Region,
    snapshot_id: str,
    dump: Path,
    expected: ContentDigest,
    deadline: Deadline,
    progress: Step,
) -> RestoreResult:
    live = catalog.running_pg(region)
    timings: dict[str, float] = {}
    drop = 'DROP DATABASE IF EXISTS :"db" WITH (FORCE)'
    live.sql(drop, variables={"db": SCRATCH_DB})  # an interrupted restore's leftover
    try:
        with progress(
            f"restoring into database {SCRATCH_DB!r} of the running cluster "
            f"(pg_restore -j {restore_jobs()})"
        ):
            live.create_database(SCRATCH_DB)
            t1 = time.monotonic()
            pg_restore(live, SCRATCH_DB, dump, deadline)
            timings["pg_restore_s"] = round(time.monotonic() - t1, 3)
        deadline.check("before comparing content; the current data is untouched")
        with progress("comparing every conversation with the snapshot's digest"):
            actual, db_bytes = _compare(live, SCRATCH_DB, expected, deadline)
        deadline.check("before switching; the current data is untouched")
    except BaseException:
        with contextlib.suppress(ImctlError):
            live.sql(drop, variables={"db": SCRATCH_DB})
        raise
    t0 = time.monotonic()
    killed = drain(region, progress)
    with progress(f"replacing database {DATABASE!r} with the restored one"):
        _swap_databases(region, live)
        migrate_schema(region)
    start_nodes(region, progress)
    timings["unavailable_s"] = round(time.monotonic() - t0, 3)
    smoke = smoke_test(region, None, progress, timings)
    return RestoreResult(
        id=snapshot_id,
        target="in-place",
        region=region.cfg.name,
        messages=actual.messages,
        conversations=len(actual.conversations),
        previous_data=None,
        smoke=smoke,
        timings=timings,
        restore_mb_per_s=mb_per_s(db_bytes, timings["pg_restore_s"]),
        nodes_killed=killed,
    )


def _swap_databases(region: Region, live: PgInstance) -> None:
    """Rename the live database away, the restored one into its name, then drop the old.
    Until the drop, each name holds a whole database; a failure renames back and
    restarts the nodes on the data they had."""
    old = f"im_replaced_{secrets.token_hex(4)}"
    rename = 'ALTER DATABASE :"a" RENAME TO :"b"'
    _wait_no_sessions(live, DATABASE)
    live.sql(rename, variables={"a": DATABASE, "b": old})
    try:
        live.sql(rename, variables={"a": SCRATCH_DB, "b": DATABASE})
    except BaseException:
        with contextlib.suppress(ImctlError):
            live.sql(rename, variables={"a": old, "b": DATABASE})
            live.sql('DROP DATABASE IF EXISTS :"db" WITH (FORCE)', variables={"db": SCRATCH_DB})
            start_nodes(region, no_progress)
        raise
    live.sql('DROP DATABASE :"db" WITH (FORCE)', variables={"db": old})


def _wait_no_sessions(pg: PgInstance, database: str, timeout: float = 15.0) -> None:
    # The nodes are drained, but a backend outlives its client by a moment, and a database
    # with sessions cannot be renamed.
    query = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = :'db' AND pid <> pg_backend_pid()"
    )

    def sessions_left(_terminated: str) -> str:
        raise ResourceFailure(f"sessions on database {database!r} did not end")

    poll(
        lambda: pg.sql(query, variables={"db": database}),
        done=lambda terminated: terminated == "0",
        state=lambda terminated: f"{terminated} session(s) terminated",
        what=f"sessions on database {database!r}",
        limit=timeout,
        interval=0.05,
        timed_out=sessions_left,
    )
