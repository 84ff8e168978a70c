"""NetworkPolicies: deny by default, then open exactly the paths the workload uses.

Ingress: the load balancer reaches im-server on 8443 (TLS) and 8080 (plain, which Prometheus
scrapes too); only im-server reaches NATS clients on 4222; NATS peers reach each other on 6222.
NATS's monitoring port (8222) is opened to no pod: its /connz and /subsz list every client and
subject (user ids), and the kubelet's probes need no rule (traffic from a pod's own node is always
allowed). Egress of im-server and the migration Job: DNS, NATS in the namespace, PostgreSQL on
5432 (the database's address differs per cloud, so the port, not the address, is the boundary).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from stacks.workload.nats import CLIENT_PORT, CLUSTER_PORT
from stacks.workload_contract import DB_PORT, HTTP_PORT, TLS_PORT


@dataclass(frozen=True, slots=True)
class NetworkPoliciesArgs:
    namespace: str
    provider: pulumi.ProviderResource


def _port(port: int, protocol: str = "TCP") -> k8s.networking.v1.NetworkPolicyPortArgs:
    return k8s.networking.v1.NetworkPolicyPortArgs(port=port, protocol=protocol)


def _pods(*apps: str) -> k8s.networking.v1.NetworkPolicyPeerArgs:
    return k8s.networking.v1.NetworkPolicyPeerArgs(
        pod_selector=k8s.meta.v1.LabelSelectorArgs(
            match_expressions=[
                k8s.meta.v1.LabelSelectorRequirementArgs(
                    key="app", operator="In", values=list(apps)
                )
            ]
        )
    )


class NetworkPolicies(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: NetworkPoliciesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:workload:NetworkPolicies", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        ns = args.namespace
        np = k8s.networking.v1
        meta = k8s.meta.v1.ObjectMetaArgs
        select = k8s.meta.v1.LabelSelectorArgs

        self.default_deny = np.NetworkPolicy(
            f"{name}-default-deny",
            metadata=meta(name="default-deny-ingress", namespace=ns),
            spec=np.NetworkPolicySpecArgs(pod_selector=select(), policy_types=["Ingress"]),
            opts=child,
        )
        self.server = np.NetworkPolicy(
            f"{name}-im-server",
            metadata=meta(name="im-server", namespace=ns),
            spec=np.NetworkPolicySpecArgs(
                pod_selector=select(
                    match_expressions=[
                        k8s.meta.v1.LabelSelectorRequirementArgs(
                            key="app", operator="In", values=["im-server", "im-server-migrate"]
                        )
                    ]
                ),
                policy_types=["Ingress", "Egress"],
                # Clients arrive through the cloud load balancer from anywhere.
                ingress=[
                    np.NetworkPolicyIngressRuleArgs(ports=[_port(HTTP_PORT), _port(TLS_PORT)])
                ],
                egress=[
                    np.NetworkPolicyEgressRuleArgs(ports=[_port(53, "UDP"), _port(53, "TCP")]),
                    np.NetworkPolicyEgressRuleArgs(to=[_pods("nats")], ports=[_port(CLIENT_PORT)]),
                    np.NetworkPolicyEgressRuleArgs(ports=[_port(DB_PORT)]),
                ],
            ),
            opts=child,
        )
        self.nats = np.NetworkPolicy(
            f"{name}-nats",
            metadata=meta(name="nats", namespace=ns),
            spec=np.NetworkPolicySpecArgs(
                pod_selector=select(match_labels={"app": "nats"}),
                policy_types=["Ingress"],
                ingress=[
                    np.NetworkPolicyIngressRuleArgs(
                        from_=[_pods("im-server")], ports=[_port(CLIENT_PORT)]
                    ),
                    np.NetworkPolicyIngressRuleArgs(
                        from_=[_pods("nats")], ports=[_port(CLUSTER_PORT)]
                    ),
                ],
            ),
            opts=child,
        )
        self.register_outputs({})
