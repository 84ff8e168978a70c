"""Where and how pods run: one replica per node where possible, spread over zones, and the
settings the namespace's ``restricted`` Pod Security level demands."""

from __future__ import annotations

import pulumi_kubernetes as k8s


def anti_affinity(app: str) -> k8s.core.v1.AffinityArgs:
    """Prefer one pod per node, so losing a node loses one replica, not several."""
    return k8s.core.v1.AffinityArgs(
        pod_anti_affinity=k8s.core.v1.PodAntiAffinityArgs(
            preferred_during_scheduling_ignored_during_execution=[
                k8s.core.v1.WeightedPodAffinityTermArgs(
                    weight=100,
                    pod_affinity_term=k8s.core.v1.PodAffinityTermArgs(
                        topology_key="kubernetes.io/hostname",
                        label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"app": app}),
                    ),
                )
            ]
        )
    )


def zone_spread(app: str) -> list[k8s.core.v1.TopologySpreadConstraintArgs]:
    """Balance over zones, but still schedule when a zone is short of nodes."""
    return [
        k8s.core.v1.TopologySpreadConstraintArgs(
            max_skew=1,
            topology_key="topology.kubernetes.io/zone",
            when_unsatisfiable="ScheduleAnyway",
            label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"app": app}),
        )
    ]


def restricted_pod(uid: int = 1000) -> k8s.core.v1.PodSecurityContextArgs:
    return k8s.core.v1.PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=uid,
        fs_group=uid,
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def restricted_container(uid: int = 1000) -> k8s.core.v1.SecurityContextArgs:
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        run_as_user=uid,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
    )
