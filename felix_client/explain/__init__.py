"""`explain`: the path one packet takes through this node's policy.

Given a source and a destination (an address, or a workload endpoint by
`<namespace>/<pod>` or `<namespace>/<endpoint name>`: `names`), it finds the
local workloads involved and runs the packet through their chains: the
sender's egress chain if it is on this node, the receiver's ingress chain
if it is (`answer`).  Each hop lists, in order, every tier's policies and
profiles the packet was tested against, the rule that decided and the
verdict, and what each staged policy would have decided (`report`).  The
chains are either those the agent computed (`dataplane.rule_eval`) or those
the kernel holds (`dataplane.linux.nft_eval`); both give the same answer
when the kernel holds what the agent computed.  Host endpoints are not
explained.  `route` serves it on the agent's status port.
"""

from felix_client.explain.answer import explain, explain_computed, explain_kernel, read_kernel
from felix_client.explain.names import address_of, pod_of, resolve
from felix_client.explain.query import Query, packet_of
from felix_client.explain.report import Entry, Explanation, Hop, consulted

__all__ = [
    "Entry",
    "Explanation",
    "Hop",
    "Query",
    "address_of",
    "consulted",
    "explain",
    "explain_computed",
    "explain_kernel",
    "packet_of",
    "pod_of",
    "read_kernel",
    "resolve",
]
