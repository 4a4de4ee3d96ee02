"""Calico-shaped sample data (docs/data-model.md) and a seeded churn generator.

Used by `typha demo`, the integration tests and the load tests, so all three
exercise the same shapes.  Deterministic for a given seed.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

V3 = "/calico/resources/v3/projectcalico.org"
POOL_CIDR_FIRST_OCTETS = (10, 244)


def node_key(name: str) -> str:
    """The datastore key of node `name`."""
    return f"{V3}/nodes/{name}"


def node(name: str, index: int) -> dict[str, Any]:
    """A Node resource for node number `index`: a 192.168.x.y/24 address, its IPIP
    tunnel address, a rack label."""
    ip = f"192.168.{index // 250}.{index % 250 + 1}"
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"rack": f"r{index % 4}"}},
        "spec": {
            "bgp": {"ipv4Address": f"{ip}/24", "ipv4IPIPTunnelAddr": f"{block_base(index)}.0"},
            "addresses": [{"address": ip, "type": "InternalIP"}],
        },
    }


def ippool() -> tuple[str, dict[str, Any]]:
    """The one IP pool covering every block (POOL_CIDR, no encapsulation)."""
    return f"{V3}/ippools/default-ipv4", {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": "default-ipv4"},
        "spec": {
            "cidr": POOL_CIDR,
            "blockSize": 26,
            "ipipMode": "Never",
            "vxlanMode": "Never",
            "natOutgoing": True,
            "disabled": False,
        },
    }


POOL_CIDR = "10.240.0.0/12"  # room for 4,096 nodes' /26 blocks from 10.244.0.0


def block_base(node_index: int) -> str:
    """Node i's block starts at 10.(244 + i // 256).(i % 256).0: node 7 has
    10.244.7.0/26, and every node up to 3,071 its own."""
    return f"10.{244 + node_index // 256}.{node_index % 256}"


def block_cidr(node_index: int) -> str:
    """The /26 block affine to node number `node_index`."""
    return f"{block_base(node_index)}.0/26"


def block(node_name: str, node_index: int, used: int = 3) -> tuple[str, dict[str, Any]]:
    """The IPAM block of node number `node_index`, with `used` addresses allocated."""
    cidr = block_cidr(node_index)
    key = f"/calico/ipam/v2/assignment/ipv4/block/{cidr.replace('/', '-')}"
    return key, {
        "cidr": cidr,
        "affinity": f"host:{node_name}",
        "strictAffinity": False,
        "allocations": [0, None, 1] + [None] * 61,
        "unallocated": list(range(3 + used, 64)),
        "attributes": [{"handle_id": f"k8s-pod-network.{node_name}"}],
    }


def affinity(node_name: str, node_index: int) -> tuple[str, dict[str, Any]]:
    """The block affinity of node number `node_index`."""
    cidr = block_cidr(node_index).replace("/", "-")
    return f"/calico/ipam/v2/host/{node_name}/ipv4/block/{cidr}", {
        "state": "confirmed",
        "deleted": False,
    }


def workload(
    node_name: str, node_index: int, ns: str, pod: str, ip_index: int, app: str
) -> tuple[str, dict[str, Any]]:
    """A WorkloadEndpoint for `pod` in namespace `ns` on the node, at address `ip_index` of its
    block."""
    name = f"{node_name.replace('-', '--')}-k8s-{pod.replace('-', '--')}-eth0"
    return f"{V3}/workloadendpoints/{ns}/{name}", {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"app": app, "projectcalico.org/namespace": ns},
        },
        "spec": {
            "orchestrator": "k8s",
            "node": node_name,
            "pod": pod,
            "endpoint": "eth0",
            "interfaceName": "cali"
            + hashlib.blake2b(f"{node_name}/{pod}".encode(), digest_size=6).hexdigest()[:11],
            "mac": "ee:ee:ee:ee:ee:ee",
            "ipNetworks": [f"{block_base(node_index)}.{ip_index % 64}/32"],
            "profiles": [f"kns.{ns}"],
        },
    }


def policy(ns: str, name: str, app: str, order: int, port: int) -> tuple[str, dict[str, Any]]:
    """A NetworkPolicy on `app`: frontends may reach it over TCP on `port` and
    8080-8090; it may not reach 10.0.0.0/8."""
    return f"{V3}/networkpolicies/{ns}/{name}", {
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "tier": "default",
            "order": order,
            "selector": f"app == '{app}'",
            "types": ["Ingress", "Egress"],
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"selector": "app == 'frontend'"},
                    "destination": {"ports": [port, "8080:8090"]},
                }
            ],
            "egress": [{"action": "Deny", "destination": {"nets": ["10.0.0.0/8"]}}],
        },
    }


def global_policy(name: str, order: int) -> tuple[str, dict[str, Any]]:
    """A GlobalNetworkPolicy allowing ICMP everywhere."""
    return f"{V3}/globalnetworkpolicies/{name}", {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": name},
        "spec": {
            "order": order,
            "selector": "all()",
            "namespaceSelector": "has(projectcalico.org/name)",
            "types": ["Ingress"],
            "ingress": [{"action": "Allow", "protocol": "ICMP"}],
        },
    }


def profile(ns: str) -> tuple[str, dict[str, Any]]:
    """The `kns.<ns>` namespace profile with its labels to apply."""
    return f"{V3}/profiles/kns.{ns}", {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": {"name": f"kns.{ns}"},
        "spec": {
            "ingress": [{"action": "Allow"}],
            "egress": [{"action": "Allow"}],
            "labelsToApply": {"projectcalico.org/name": ns},
        },
    }


APPS = ("web", "frontend", "db", "cache", "api")
NAMESPACES = ("shop", "billing", "search", "default")


def seed_cluster(nodes: int, pods_per_node: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """A consistent small cluster: pool, nodes, blocks, affinities, pods,
    namespace profiles, policies."""
    yield ippool()
    for ns in NAMESPACES:
        yield profile(ns)
        for i, app in enumerate(APPS):
            yield policy(ns, f"allow-{app}", app, 100 + i, 80 + i)
    yield global_policy("allow-icmp", 10)
    for i in range(nodes):
        name = f"node-{i}"
        yield node_key(name), node(name, i)
        yield block(name, i)
        yield affinity(name, i)
        for p in range(pods_per_node):
            yield workload(
                name, i, NAMESPACES[p % len(NAMESPACES)], f"pod-{i}-{p}", 3 + p, APPS[p % len(APPS)]
            )


@dataclass(frozen=True, slots=True)
class Op:
    """One churn operation: a put (`value`) or a delete (`value` None) of `key`."""

    key: str
    value: dict[str, Any] | None  # None: delete


class Churn:
    """Random puts and deletes of workload endpoints, policies and node
    labels, the way a busy cluster changes.  Tracks which keys it created so
    deletes hit existing keys."""

    def __init__(self, nodes: int, seed: int = 1) -> None:
        self._rng = random.Random(seed)
        self._nodes = max(1, nodes)
        self._live: list[str] = []
        self._n = 0

    def next(self) -> Op:
        """The next operation; deterministic for a given seed."""
        rng = self._rng
        self._n += 1
        roll = rng.random()
        if roll < 0.25 and self._live:
            key = self._live.pop(rng.randrange(len(self._live)))
            return Op(key, None)
        if roll < 0.75:
            i = rng.randrange(self._nodes)
            ns = rng.choice(NAMESPACES)
            key, value = workload(
                f"node-{i}", i, ns, f"churn-{self._n}", 3 + rng.randrange(60), rng.choice(APPS)
            )
            self._live.append(key)
            return Op(key, value)
        if roll < 0.9:
            ns = rng.choice(NAMESPACES)
            app = rng.choice(APPS)
            key, value = policy(
                ns, f"allow-{app}", app, rng.randrange(1000), rng.randrange(1, 65535)
            )
            return Op(key, value)
        i = rng.randrange(self._nodes)
        value = node(f"node-{i}", i)
        value["metadata"]["labels"]["churn"] = str(self._n)
        return Op(node_key(f"node-{i}"), value)
