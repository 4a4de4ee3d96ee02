"""The small cluster of `typha demo --dataplane linux` and the policy
changes it cycles through, each with the reachability it must produce.

Pods alternate between the namespaces `shop` and `billing`; both namespace
profiles allow everything, so at first every pod reaches every other.  The
steps then isolate `billing`, quarantine one pod by a label, release it, and
delete the policies.  `Situation.allows` is the reachability the policies
mean, written independently of the agent's calculation, so the demo can
check what the kernels do against it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from commands.demo.cluster import (
    V3,
    affinity,
    block,
    ippool,
    node,
    node_key,
    profile,
    sa_profile,
    tier,
    workload,
)

NAMESPACES = ("shop", "billing")
APPS = ("web", "db")
PORT = 8080  # the pods' named port `http`
ISOLATE_KEY = f"{V3}/networkpolicies/billing/accept-only-billing"
QUARANTINE_KEY = f"{V3}/globalnetworkpolicies/quarantine"


@dataclass(frozen=True)
class DemoPod:
    """One pod of the demo: where it runs and the WorkloadEndpoint that says so."""

    name: str
    node: str
    node_index: int
    namespace: str
    ip: str
    interface: str
    key: str
    value: dict[str, Any]


def node_address(index: int) -> str:
    """Node `index`'s underlay address as its Node resource gives it (a /24)."""
    value = node(f"node-{index}", index)
    address: str = value["spec"]["bgp"]["ipv4Address"]
    return address


def demo_pods(nodes: int, pods_per_node: int) -> list[DemoPod]:
    """The pods, `pods_per_node` on each node, namespaces alternating."""
    out = []
    for i in range(nodes):
        for p in range(pods_per_node):
            k = i * pods_per_node + p
            ns = NAMESPACES[k % len(NAMESPACES)]
            key, value = workload(f"node-{i}", i, ns, f"pod-{i}-{p}", 3 + p, APPS[p % len(APPS)])
            spec = value["spec"]
            out.append(
                DemoPod(
                    name=f"pod-{i}-{p}",
                    node=f"node-{i}",
                    node_index=i,
                    namespace=ns,
                    ip=spec["ipNetworks"][0].partition("/")[0],
                    interface=spec["interfaceName"],
                    key=key,
                    value=value,
                )
            )
    return out


def demo_cluster(
    nodes: int, pods: list[DemoPod], vxlan: bool
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Pool (routed, or VXLAN with `vxlan`), nodes, blocks, the namespace and
    service-account profiles, and the pods."""
    key, pool = ippool()
    if vxlan:
        pool["spec"]["vxlanMode"] = "Always"
    yield key, pool
    yield tier("default", 1_000_000)
    for ns in NAMESPACES:
        yield profile(ns)
        yield sa_profile(ns, "default")
    for i in range(nodes):
        name = f"node-{i}"
        yield node_key(name), node(name, i)
        yield block(name, i)
        yield affinity(name, i)
    for p in pods:
        yield p.key, p.value


@dataclass(frozen=True)
class Situation:
    """Which policies are in force and which pod is quarantined."""

    billing_isolated: bool = False
    quarantine_policy: bool = False
    quarantined: str = ""

    def allows(self, src: DemoPod, dst: DemoPod) -> bool:
        """Whether a TCP connection from `src` to `dst` on PORT must succeed."""
        if src.name == dst.name:
            return False  # not probed
        if self.quarantine_policy and self.quarantined in (src.name, dst.name):
            return False  # denied both ways before any other policy
        return not (
            self.billing_isolated and dst.namespace == "billing" and src.namespace != "billing"
        )


@dataclass(frozen=True)
class Step:
    """One change: its description, the writes (None: delete), and the
    situation it leads to."""

    description: str
    writes: tuple[tuple[str, dict[str, Any] | None], ...]
    after: Situation


def _isolate_billing() -> dict[str, Any]:
    # Namespaced: `all()` in a source selector means all pods of `billing`.
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": {"name": "accept-only-billing", "namespace": "billing"},
        "spec": {
            "tier": "default",
            "order": 100,
            "selector": "all()",
            "types": ["Ingress"],
            "ingress": [{"action": "Allow", "source": {"selector": "all()"}}],
        },
    }


def _quarantine() -> dict[str, Any]:
    # Order 10: before the namespace policy, so a quarantined billing pod is
    # denied even from billing.
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "quarantine"},
        "spec": {
            "tier": "default",
            "order": 10,
            "selector": "quarantine == 'true'",
            "types": ["Ingress", "Egress"],
            "ingress": [{"action": "Deny"}],
            "egress": [{"action": "Deny"}],
        },
    }


def steps(pods: list[DemoPod]) -> list[Step]:
    """The cycle of changes; it ends where it began (everything open)."""
    victim = pods[1] if len(pods) > 1 else pods[0]
    labelled = copy.deepcopy(victim.value)
    labelled["metadata"]["labels"]["quarantine"] = "true"
    isolated = Situation(billing_isolated=True)
    guarded = Situation(billing_isolated=True, quarantine_policy=True)
    return [
        Step(
            "NetworkPolicy billing/accept-only-billing: billing accepts only billing",
            ((ISOLATE_KEY, _isolate_billing()),),
            isolated,
        ),
        Step(
            "GlobalNetworkPolicy quarantine (selects quarantine == 'true', no pod yet)",
            ((QUARANTINE_KEY, _quarantine()),),
            guarded,
        ),
        Step(
            f"{victim.name} labelled quarantine=true: cut off both ways",
            ((victim.key, labelled),),
            Situation(True, True, victim.name),
        ),
        Step(f"{victim.name} label removed", ((victim.key, victim.value),), guarded),
        Step(
            "both policies deleted: everything open again",
            ((ISOLATE_KEY, None), (QUARANTINE_KEY, None)),
            Situation(),
        ),
    ]
