"""The deployed stack's outputs, with the config a failover may have written since."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cli.engine.pulumi_errors import translated
from cli.engine.roles import configured_writer
from cli.engine.settings import resolve_settings
from cli.engine.workspace import imctl_config, open_stack
from cli.errors import PreconditionFailed

if TYPE_CHECKING:
    from pulumi import automation as auto

    from cli.targets.cloud.outputs import CloudOutputs

SECRET: Final = "[secret]"


@dataclass(frozen=True)
class StackOutputs:
    """The stack's outputs. ``values`` holds secrets in plain text: keep it in memory, print
    ``public()``."""

    values: Mapping[str, Any] = field(repr=False)
    secret_keys: frozenset[str] = frozenset()
    config: Mapping[str, str] = field(default_factory=dict)  # the stack's plain imctl config

    def public(self) -> dict[str, Any]:
        return {k: (SECRET if k in self.secret_keys else v) for k, v in self.values.items()}

    def contract(self) -> dict[str, Any]:
        """The outputs contract document, each region's kubeconfig folded into its entry (and
        nowhere else, so ``CloudOutputs.extra`` holds no credentials)."""
        doc = {k: v for k, v in self.values.items() if k not in ("kubeconfig", "kubeconfigs")}
        kubeconfigs = dict(self.values.get("kubeconfigs") or {})
        primary = self.values.get("primary_region")
        if self.values.get("kubeconfig") and primary and primary not in kubeconfigs:
            kubeconfigs[primary] = self.values["kubeconfig"]
        regions = {
            name: {**entry, **({"kubeconfig": kubeconfigs[name]} if name in kubeconfigs else {})}
            for name, entry in dict(doc.get("regions") or {}).items()
        }
        doc["regions"] = regions
        return doc

    def cloud(self, stack: str = "") -> CloudOutputs:
        from cli.targets.cloud.outputs import CloudOutputs

        if not self.values:
            raise PreconditionFailed(
                f"stack {stack!r} has no outputs: it was never deployed, or was destroyed",
                f"deploy it: imctl deploy -s {stack} --cloud ... --region ...",
            )
        outs = CloudOutputs.from_json(self.contract(), source=f"stack {stack} outputs")
        writer, failovers = self.configured_writer()
        if writer is not None and writer != outs.primary_region:
            deployed = self.values.get("failovers", 0)
            outs = outs.with_writer(
                writer,
                f"the stack config records {failovers} failover(s), the deployed outputs"
                f" {deployed}: {writer} holds the writer. Run imctl deploy -s {stack} when"
                " both regions are reachable, to create the new replica and record the roles",
            )
        if restored := self.config.get("restoredInstance"):
            outs = replace(
                outs,
                extra={
                    **outs.extra,
                    "restore_note": f"the workload runs on {restored}, restored outside the"
                    " stack: deploys refuse until you keep it (imctl restore <snapshot> --target"
                    " in-place) or drop it (imctl deploy --set restoredInstance=)",
                },
            )
        return outs

    def configured_writer(self) -> tuple[str | None, int]:
        """The writer region the stack config names, and its failover count."""
        return configured_writer(self.config)


def outputs_of(
    output_map: Mapping[str, auto.OutputValue], config: Mapping[str, str] | None = None
) -> StackOutputs:
    return StackOutputs(
        values={k: v.value for k, v in output_map.items()},
        secret_keys=frozenset(k for k, v in output_map.items() if v.secret),
        config=dict(config or {}),
    )


def outputs(ctx_stack: str, *, home: Path, env: Mapping[str, str]) -> StackOutputs:
    """The deployed stack's outputs (``stack output --json --show-secrets``), with its config:
    a failover writes the new roles to the config before any deploy updates the outputs."""
    settings = resolve_settings(home, env)
    with translated(ctx_stack, "outputs", settings):
        st = open_stack(settings, ctx_stack)
        return outputs_of(st.outputs(), imctl_config(st))
