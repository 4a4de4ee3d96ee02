"""Answering a query on this node: the local workload chains a packet goes
through, evaluated over the computed chains (`dataplane.rule_eval`) or the
kernel's ruleset (`dataplane.linux.nft_eval`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dataplane.batch import ChainKey, Direction, EndpointInfo, EndpointKind, IpSetId, Rule, Stage
from dataplane.errors import DataplaneError
from dataplane.linux import nft_render as R
from dataplane.linux.driver import LinuxDataplane
from dataplane.linux.nft_eval import Table, dispatch_target, trace_endpoint_chain
from dataplane.memory import MemoryDataplane
from dataplane.policy_counters import CounterKey
from dataplane.rule_eval import trace_chain
from dataplane.trace import ChainTrace, Packet, TraceError, Verdict
from felix_client.calc.model import Endpoint
from felix_client.explain.query import Query, packet_of
from felix_client.explain.report import Explanation, Hop

KernelTable = tuple[Table, dict[str, CounterKey]]


def _local(endpoints: Mapping[str, EndpointInfo], address: str) -> tuple[str, EndpointInfo] | None:
    for key, info in sorted(endpoints.items()):
        if info.kind is EndpointKind.WORKLOAD and any(
            a.split("/")[0] == address for a in info.addresses
        ):
            return key, info
    return None


def hops_of(
    pk: Packet, endpoints: Mapping[str, EndpointInfo]
) -> list[tuple[Direction, str, EndpointInfo]]:
    """The local workload chains the packet goes through, in order."""
    out = []
    src = _local(endpoints, pk.src)
    if src is not None:
        out.append((Direction.EGRESS, *src))
    dst = _local(endpoints, pk.dst)
    if dst is not None:
        out.append((Direction.INGRESS, *dst))
    return out


def explain_computed(
    node: str,
    pk: Packet,
    endpoints: Mapping[str, EndpointInfo],
    chains: Mapping[ChainKey, tuple[Rule, ...]],
    ipsets: Mapping[IpSetId, Iterable[str]],
) -> Explanation:
    """The packet through the chains the agent computed."""
    hops = []
    for direction, key, info in hops_of(pk, endpoints):
        rules = chains.get(ChainKey(key, direction, pk.family, Stage.NORMAL), ())
        hops.append(Hop(direction, key, info.interface, trace_chain(rules, direction, pk, ipsets)))
    return Explanation(node, pk, "computed", tuple(hops))


def explain_kernel(
    node: str,
    pk: Packet,
    endpoints: Mapping[str, EndpointInfo],
    table: Table,
    names: Mapping[str, CounterKey],
) -> Explanation:
    """The packet through the chains the kernel holds, found as the kernel
    finds them: through the dispatch maps, by interface.  Raises TraceError."""
    hops = []
    for direction, key, info in hops_of(pk, endpoints):
        chain = dispatch_target(table, R.dispatch_map(direction, pk.family), info.interface)
        if chain is None:
            # No chain for a workload interface: the base chain drops.
            trace = ChainTrace((), Verdict.DENY, None)
        else:
            trace = trace_endpoint_chain(table, chain, pk, names)
        hops.append(Hop(direction, key, info.interface, trace))
    return Explanation(node, pk, "kernel", tuple(hops))


def read_kernel(dp: MemoryDataplane) -> KernelTable:
    """The kernel's table with what its counters count (one read on the
    driver's kernel thread).  Raises TraceError."""
    if not isinstance(dp, LinuxDataplane):
        raise TraceError("the kernel's ruleset is only there with the linux dataplane")
    try:
        return dp.kernel_table()
    except DataplaneError as exc:
        raise TraceError(f"the kernel's table cannot be read: {exc}") from None


def explain(
    q: Query,
    node: str,
    endpoints: Mapping[str, Endpoint],
    dp: MemoryDataplane,
    kernel: KernelTable | None = None,
) -> Explanation:
    """Answer a query on this node: `endpoints` are every endpoint the agent
    knows (for names), `dp` its dataplane; for a kernel query, `kernel` as
    `read_kernel` gave it (read now if None).  Raises TraceError (a query
    that cannot be answered, a kernel table that cannot be read or
    evaluated)."""
    pk = packet_of(q, endpoints)
    if not q.kernel:
        return explain_computed(node, pk, dp.endpoints, dp.chains, dp.ipsets)
    table, names = kernel if kernel is not None else read_kernel(dp)
    return explain_kernel(node, pk, dp.endpoints, table, names)
