"""A cloud target (aws, gcp, alicloud): deploy and destroy through Pulumi (cli/engine.py), the
day-2 verbs through the cloud's APIs (``CloudOps``, cli/targets/cloud/factory.py), and the
write-backs that keep the stack config in step with what those verbs changed
(cli/targets/cloud/records.py).

A stack whose resource ids come from ``--outputs FILE`` (infrastructure deployed by other
means) is not imctl's to record in: its results say ``config_written: false``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cli.errors import ExitStatus, ImctlError, Partial, PreconditionFailed, UsageError
from cli.results import DocResult, Result, StatusResult
from cli.targets.base import (
    DeployRequest,
    FailoverRequest,
    Operator,
    RestoreRequest,
    RestoreWhere,
    ScaleRequest,
    Target,
    TimeRestoreRequest,
    check_timeout,
    describe_bound,
    merged,
)
from cli.targets.cloud import records

if TYPE_CHECKING:
    from cli.targets.choose import Invocation
    from cli.targets.cloud.ops import CloudOps
    from cli.targets.cloud.outputs import CloudOutputs

FAILOVER_TIMEOUT = 1800.0
RESTORE_TIMEOUT = 3600.0
SNAPSHOT_TIMEOUT = 3600.0
SNAPSHOT_DELETE_TIMEOUT = 1800.0
SCALE_TIMEOUT = 1800.0

# What each cloud does with a stack's backups when destroy deletes its database instances
# (stacks/<cloud>/database.py sets what these depend on). Every cloud keeps them: a destroy
# deletes the stack, not its means of coming back. --delete-snapshots is local-only; a cloud's
# kept snapshots are deleted one by one with `imctl snapshot delete` before the destroy.
BACKUPS_ON_DESTROY = {
    "aws": "backups: KEPT. RDS snapshots stay (imctl snapshots, and the final snapshot destroy"
    " takes of each writer, with the KMS key it is encrypted with); automated backups are kept"
    " until their retention ends. Delete snapshots with `imctl snapshot delete ID` first, or"
    " in the RDS console afterwards",
    "gcp": "backups: KEPT. Cloud SQL retains the instance's backups after it is deleted"
    " (retain_backups_on_delete: imctl snapshots until deleted, automated backups for their"
    " retention) and takes a final backup kept 30 days. Delete snapshots with `imctl snapshot"
    " delete ID` first, or with `gcloud sql backups delete` afterwards",
    "alicloud": "backups: KEPT where ApsaraDB supports it. The stack asks ApsaraDB RDS to keep"
    " every backup set after the instance is released (released_keep_policy All, imctl"
    " snapshots included; documented for cloud disks, not confirmed on a real PostgreSQL"
    " instance here: check Backups for Deleted Instances before relying on it), and keeps the"
    " KMS key they are encrypted with. Delete snapshots with `imctl snapshot delete ID`"
    " first, or in the RDS console afterwards",
}


def restore_plan(cloud: str, where: RestoreWhere, restore: str, check: str) -> list[str]:
    """What a restore (of a snapshot, or to a point in time) will do, for its confirmation."""
    return [
        f"{restore} into a NEW {cloud} database instance"
        + (", then swap it in place of the current one" if where == "in-place" else ""),
        "repoint the im-server Secret at it and roll the Deployment",
        f"check the restored content through the endpoint (/admin/digest) {check}; if it"
        " lacks anything, point the Secret back and roll again (exit 10)",
        "the current instance is kept, untouched",
    ]


class CloudTarget(Target):
    name: ClassVar[str] = "cloud"
    options: ClassVar[frozenset[str]] = frozenset(
        {"--outputs", "--set", "--nodes", "--min", "--max", "--preview", "--refuse-replace"}
    )

    def __init__(self, ctx: Invocation, outputs_file: str | None = None) -> None:
        super().__init__(ctx.stack)
        self.ctx = ctx
        self.cloud = ctx.cloud
        self.outputs_file = outputs_file

    @property
    def managed(self) -> bool:
        """Whether the stack is imctl's (its config is where the write-backs go)."""
        return self.outputs_file is None and not self.ctx.env.environ.get("IMCTL_OUTPUTS_FILE")

    def _outputs(self) -> CloudOutputs:
        from cli.targets.cloud.factory import load_outputs

        # the stack's outputs come through Pulumi, an outputs file does not
        self._require(pulumi=self.managed)
        return load_outputs(self.ctx, self.outputs_file)

    def _ops(self, outputs: CloudOutputs | None = None) -> CloudOps:
        from cli.targets.cloud.factory import ops_for

        self._require(pulumi=False)
        return ops_for(self.ctx, outputs if outputs is not None else self._outputs())

    def _require(self, *, pulumi: bool) -> None:
        from cli.targets.cloud.prereqs import require_packages

        require_packages(self.cloud, pulumi=pulumi)

    def _doc(self, doc: dict[str, Any]) -> dict[str, Any]:
        return merged(doc, cloud=self.cloud, stack=self.stack)

    @property
    def target_name(self) -> str:
        return self.cloud

    # --- deploy and destroy: Pulumi -------------------------------------------------------------

    def deploy(self, req: DeployRequest, op: Operator) -> Result:
        """Preview, show the plan, ask, apply (as ``pulumi up`` does). ``--preview`` stops after
        the preview; it, a refusal and a "no" leave the stack as it was (cli/engine/staged.py)."""
        from cli import engine
        from cli.engine.steps import refuse_state_loss, state_losses

        if req.replicas is not None:
            raise UsageError(
                f"--replicas is not an option of deploy on the {self.cloud} target",
                "the HPA sizes the Deployment: --set hpaMin=N (or imctl scale --replicas N)",
            )
        self._require(pulumi=True)
        cfg = engine.stack_config(req.region, req.standby_region, dict(req.sets))
        env = self.ctx.env
        with engine.staged(self.stack, self.cloud, cfg, home=env.home, env=env.environ) as stage:
            try:
                plan = self._doc(stage.preview(op.engine_progress()))
            finally:
                op.end_engine_progress()
            losses = state_losses(stage.planned)
            if req.preview_only and not (req.refuse_replace and losses):
                return DocResult(plan)  # the command renders it as the result
            if req.show_preview is not None:
                req.show_preview(plan)
            if req.refuse_replace:
                refuse_state_loss(self.stack, losses)
            op.confirm(
                f"Deploy stack {self.stack!r} to {self.cloud}"
                + (f", losing {len(losses)} stateful resource(s)?" if losses else "?"),
                details=[
                    f"pulumi up: {len(stage.planned)} resource change(s) planned on {self.cloud}"
                    f" ({', '.join(f'{k}={v}' for k, v in cfg.items()) or 'stored config'})",
                    *(s.describe() for s in losses),
                ],
            )
            try:
                doc = stage.up(op.engine_progress())
            finally:
                op.end_engine_progress()
        doc["preview"] = {k: plan[k] for k in ("changes", "steps")}
        return DocResult(self._doc(doc))

    def destroy(self, keep_data: bool, delete_snapshots: bool, op: Operator) -> Result:
        from cli import engine

        self._require(pulumi=True)  # before the question: a "yes" must be able to act

        op.confirm_typed(
            self.stack,
            details=[
                "lift every deletion protection (pulumi up, teardown=true), then pulumi destroy:"
                f" delete every {self.cloud} resource of {self.stack!r}, databases included",
                BACKUPS_ON_DESTROY.get(self.cloud, "what the cloud does with backups is unknown"),
            ],
        )
        try:
            doc = engine.destroy(
                self.stack, home=self.ctx.env.home, env=self.ctx.env.environ,
                progress=op.engine_progress(),
            )  # fmt: skip
        finally:
            op.end_engine_progress()
        return DocResult(self._doc({**doc, "stopped": [], "data_deleted": True}))

    def plan(self, req: DeployRequest, op: Operator) -> Result:
        """What a deploy would create, from the Pulumi program run under mocks: offline, so
        it shows what imctl asks for, not what the cloud would accept."""
        self._require(pulumi=True)  # stacks.plan imports the providers
        from stacks.config import ConfigError, Undeployable
        from stacks.plan import PlanError, run_plan

        if req.region is None:
            raise UsageError(
                "--region is required", "e.g. imctl plan --cloud aws --region us-east-1"
            )
        try:
            with op.step(f"planning {self.cloud} under Pulumi mocks"):
                doc = run_plan(self.cloud, req.region, req.standby_region, dict(req.sets))
        except Undeployable as exc:
            # Well-formed, but a deploy would be refused (exit 10), e.g. a Kubernetes version
            # past its provider's end of life.
            raise PreconditionFailed(exc.message, exc.hint) from exc
        except ConfigError as exc:
            raise UsageError(exc.message, exc.hint) from exc
        except PlanError as exc:
            raise ImctlError(str(exc), getattr(exc, "hint", ""), code="plan_failed") from exc
        return DocResult(dict(doc))

    def doctor(self, home: Path, today: date | None = None) -> Result:
        from cli.prereqs import DoctorResult, common_checks
        from cli.targets.cloud.prereqs import cloud_checks, stack_settings

        environ = self.ctx.env.environ
        settings = stack_settings(home, environ, self.stack)
        checks = common_checks(home) + cloud_checks(self.cloud, environ, settings, today)
        return DoctorResult(self.cloud, checks)

    def token(self, user: str, ttl: int) -> Result:
        """A token signed with the secret the stack's pods verify with, read from the primary
        region's Secret (the outputs never carry it)."""
        from cli.targets.cloud.factory import kube_clients
        from cli.targets.tokens import mint
        from stacks.workload_contract import SECRET_JWT_KEY, SECRET_NAME

        outs = self._outputs()
        primary = outs.primary
        data = kube_clients(self.ctx, outs)(primary.name).get_secret(primary.namespace, SECRET_NAME)
        secret = data.get(SECRET_JWT_KEY)
        if not secret:
            raise PreconditionFailed(
                f"Secret {primary.namespace}/{SECRET_NAME} in {primary.name} has no"
                f" {SECRET_JWT_KEY}",
                "`imctl deploy` recreates it",
            )
        return DocResult(self._doc(mint(secret, user, ttl)))

    # --- status and scale -----------------------------------------------------------------------

    def status(self, check: bool) -> Result:
        from cli.targets.cloud.health import problems

        outs = self._outputs()
        doc = self._doc(self._ops(outs).status())
        found = problems(doc, self.stack, self.cloud)
        doc["healthy"], doc["problems"] = not found, found
        # Operations recorded in the config that the deployed stack does not reflect yet.
        notes = [str(n) for k in ("roles_note", "restore_note") if (n := outs.extra.get(k))]
        if notes:
            doc["warnings"] = [*notes, *doc.get("warnings", [])]
        return StatusResult(doc, check)

    def scale(self, req: ScaleRequest, op: Operator) -> Result:
        if all(v is None for v in (req.replicas, req.nodes, req.min_replicas, req.max_replicas)):
            raise UsageError("give --replicas, --nodes, --min or --max")
        check_timeout(req.timeout)
        doc = self._doc(
            self._ops().scale(
                region=req.region, nodes=req.nodes, replicas=req.replicas,
                min_replicas=req.min_replicas, max_replicas=req.max_replicas,
                progress=op.note, timeout=req.timeout or SCALE_TIMEOUT,
            )
        )  # fmt: skip
        if not self.managed:
            doc["config_written"] = False  # not an imctl-managed stack: nothing to write to
            return DocResult(doc)
        status = records.write_back(self.ctx, doc, req.nodes, req.min_replicas, req.max_replicas)
        return DocResult(doc, status)

    # --- snapshots ------------------------------------------------------------------------------

    def snapshot_create(self, note: str | None, timeout: float | None, op: Operator) -> Result:
        check_timeout(timeout)
        ops = self._ops()
        return DocResult(self._doc(ops.snapshot_create(note, op.note, timeout or SNAPSHOT_TIMEOUT)))

    def snapshot_list(self) -> Result:
        return DocResult(self._doc(self._ops().snapshot_list()))

    def snapshot_show(self, snapshot_id: str) -> Result:
        return DocResult(self._doc(self._ops().snapshot_show(snapshot_id)))

    def snapshot_delete(self, snapshot_id: str, timeout: float | None, op: Operator) -> Result:
        check_timeout(timeout)
        ops = self._ops()
        # Read first: an unknown id fails before anyone is asked, and the plan names the backup.
        shown = ops.snapshot_show(snapshot_id)
        taken = shown.get("created_at") or "time unknown"
        op.confirm(
            f"Delete snapshot {snapshot_id} of the {self.cloud} stack {self.stack!r}?",
            details=[f"delete {self.cloud} backup {snapshot_id} (taken {taken},"
                     f" {shown.get('status') or 'status unknown'}); it cannot be restored after"],
        )  # fmt: skip
        doc = ops.snapshot_delete(snapshot_id, op.note, timeout or SNAPSHOT_DELETE_TIMEOUT)
        return DocResult(self._doc(doc))

    # --- restore --------------------------------------------------------------------------------

    def restore(self, req: RestoreRequest, op: Operator) -> Result:
        check_timeout(req.timeout)
        ops = self._ops()
        timeout = req.timeout or RESTORE_TIMEOUT
        return self._restore(
            req.where,
            req.snapshot_id,
            "against the digest recorded with the snapshot",
            lambda switching: ops.restore(req.snapshot_id, req.where, op.note, timeout, switching),
            op,
        )

    def restore_to_time(self, req: TimeRestoreRequest, op: Operator) -> Result:
        from cli.targets.cloud.recovery import utc_text

        check_timeout(req.timeout)
        restores = self._ops().time_restores()
        # Every refusal before the question: the plan names the window the time was checked in.
        window = restores.plan(req.to_time, req.where)
        when = (
            utc_text(req.to_time)
            if req.to_time
            else f"the latest recoverable time (now {window.span()['last']})"
        )
        timeout = req.timeout or RESTORE_TIMEOUT
        return self._restore(
            req.where,
            f"the data as of {when}",
            "for density only (no digest was recorded at that time)",
            lambda switching: restores.run(req.to_time, req.where, op.note, timeout, switching),
            op,
            source=f" (recoverable: {window.describe()}, {window.where})",
        )

    def _restore(
        self,
        where: RestoreWhere,
        what: str,
        check: str,
        run: Callable[[Callable[[str], None]], dict[str, Any]],
        op: Operator,
        source: str = "",
    ) -> Result:
        """Ask, restore, and record the instance the workload is switched to (both restores)."""
        from cli.errors import RestoredContentMismatch

        plan = restore_plan(self.cloud, where, f"restore {what}{source}", check)
        if where == "in-place":
            op.confirm_typed(self.stack, details=plan)
        else:
            op.confirm(f"Restore {what} on {self.cloud}?", details=plan)
        recorded: dict[str, Any] = {}

        def switching(instance: str) -> None:
            # Recorded before the Secret moves, so no failure after it (a stuck rollout, a
            # timeout, an unverifiable check) can leave a deploy free to point it back.
            if (
                self.managed
                and where == "new"
                and records.record_restore(self.ctx, where, instance, recorded) is not ExitStatus.OK
            ):
                raise PreconditionFailed(
                    f"could not record {instance} in the stack config"
                    f" ({recorded['config_error']}); the workload was not switched",
                    recorded["hint"],
                )

        try:
            doc = run(switching)
        except RestoredContentMismatch as exc:
            # Pointed back at the previous database: nothing is left for a deploy to undo.
            if recorded and exc.result.get("rolled_back"):
                records.record_restore(self.ctx, "in-place", "", {})
            raise
        steps = [*recorded.pop("next_steps", []), *doc.get("next_steps", [])]
        doc = self._doc({**doc, **recorded, "next_steps": steps})
        if not self.managed:
            doc["config_written"] = False  # not an imctl-managed stack: nothing to write to
            return DocResult(doc)
        if where == "in-place":  # the stack's own instance holds the restored data now
            instance = str(doc["instance_id"])
            return DocResult(doc, records.record_restore(self.ctx, where, instance, doc))
        return DocResult(doc)

    def backup_status(self, check: bool) -> Result:
        from datetime import UTC, datetime

        from cli.targets.cloud.recovery import status_doc

        window = self._ops().time_restores().window()
        doc = status_doc(window, datetime.now(UTC), self.stack, self.cloud)
        return StatusResult(self._doc(doc), check)

    # --- failover -------------------------------------------------------------------------------

    def failover_plan(self, req: FailoverRequest) -> Result:
        plan = self._ops().failover_plan(req.to_region, req.force)
        return DocResult(self._doc({**plan, "dry_run": True}))

    def failover(self, req: FailoverRequest, op: Operator) -> Result:
        check_timeout(req.timeout)
        ops = self._ops()
        plan = ops.failover_plan(req.to_region, req.force)
        op.confirm(
            f"{plan['mode'].capitalize()} failover of the {self.cloud} stack"
            f" {plan['from_region']} -> {plan['to_region']}?",
            details=[*plan["steps"], f"data-loss bound: {describe_bound(plan['data_loss_bound'])}"],
        )
        try:
            doc = ops.failover(req.to_region, req.force, op.note, req.timeout or FAILOVER_TIMEOUT)
        except Partial as exc:
            # Past the promotion: the roles have moved even though a later step failed.
            if self.managed:
                written: dict[str, Any] = {}
                if records.record_roles(self.ctx, req.to_region, written) is not ExitStatus.OK:
                    exc.hint = f"{exc.hint}; and {written['details']['hint']}"
                exc.details = {**(exc.details or {}), **written.get("details", {})}
            raise exc
        except ImctlError as exc:
            # Gave up (timeout) or does not know whether the promotion went through: if it
            # did, the next deploy must know, or it would undo the failover.
            if self.managed and (exc.status is ExitStatus.TIMEOUT or exc.code == "outcome_unknown"):
                exc.hint = f"{exc.hint}; {records.if_promoted(self.ctx, req.to_region)}"
            raise
        doc = self._doc(doc)
        if not self.managed:
            # Not an imctl-managed stack: nothing to write to.
            doc.setdefault("details", {})["config_written"] = False
            return DocResult(doc)
        return DocResult(doc, records.record_roles(self.ctx, req.to_region, doc))
