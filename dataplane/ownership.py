"""What the agent owns on a node, and the gate every batch passes first.

The calculation says what it wants; this module decides what of it the
agent may touch, whatever the datastore (or a leaf replica, or a
`felix-agent compute` input) said.  As Felix defines it:

* workload interfaces are those whose name starts with one of the
  interface prefixes (`--interface-prefix`, default `cali`); an endpoint
  naming any other interface (`eth0`, `lo`) is refused, so it gets no
  route, no interface setting and no place in the workload dispatch;
* one endpoint per interface: when several claim one, the lowest key wins
  (Felix: the lowest workload endpoint ID) and the others are shadowed
  until it goes; a shadowed endpoint gets nothing programmed;
* a local route (`ip dev caliX`) only into the interface's owner, for one
  of the owner's own addresses;
* no route to a default destination (`0.0.0.0/0`, `::/0`), and every
  destination and next hop a plain address (no zone);
* a VXLAN tunnel endpoint only with plain addresses and a real MAC;
* a host endpoint never on a workload interface;
* chains only for admitted endpoints: a refused or shadowed endpoint's
  chains are held back, and go in when it becomes the owner.

What is refused is listed in `refused` (key to reason) until it is deleted
or corrected; the rest of the batch goes on.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

from dataplane import kernel_values as V
from dataplane.batch import (
    ChainKey,
    DataplaneBatch,
    EndpointInfo,
    EndpointKind,
    Route,
    RouteKind,
    Rule,
    Vtep,
)
from dataplane.errors import UnsafeValue

DEFAULT_INTERFACE_PREFIXES = ("cali",)


@dataclass(frozen=True, slots=True)
class Ownership:
    """The workload interface prefixes (Felix's `InterfacePrefix`: a
    comma-separated list, each a plain name start)."""

    interface_prefixes: tuple[str, ...] = DEFAULT_INTERFACE_PREFIXES

    @staticmethod
    def parse(text: str) -> Ownership:
        """`cali` or `cali,tap`.  Raises UnsafeValue naming a bad prefix."""
        prefixes = tuple(p.strip() for p in text.split(",") if p.strip())
        if not prefixes:
            raise UnsafeValue("the interface prefix list is empty")
        for p in prefixes:
            if len(p) > 14:
                raise UnsafeValue(f"interface prefix {p!r:.20} leaves no room for a name")
            V.ifname(p)
        return Ownership(prefixes)

    def workload_interface(self, name: str) -> bool:
        """Whether `name` is a valid interface name with a workload prefix."""
        try:
            V.ifname(name)
        except UnsafeValue:
            return False
        return name.startswith(self.interface_prefixes)

    def wildcards(self) -> tuple[str, ...]:
        """The prefixes as nft interface wildcards (`cali*`)."""
        return tuple(f"{p}*" for p in self.interface_prefixes)


def check_endpoint(own: Ownership, info: EndpointInfo) -> str | None:
    """Why the agent must not program this endpoint, or None."""
    try:
        for a in info.addresses:
            V.address(a)
    except UnsafeValue as exc:
        return str(exc)
    if info.kind is EndpointKind.WORKLOAD:
        if not own.workload_interface(info.interface):
            prefixes = ",".join(own.interface_prefixes)
            return (
                f"interface {info.interface!r:.40} is not a workload interface"
                f" (valid name starting with {prefixes})"
            )
        return None
    if info.interface in ("", "*"):
        return None
    try:
        V.ifname(info.interface)
    except UnsafeValue as exc:
        return str(exc)
    if own.workload_interface(info.interface):
        return f"a host endpoint cannot take workload interface {info.interface!r}"
    return None


_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


def check_vtep(vtep: Vtep) -> str | None:
    """Why a node's VXLAN tunnel endpoint must not be programmed, or None:
    every address plain, every MAC six lower-case hex pairs."""
    for family in (4, 6):
        found = vtep.of(family)
        if found is None:
            continue
        underlay, address, mac = found
        try:
            V.address(underlay)
            V.address(address)
        except UnsafeValue as exc:
            return str(exc)
        if not _MAC.fullmatch(mac):
            return f"VXLAN MAC {mac!r:.30} is not a MAC address"
    return None


def check_route(route: Route) -> str | None:
    """Why a route that is not a local workload route must not be
    programmed, or None."""
    try:
        dst = V.network(route.dst)
        if dst.endswith("/0"):
            return f"route to {dst}: a default route is never the agent's"
        if route.via:
            V.address(route.via)
    except UnsafeValue as exc:
        return str(exc)
    return None


@dataclass
class Gate:
    """Filters batches down to what the agent owns.  Feed every batch
    through `admit`, in order; program only what it returns."""

    ownership: Ownership = field(default_factory=Ownership)
    refused: dict[str, str] = field(default_factory=dict)  # key or "route <dst>" -> reason
    _wanted: dict[str, EndpointInfo] = field(default_factory=dict)  # valid, as calculated
    _claims: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    _active: dict[str, EndpointInfo] = field(default_factory=dict)  # admitted endpoints
    _local: dict[str, Route] = field(default_factory=dict)  # wanted local routes by dst
    _local_by_dev: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    _routes: set[str] = field(default_factory=set)  # admitted destinations
    _chains: dict[str, dict[ChainKey, tuple[Rule, ...]]] = field(default_factory=dict)

    def admit(self, batch: DataplaneBatch) -> DataplaneBatch:
        """The part of `batch` the agent may program (a new batch; the
        same sets, chains and VXLAN entries, endpoints and routes filtered)."""
        out = DataplaneBatch(
            ipsets_create=batch.ipsets_create,
            ipsets_delete=batch.ipsets_delete,
            ipset_add=batch.ipset_add,
            ipset_remove=batch.ipset_remove,
            chains_del=set(batch.chains_del),
            vteps_set={},
            vteps_del=set(batch.vteps_del),
            # Pools are cluster-wide and only ever matched against (NAT's
            # sets): nothing on the node is anyone else's to protect.
            pools_set=dict(batch.pools_set),
            pools_del=set(batch.pools_del),
            # Node addresses likewise: only destinations NAT leaves alone.
            hosts_set=dict(batch.hosts_set),
            hosts_del=set(batch.hosts_del),
            configured=batch.configured,
        )
        for node, vtep in batch.vteps_set.items():
            reason = check_vtep(vtep)
            if reason is None:
                self.refused.pop(f"vtep {node}", None)
                out.vteps_set[node] = vtep
            else:
                self.refused[f"vtep {node}"] = reason
                out.vteps_del.add(node)
        for node in batch.vteps_del:
            self.refused.pop(f"vtep {node}", None)
        was_active = set(self._active)
        touched: set[str] = set()
        for key in batch.endpoints_del | batch.endpoints_set.keys():
            self._forget(key, touched)
        for key, info in batch.endpoints_set.items():
            reason = check_endpoint(self.ownership, info)
            if reason is not None:
                self.refused[key] = reason
                continue
            self._wanted[key] = info
            if info.kind is EndpointKind.WORKLOAD:
                self._claims[info.interface].add(key)
                touched.add(info.interface)
        # Host endpoints need no owner election; workload ones do.
        for key in batch.endpoints_del | batch.endpoints_set.keys():
            wanted = self._wanted.get(key)
            if wanted is None or wanted.kind is EndpointKind.HOST:
                self._activate(key, wanted, out)
        for iface in touched:
            self._elect(iface, out)
        self._admit_chains(batch, was_active, out)
        for dst in batch.routes_del:
            self._drop_local(dst)
            self.refused.pop(f"route {dst}", None)
            self._set_route(dst, None, out)
        for dst, route in batch.routes_set.items():
            self._drop_local(dst)
            if route.kind is RouteKind.LOCAL:
                self._local[dst] = route
                self._local_by_dev[route.dev].add(dst)
                self._judge_local(dst, out)
            else:
                reason = check_route(route)
                self._refuse_route(dst, reason)
                self._set_route(dst, route if reason is None else None, out)
        for iface in touched:
            for dst in list(self._local_by_dev.get(iface, ())):
                self._judge_local(dst, out)
        return out

    # -- endpoints -------------------------------------------------------------

    def _forget(self, key: str, touched: set[str]) -> None:
        self.refused.pop(key, None)
        old = self._wanted.pop(key, None)
        if old is not None and old.kind is EndpointKind.WORKLOAD:
            claims = self._claims[old.interface]
            claims.discard(key)
            if not claims:
                del self._claims[old.interface]
            touched.add(old.interface)

    def _activate(self, key: str, info: EndpointInfo | None, out: DataplaneBatch) -> None:
        if info is None:
            if self._active.pop(key, None) is not None:
                out.endpoints_del.add(key)
            return
        self._active[key] = info
        out.endpoints_set[key] = info
        out.endpoints_del.discard(key)

    def _elect(self, iface: str, out: DataplaneBatch) -> None:
        claims = self._claims.get(iface, set())
        owner = min(claims) if claims else None
        for key in claims:
            if key != owner:
                self.refused[key] = f"interface {iface} belongs to endpoint {owner}"
                self._activate(key, None, out)
        for key, info in list(self._active.items()):
            if info.kind is EndpointKind.WORKLOAD and info.interface == iface and key != owner:
                self._activate(key, None, out)
        if owner is not None:
            self.refused.pop(owner, None)
            if self._active.get(owner) != self._wanted[owner] or owner in out.endpoints_del:
                self._activate(owner, self._wanted[owner], out)

    def _admit_chains(self, batch: DataplaneBatch, was: set[str], out: DataplaneBatch) -> None:
        now = self._active.keys()
        for key in was - now:
            out.chains_del.update(self._chains.get(key, ()))
        for ck in batch.chains_del:
            held = self._chains.get(ck.endpoint)
            if held is not None:
                held.pop(ck, None)
                if not held:
                    del self._chains[ck.endpoint]
        for ck, rules in batch.chains_set.items():
            self._chains.setdefault(ck.endpoint, {})[ck] = rules
            if ck.endpoint in now:
                out.chains_set[ck] = rules
        for key in now - was:
            out.chains_set.update(self._chains.get(key, {}))
        out.chains_del.difference_update(out.chains_set)

    # -- routes ----------------------------------------------------------------

    def _owner_of(self, iface: str) -> EndpointInfo | None:
        claims = self._claims.get(iface)
        return self._wanted[min(claims)] if claims else None

    def _judge_local(self, dst: str, out: DataplaneBatch) -> None:
        route = self._local.get(dst)
        if route is None:
            return
        owner = self._owner_of(route.dev)
        reason: str | None = None
        try:
            addr = V.network(dst).partition("/")[0]
        except UnsafeValue as exc:
            reason = str(exc)
        else:
            if owner is None:
                reason = f"route to {dst}: {route.dev!r:.40} is not a workload interface it owns"
            elif addr not in owner.addresses:
                reason = f"route to {dst}: not an address of the endpoint on {route.dev}"
        self._refuse_route(dst, reason)
        self._set_route(dst, route if reason is None else None, out)

    def _drop_local(self, dst: str) -> None:
        old = self._local.pop(dst, None)
        if old is not None:
            devs = self._local_by_dev[old.dev]
            devs.discard(dst)
            if not devs:
                del self._local_by_dev[old.dev]

    def _refuse_route(self, dst: str, reason: str | None) -> None:
        if reason is None:
            self.refused.pop(f"route {dst}", None)
        else:
            self.refused[f"route {dst}"] = reason

    def _set_route(self, dst: str, route: Route | None, out: DataplaneBatch) -> None:
        if route is not None:
            self._routes.add(dst)
            out.routes_set[dst] = route
            out.routes_del.discard(dst)
        else:
            out.routes_set.pop(dst, None)
            if dst in self._routes:
                self._routes.discard(dst)
                out.routes_del.add(dst)
