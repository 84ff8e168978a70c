"""Restore into a stack that does not exist: deploy it fresh, then restore the snapshot into
it, so a destroyed stack (whose snapshots destroy keeps) can be brought back.

The stack is built in the shape a destroy recorded (``destroyed.json``: regions, port,
replicas), or with deploy's defaults for a new name. Everything is checked before anything is
created: the snapshot's files against its manifest, the shape, the ports.

Secrets are new. A snapshot holds the database only (the JWT secret, admin token and passwords
are in ``secrets.json``, 0600, which destroy deletes), so tokens issued by the destroyed stack
are not accepted by the new one: clients need new tokens (``imctl token``). Keeping the old
secret would have meant leaving it on disk after a destroy that was asked to delete the stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cli.errors import ImctlError, PreconditionFailed
from cli.results import DocResult, Result
from cli.targets.base import DeployRequest, Operator, RestoreRequest
from cli.targets.local import procs
from cli.targets.local.snapshots import restore
from cli.targets.local.snapshots.catalog import Catalog
from cli.targets.local.snapshots.verify import verified

if TYPE_CHECKING:
    from cli.targets.local.target import LocalTarget

TOKENS = (
    "the new stack has a new JWT secret: tokens issued before (by a destroyed stack of this"
    " name too) are not accepted; mint new ones with `imctl token`"
)


def shape(target: LocalTarget) -> DeployRequest:
    """What deploy builds: the destroyed stack's shape, or the defaults."""
    was = target.files.destroyed_config()
    if was is None:
        return DeployRequest()
    standby = next((r.name for r in was.regions if r.role != "primary"), None)
    return DeployRequest(
        region=was.primary.name,
        standby_region=standby,
        replicas=was.primary.replicas,
        port=was.endpoint_port,
        replication=was.replication if standby else None,
        sync_policy=was.sync_policy,
        sync_degrade_after=was.sync_degrade_after,
        archiving=was.archiving,
        keep_days=was.backup_keep_days,
        base_every_hours=was.backup_base_every_hours,
        backup_url=was.backup_url,
    )


def restore_into_new_stack(
    target: LocalTarget, source: Catalog, req: RestoreRequest, op: Operator
) -> Result:
    from cli.targets.local.target import snapshot_deadline

    name = target.stack
    deploy = shape(target)
    cfg, _new = target.plan_config(
        deploy.region, deploy.replicas, deploy.port, deploy.standby_region, deploy.replication,
        deploy.sync_policy, deploy.sync_degrade_after,
    )  # fmt: skip
    ports = sorted({r.port for r in cfg.regions} | {cfg.endpoint_port})
    busy = [p for p in ports if not procs.port_is_free("127.0.0.1", p)]
    if busy:
        raise PreconditionFailed(
            f"stack {name!r} does not exist, and the port(s) a new one would take are in use:"
            f" {', '.join(map(str, busy))}",
            f"deploy it on a free port first (`imctl deploy -s {name} --port P`), then restore"
            " into it",
        )
    regions = ", ".join(f"{r.name} ({r.role}, {r.replicas} node(s))" for r in cfg.regions)
    origin = "as it was when destroyed" if target.files.destroyed_path.exists() else "defaults"
    plan = [
        restore.describe_source(source, req.snapshot_id, name),
        f"create stack {name!r} ({origin}): regions {regions}, endpoint"
        f" ws://127.0.0.1:{cfg.endpoint_port}/ws",
        "restore the snapshot into its empty database and compare every conversation with"
        " the snapshot's digest, then smoke-test a send",
        TOKENS,
    ]
    op.confirm(
        f"Create stack {name!r} and restore snapshot {req.snapshot_id} into it?", details=plan
    )
    # Checked before the deploy too: a damaged snapshot must not leave an empty stack behind.
    verified(source, req.snapshot_id, op.step)
    deployed = target.deploy(deploy, op).to_json()
    try:
        # The clock starts once the stack is up: --timeout bounds the restore, as elsewhere.
        done = restore.restore(
            Catalog(target.files), req.snapshot_id, "in-place", snapshot_deadline(req.timeout),
            op.step, source,
        )  # fmt: skip
    except ImctlError as exc:
        exc.hint = (
            f"stack {name!r} was created and runs empty; run the restore again, or remove it"
            f" with `imctl destroy -s {name}`; {exc.hint}"
        )
        raise
    doc: dict[str, Any] = {
        "stack": name,
        "cloud": "local",
        **done.to_json(),
        "stack_created": True,
        "from_stack": source.files.name,
        "endpoint": deployed["endpoint"],
        "jwt_secret": "new",
        "warnings": [TOKENS],
    }
    return DocResult(doc, done.exit_status)
