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
    """A Node resource for node number `index`: a 192.168.x.y/24 address and an
    fd00:192:168::/64 one, its IPIP and VXLAN tunnel addresses, a rack label."""
    ip = f"192.168.{index // 250}.{index % 250 + 1}"
    ip6 = f"fd00:192:168::{index + 1:x}"
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"rack": f"r{index % 4}"}},
        "spec": {
            "bgp": {
                "ipv4Address": f"{ip}/24",
                "ipv4IPIPTunnelAddr": f"{block_base(index)}.0",
                "ipv6Address": f"{ip6}/64",
            },
            "ipv4VXLANTunnelAddr": f"{block_base(index)}.1",
            "vxlanTunnelMACAddr": f"66:{index >> 24 & 255:02x}:{index >> 16 & 255:02x}:"
            f"{index >> 8 & 255:02x}:{index & 255:02x}:01",
            "addresses": [
                {"address": ip, "type": "InternalIP"},
                {"address": ip6, "type": "InternalIP"},
            ],
        },
    }


def ippool(
    name: str = "default-ipv4", cidr: str = "", block_size: int = 26, nat: bool = True
) -> tuple[str, dict[str, Any]]:
    """An IP pool without encapsulation; by default the IPv4 one covering
    every block (POOL_CIDR)."""
    return f"{V3}/ippools/{name}", {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {
            "cidr": cidr or POOL_CIDR,
            "blockSize": block_size,
            "ipipMode": "Never",
            "vxlanMode": "Never",
            "natOutgoing": nat,
            "disabled": False,
        },
    }


POOL_CIDR = "10.240.0.0/12"  # room for 4,096 nodes' /26 blocks from 10.244.0.0
POOL_CIDR_V6 = "fd00:10:244::/48"


def ippool_v6() -> tuple[str, dict[str, Any]]:
    """The IPv6 pool (/122 blocks, Calico's default for IPv6)."""
    return ippool("default-ipv6", POOL_CIDR_V6, 122, nat=False)


def block6_cidr(node_index: int) -> str:
    """The /122 IPv6 block affine to node number `node_index`."""
    return f"fd00:10:244:0:{node_index >> 16:x}:{node_index & 0xFFFF:x}::/122"


def block6(node_name: str, node_index: int) -> tuple[str, dict[str, Any]]:
    """The IPv6 IPAM block of node number `node_index` (its allocations are
    not tracked: the sample's IPv6 addresses are assigned by index)."""
    return _ipam_block(6, block6_cidr(node_index), node_name, [None] * 64, list(range(64)), [])


def _ipam_block(
    family: int,
    cidr: str,
    node_name: str,
    allocations: list[int | None],
    unallocated: list[int],
    attributes: list[dict[str, str]],
) -> tuple[str, dict[str, Any]]:
    key = f"/calico/ipam/v2/assignment/ipv{family}/block/{cidr.replace('/', '-')}"
    return key, {
        "cidr": cidr,
        "affinity": f"host:{node_name}",
        "strictAffinity": False,
        "allocations": allocations,
        "unallocated": unallocated,
        "attributes": attributes,
    }


def block_base(node_index: int) -> str:
    """Node i's block starts at 10.(244 + i // 256).(i % 256).0: node 7 has
    10.244.7.0/26, and every node up to 3,071 its own."""
    return f"10.{244 + node_index // 256}.{node_index % 256}"


def block_cidr(node_index: int) -> str:
    """The /26 block affine to node number `node_index`."""
    return f"{block_base(node_index)}.0/26"


def block(node_name: str, node_index: int, used: int = 3) -> tuple[str, dict[str, Any]]:
    """The IPAM block of node number `node_index`, with `used` addresses allocated."""
    return _ipam_block(
        4,
        block_cidr(node_index),
        node_name,
        [0, None, 1] + [None] * 61,
        list(range(3 + used, 64)),
        [{"handle_id": f"k8s-pod-network.{node_name}"}],
    )


def affinity(node_name: str, node_index: int) -> tuple[str, dict[str, Any]]:
    """The block affinity of node number `node_index`."""
    cidr = block_cidr(node_index).replace("/", "-")
    return f"/calico/ipam/v2/host/{node_name}/ipv4/block/{cidr}", {
        "state": "confirmed",
        "deleted": False,
    }


def workload(
    node_name: str,
    node_index: int,
    ns: str,
    pod: str,
    ip_index: int,
    app: str,
    *,
    sa: str = "default",
    ipv6: bool = False,
) -> tuple[str, dict[str, Any]]:
    """A WorkloadEndpoint for `pod` in namespace `ns` on the node, at address `ip_index` of its
    block (and of its IPv6 block with `ipv6`), running as service account `sa`, with a
    named port `http` (TCP 8080), labelled as Calico's Kubernetes integration labels pods."""
    name = f"{node_name.replace('-', '--')}-k8s-{pod.replace('-', '--')}-eth0"
    nets = [f"{block_base(node_index)}.{ip_index % 64}/32"]
    if ipv6:
        nets.append(block6_cidr(node_index).replace("::/122", f"::{ip_index % 64:x}/128"))
    return f"{V3}/workloadendpoints/{ns}/{name}", {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {
                "app": app,
                "projectcalico.org/namespace": ns,
                "projectcalico.org/orchestrator": "k8s",
                "projectcalico.org/serviceaccount": sa,
            },
        },
        "spec": {
            "orchestrator": "k8s",
            "node": node_name,
            "pod": pod,
            "endpoint": "eth0",
            "interfaceName": "cali"
            + hashlib.blake2b(f"{node_name}/{pod}".encode(), digest_size=6).hexdigest()[:11],
            "mac": "ee:ee:ee:ee:ee:ee",
            "ipNetworks": nets,
            "profiles": [f"kns.{ns}", f"ksa.{ns}.{sa}"],
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
        },
    }


def policy(ns: str, name: str, app: str, order: int, port: int) -> tuple[str, dict[str, Any]]:
    """A NetworkPolicy on `app`: frontends may reach it over TCP on `port` and
    8080-8090, pods running as the `monitoring` service account on its
    named port `http`; it may not reach 10.0.0.0/8."""
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
                },
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"serviceAccounts": {"names": ["monitoring"]}},
                    "destination": {"ports": ["http"]},
                },
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


def profile(ns: str, **ns_labels: str) -> tuple[str, dict[str, Any]]:
    """The `kns.<ns>` namespace profile as Calico writes it: allow-all rules,
    and the namespace's name and labels to apply, already prefixed `pcns.`."""
    labels = {"pcns.projectcalico.org/name": ns}
    labels.update({f"pcns.{k}": v for k, v in ns_labels.items()})
    return f"{V3}/profiles/kns.{ns}", {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": {"name": f"kns.{ns}"},
        "spec": {
            "ingress": [{"action": "Allow"}],
            "egress": [{"action": "Allow"}],
            "labelsToApply": labels,
        },
    }


def sa_profile(ns: str, sa: str, **sa_labels: str) -> tuple[str, dict[str, Any]]:
    """The `ksa.<ns>.<sa>` service-account profile: no rules, the account's
    name and labels to apply, already prefixed `pcsa.`."""
    labels = {"pcsa.projectcalico.org/name": sa}
    labels.update({f"pcsa.{k}": v for k, v in sa_labels.items()})
    return f"{V3}/profiles/ksa.{ns}.{sa}", {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": {"name": f"ksa.{ns}.{sa}"},
        "spec": {"labelsToApply": labels},
    }


def tier(name: str, order: float, default_action: str = "Deny") -> tuple[str, dict[str, Any]]:
    """A Tier resource."""
    return f"{V3}/tiers/{name}", {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Tier",
        "metadata": {"name": name},
        "spec": {"order": order, "defaultAction": default_action},
    }


def security_policy() -> tuple[str, dict[str, Any]]:
    """A policy in the `security` tier: no pod may reach the cloud metadata
    address; everything else is passed on to the next tier."""
    return f"{V3}/globalnetworkpolicies/security.block-metadata", {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "security.block-metadata"},
        "spec": {
            "tier": "security",
            "order": 10,
            "selector": "has(projectcalico.org/namespace)",
            "types": ["Egress"],
            "egress": [
                {"action": "Deny", "destination": {"nets": ["169.254.169.254/32"]}},
                {"action": "Pass"},
            ],
        },
    }


def host_endpoint(node_name: str, node_index: int) -> tuple[str, dict[str, Any]]:
    """The node's `eth0` as a HostEndpoint."""
    ip = f"192.168.{node_index // 250}.{node_index % 250 + 1}"
    name = f"{node_name}-eth0"
    return f"{V3}/hostendpoints/{name}", {
        "apiVersion": "projectcalico.org/v3",
        "kind": "HostEndpoint",
        "metadata": {"name": name, "labels": {"host-endpoint": "ingress", "node": node_name}},
        "spec": {
            "node": node_name,
            "interfaceName": "eth0",
            "expectedIPs": [ip],
            "ports": [{"name": "ssh", "protocol": "TCP", "port": 22}],
        },
    }


def host_policy() -> tuple[str, dict[str, Any]]:
    """A pre-DNAT policy for host endpoints: only the underlay may reach ssh."""
    return f"{V3}/globalnetworkpolicies/security.host-ssh", {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "security.host-ssh"},
        "spec": {
            "tier": "security",
            "order": 20,
            "selector": "has(host-endpoint)",
            "preDNAT": True,
            "applyOnForward": True,
            "types": ["Ingress"],
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"nets": ["192.168.0.0/16"]},
                    "destination": {"ports": ["ssh"]},
                },
                {"action": "Deny", "protocol": "TCP", "destination": {"ports": ["ssh"]}},
            ],
        },
    }


APPS = ("web", "frontend", "db", "cache", "api")
NAMESPACES = ("shop", "billing", "search", "default")
SERVICE_ACCOUNTS = ("default", "monitoring")


def seed_cluster(nodes: int, pods_per_node: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """A consistent small cluster in real Calico shapes: IPv4 and IPv6 pools,
    nodes, blocks, affinities, pods (every third with an IPv6 address, some as
    the `monitoring` service account), namespace and service-account
    profiles, tiers, policies, and node-0's host endpoint."""
    yield ippool()
    yield ippool_v6()
    yield tier("security", 100)
    yield tier("default", 1_000_000)
    yield security_policy()
    yield host_policy()
    for n, ns in enumerate(NAMESPACES):
        yield profile(ns, team=f"team-{n % 2}")
        for sa in SERVICE_ACCOUNTS:
            yield sa_profile(ns, sa, role=sa)
        for i, app in enumerate(APPS):
            yield policy(ns, f"allow-{app}", app, 100 + i, 80 + i)
    yield global_policy("allow-icmp", 10)
    for i in range(nodes):
        name = f"node-{i}"
        yield node_key(name), node(name, i)
        yield block(name, i)
        yield block6(name, i)
        yield affinity(name, i)
        if i == 0:
            yield host_endpoint(name, i)
        for p in range(pods_per_node):
            yield workload(
                name,
                i,
                NAMESPACES[p % len(NAMESPACES)],
                f"pod-{i}-{p}",
                3 + p,
                APPS[p % len(APPS)],
                sa=SERVICE_ACCOUNTS[p % 5 == 4],
                ipv6=p % 3 == 0,
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
                f"node-{i}",
                i,
                ns,
                f"churn-{self._n}",
                3 + rng.randrange(60),
                rng.choice(APPS),
                ipv6=rng.random() < 0.3,
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
