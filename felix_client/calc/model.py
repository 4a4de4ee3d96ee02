"""Typed views of the synced state.

Every value reaches the calculation through the server's own validation
(calico_model.validation.check_resource, called by the Calculator's input
gate): the agent accepts exactly what the server serves and treats anything
else as absent, counted.  The values are the models that check returns
(calico_model.endpoints, .policies, .topology); this module adds what the
dataplane needs of them.  Networks are compact `Net` values
(calico_model.addresses).
"""

from __future__ import annotations

from calico_model.addresses import Net
from calico_model.endpoints import Endpoint, NamedPort
from calico_model.topology import Block, Node, Pool
from dataplane.batch import EndpointInfo, EndpointKind, PoolInfo, Vtep

__all__ = ["Block", "Endpoint", "IPNet", "NamedPort", "Node", "Pool"]

IPNet = Net


def endpoint_info(ep: Endpoint) -> EndpointInfo:
    """Where an endpoint's chains attach, for the dataplane."""
    kind = EndpointKind.HOST if ep.host else EndpointKind.WORKLOAD
    return EndpointInfo(kind, ep.iface, tuple(n.address for n in ep.nets))


def vtep_of(node: Node) -> Vtep | None:
    """The node's VXLAN tunnel endpoints, if it has a complete one of either
    family."""
    v4 = (node.ip, node.vxlan_addr, node.vxlan_mac)
    v6 = (node.ip6, node.vxlan_addr6, node.vxlan_mac6)
    t4 = (v4[0] or "", v4[1] or "", (v4[2] or "").lower()) if all(v4) else ("", "", "")
    t6 = (v6[0] or "", v6[1] or "", (v6[2] or "").lower()) if all(v6) else ("", "", "")
    if not any(t4) and not any(t6):
        return None
    return Vtep(node.name, *t4, *t6)


def pool_info(pool: Pool) -> PoolInfo:
    """What the dataplane needs of a pool."""
    return PoolInfo(str(pool.cidr), pool.nat_outgoing)
