"""Routes for one node, maintained incrementally.

What BIRD and Felix would program for node N (docs/data-model.md):
  * a local workload's IP:        `ip/32 dev caliXXX scope link`
  * a block affine to N:          `blackhole <block>`
  * a block affine to node M:     `<block> via <M>`, or through tunl0 / vxlan.calico
                                  when the enclosing pool says Always, or CrossSubnet
                                  and M is outside N's subnet
  * a remote workload IP outside every block affine to its node (borrowed):
                                  `ip/32 via <its node>` (tunnelled likewise)

Blocks and borrowed remote IPs get a route only when they lie inside an IP
pool (as BIRD exports and Felix's VXLAN routes): nothing outside the pools,
the node's own LAN included, is ever routed by the agent.

IPv6 works the same way with the nodes' IPv6 addresses (`/128` routes, IPv6
blocks and pools, VXLAN through `vxlan-v6.calico`); IPv6 has no IPIP.

Each route has an owner (a block or an endpoint); when two owners claim one
destination the smallest owner id wins, deterministically.  An update
refreshes only the owners it can affect.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from calico_model.topology import EncapMode
from dataplane.batch import Route, RouteKind
from felix_client.calc.model import Block, Endpoint, IPNet, Node, Pool


class RouteCalc:
    """Graph node: routes for one node.  Feed it nodes, pools, blocks and workload endpoints;
    after each batch read `changed` and `effective(dst)`, then clear `changed`."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.nodes: dict[str, Node] = {}
        self.pools: dict[str, Pool] = {}
        self.blocks: dict[str, Block] = {}
        self.blocks_by_node: defaultdict[str, set[str]] = defaultdict(set)
        self.weps: dict[str, Endpoint] = {}
        self.weps_by_node: defaultdict[str, set[str]] = defaultdict(set)
        self._owned: dict[str, dict[str, Route]] = {}  # owner -> dst -> route
        self._claims: defaultdict[str, dict[str, Route]] = defaultdict(
            dict
        )  # dst -> owner -> route
        self.changed: set[str] = set()  # destinations whose effective route may have changed
        self.vteps_changed: set[str] = set()  # nodes whose VXLAN endpoint may have changed

    # -- the table -------------------------------------------------------------

    def effective(self, dst: str) -> Route | None:
        """The route that wins for `dst` now, or None."""
        claims = self._claims.get(dst)
        if not claims:
            return None
        return claims[min(claims)]

    def table(self) -> dict[str, Route]:
        """Every effective route, by destination."""
        return {dst: r for dst in self._claims if (r := self.effective(dst)) is not None}

    def _own(self, owner: str, routes: dict[str, Route]) -> None:
        old = self._owned.get(owner, {})
        if old == routes:
            return
        for dst in old.keys() - routes.keys():
            claims = self._claims[dst]
            del claims[owner]
            if not claims:
                del self._claims[dst]
            self.changed.add(dst)
        for dst, route in routes.items():
            if old.get(dst) != route:
                self._claims[dst][owner] = route
                self.changed.add(dst)
        if routes:
            self._owned[owner] = routes
        else:
            self._owned.pop(owner, None)

    # -- updates ---------------------------------------------------------------

    def set_node(self, name: str, node: Node | None) -> None:
        """A node changed (None: deleted): refreshes the routes through it."""
        old = self.nodes.pop(name, None)
        if node is not None:
            self.nodes[name] = node
        if old == node:
            return  # e.g. only labels changed: nothing routing depends on
        self.vteps_changed.add(name)
        if name == self.node:
            if (old and (old.subnet, old.subnet6)) != (node and (node.subnet, node.subnet6)):
                self._refresh_all()  # our subnet decides CrossSubnet for everyone
            return
        for b in list(self.blocks_by_node.get(name, ())):
            self._refresh_block(b)
        for w in list(self.weps_by_node.get(name, ())):
            self._refresh_wep(w)

    def set_pool(self, key: str, pool: Pool | None) -> None:
        """An IP pool changed (None: deleted): refreshes the routes it encapsulates."""
        if pool is None:
            self.pools.pop(key, None)
        else:
            self.pools[key] = pool
        self._refresh_all()  # pools are few and change rarely

    def set_block(self, key: str, block: Block | None) -> None:
        """An IPAM block changed (None: deleted)."""
        old = self.blocks.pop(key, None)
        if old is not None and old.node is not None:
            self.blocks_by_node[old.node].discard(key)
        if block is not None:
            self.blocks[key] = block
            if block.node is not None:
                self.blocks_by_node[block.node].add(key)
        self._refresh_block(key)
        for n in {b.node for b in (old, block) if b is not None and b.node is not None}:
            for w in list(self.weps_by_node.get(n, ())):
                self._refresh_wep(w)

    def set_wep(self, key: str, ep: Endpoint | None) -> None:
        """A workload endpoint changed (None: deleted)."""
        old = self.weps.pop(key, None)
        if old is not None:
            self.weps_by_node[old.node].discard(key)
        if ep is not None:
            self.weps[key] = ep
            self.weps_by_node[ep.node].add(key)
        self._refresh_wep(key)

    # -- calculation -----------------------------------------------------------

    def _refresh_all(self) -> None:
        for b in list(self.blocks):
            self._refresh_block(b)
        for w in list(self.weps):
            self._refresh_wep(w)

    def _refresh_block(self, key: str) -> None:
        block = self.blocks.get(key)
        routes: dict[str, Route] = {}
        # As Calico (BIRD exports, Felix's VXLAN routes): only blocks inside
        # an IP pool are routed at all, so a block cannot claim the node's
        # own subnet or anything else the pools do not cover.
        if block is not None and block.node is not None and self._in_pool(block.cidr):
            dst = str(block.cidr)
            if block.node == self.node:
                routes[dst] = Route(dst, RouteKind.BLACKHOLE)
            elif (r := self._remote(dst, block.cidr, block.node)) is not None:
                routes[dst] = r
        self._own("b:" + key, routes)

    def _refresh_wep(self, key: str) -> None:
        ep = self.weps.get(key)
        routes: dict[str, Route] = {}
        if ep is not None:
            for net in ep.nets:
                dst = str(net)
                if ep.node == self.node:
                    if ep.iface:
                        routes[dst] = Route(dst, RouteKind.LOCAL, dev=ep.iface)
                elif (
                    self._in_pool(net)
                    and not self._covered(net, ep.node)
                    and (r := self._remote(dst, net, ep.node)) is not None
                ):
                    routes[dst] = r
        self._own("w:" + key, routes)

    def _in_pool(self, net: IPNet) -> bool:
        return in_pool(net, self.pools.values())

    def _covered(self, net: IPNet, node: str) -> bool:
        return any(within(net, self.blocks[b].cidr) for b in self.blocks_by_node.get(node, ()))

    def _remote(self, dst: str, net: IPNet, node_name: str) -> Route | None:
        return remote_route(
            dst, net, self.nodes.get(node_name), self.nodes.get(self.node), self.pools.values()
        )


def within(net: IPNet, outer: IPNet) -> bool:
    """`net` lies inside `outer` (False across families)."""
    return net.within(outer)


def in_pool(net: IPNet, pools: Iterable[Pool]) -> bool:
    """Whether `net` lies inside one of `pools`."""
    return any(within(net, p.cidr) for p in pools)


def remote_route(
    dst: str, net: IPNet, node: Node | None, me: Node | None, pools: Iterable[Pool]
) -> Route | None:
    """The route to `net` on the remote `node` (None while it has no address
    of that family): tunnelled as the most specific enclosing pool says.
    IPv6 has no IPIP; its VXLAN uses the node's IPv6 VTEP address."""
    family = net.version
    addr = node.address(family) if node is not None else None
    if node is None or addr is None:
        return None  # nowhere to send it (yet)
    pool: Pool | None = None
    for p in pools:
        if within(net, p.cidr) and (pool is None or p.cidr.prefixlen > pool.cidr.prefixlen):
            pool = p
    if pool is not None:
        if _tunnel(pool.vxlan, family, addr, me):
            vtep = node.vxlan_addr if family == 4 else node.vxlan_addr6
            return Route(dst, RouteKind.VXLAN, via=vtep or addr)
        if family == 4 and _tunnel(pool.ipip, family, addr, me):
            return Route(dst, RouteKind.IPIP, via=addr)
    return Route(dst, RouteKind.VIA, via=addr)


def _tunnel(mode: EncapMode, family: int, remote_ip: str, me: Node | None) -> bool:
    if mode is EncapMode.ALWAYS:
        return True
    if mode is EncapMode.CROSS_SUBNET:
        same = me.in_subnet(family, remote_ip) if me is not None else None
        return same is not True
    return False
