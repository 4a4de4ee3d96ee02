"""The agent's routes in the kernel's main table, over netlink.

Every route the agent programs carries the route protocol number RT_PROTO,
so the agent reads, changes and removes only its own routes: never a route
someone else made.  A destination the kernel does not hold as one of ours
is `add`ed, never `replace`d: if the kernel already has a route there of
another protocol (the node's connected subnet, its default route), the add
fails and the route is refused, leaving that route alone.  A destination
that is ours is `replace`d (idempotent).  A route
through a device that does not exist yet (a workload interface the CNI
plugin has not made, a tunnel not yet up) is kept pending and programmed
when `retry_pending` finds the device.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Protocol

from dataplane.batch import Route, RouteKind
from dataplane.errors import DataplaneError

RT_PROTO = 80  # ours; `ip route show proto 80` lists exactly the agent's routes
RTN_UNICAST, RTN_BLACKHOLE = 1, 6
RTNH_F_ONLINK = 4
AF_INET, AF_INET6 = 2, 10
TUNNEL_DEVICES = {RouteKind.IPIP: "tunl0", RouteKind.VXLAN: "vxlan.calico"}
VXLAN_V6_DEVICE = "vxlan-v6.calico"


class Netlink(Protocol):
    """What the route table needs of pyroute2's IPRoute."""

    def route(self, command: str, **kwargs: Any) -> Any:
        """A route request."""

    def link_lookup(self, **kwargs: Any) -> list[int]:
        """Interface indexes by attribute."""


@dataclass(frozen=True, slots=True)
class KernelRoute:
    """A route as the kernel reports it, reduced to what decides equality."""

    dst: str
    blackhole: bool
    gateway: str | None
    oif: int | None  # None in a wanted route: whichever device the kernel picks
    onlink: bool

    def satisfies(self, want: KernelRoute) -> bool:
        """Whether this route (as the kernel has it) is the wanted one."""
        return (
            self.blackhole == want.blackhole
            and self.gateway == want.gateway
            and self.onlink == want.onlink
            and (want.oif is None or self.oif == want.oif)
        )


def device_of(route: Route) -> str | None:
    """The device a route goes through, if it names one."""
    if route.kind is RouteKind.LOCAL:
        return route.dev
    if route.kind is RouteKind.VXLAN:
        return VXLAN_V6_DEVICE if ":" in route.dst else TUNNEL_DEVICES[RouteKind.VXLAN]
    return TUNNEL_DEVICES.get(route.kind)


class RouteTable:
    """Programs the agent's routes through one netlink socket."""

    def __init__(self, ipr: Netlink) -> None:
        self._ipr = ipr
        self.pending: dict[str, Route] = {}  # waiting for their device
        self.changes = 0  # kernel writes made (routes set or deleted)
        self.failures: list[str] = []  # routes the kernel refused, since last taken
        self.refused: dict[str, str] = {}  # dst -> why, until set again or deleted
        self._ours: set[str] = set()  # destinations the kernel holds as our routes

    def _index(self, dev: str) -> int | None:
        found = self._ipr.link_lookup(ifname=dev)
        return found[0] if found else None

    def expected(self, route: Route) -> KernelRoute | None:
        """What the kernel should hold for `route` (None: its device is missing)."""
        dst = str(ipaddress.ip_network(route.dst))
        dev = device_of(route)
        oif = self._index(dev) if dev else None
        if dev and oif is None:
            return None
        if route.kind is RouteKind.BLACKHOLE:
            return KernelRoute(dst, True, None, None, False)
        gateway = route.via or None
        return KernelRoute(dst, False, gateway, oif, route.kind.tunnelled)

    def read(self) -> dict[str, KernelRoute]:
        """The agent's routes as the kernel holds them now, by destination."""
        out: dict[str, KernelRoute] = {}
        for family in (AF_INET, AF_INET6):
            for msg in self._ipr.route("dump", family=family, proto=RT_PROTO):
                any_addr = "0.0.0.0" if family == AF_INET else "::"
                dst = f"{msg.get('dst') or any_addr}/{msg['dst_len']}"
                out[dst] = KernelRoute(
                    dst=dst,
                    blackhole=msg["type"] == RTN_BLACKHOLE,
                    gateway=msg.get("gateway"),
                    oif=msg.get("oif") if msg["type"] != RTN_BLACKHOLE else None,
                    onlink=bool(msg["flags"] & RTNH_F_ONLINK),
                )
        self._ours = set(out)
        return out

    def set(self, route: Route) -> bool:
        """Program one route; False if it cannot be yet (its device is
        missing or down, its gateway unreachable): it is kept pending.
        Raises DataplaneError if the kernel refuses it for another reason."""
        want = self.expected(route)
        if want is None:
            self.pending[route.dst] = route
            return False
        try:
            self._write(want)
        except _NotYet:
            self.pending[route.dst] = route
            return False
        self.pending.pop(route.dst, None)
        return True

    def try_set(self, route: Route) -> bool:
        """`set`, but a refusal is recorded in `failures` instead of raised:
        one bad route must not keep the others (or the ACLs) out."""
        try:
            done = self.set(route)
        except DataplaneError as exc:
            self.failures.append(str(exc))
            self.refused[route.dst] = str(exc)
            return False
        self.refused.pop(route.dst, None)
        return done

    def delete(self, dst: str) -> None:
        """Remove the agent's route to `dst`, if the kernel has it."""
        self.pending.pop(dst, None)
        self.refused.pop(dst, None)
        net = ipaddress.ip_network(dst)
        family = AF_INET if net.version == 4 else AF_INET6
        self._ours.discard(str(net))
        try:
            # With proto given the kernel deletes only a route of ours.
            self._ipr.route("del", dst=str(net), family=family, proto=RT_PROTO, table=254)
            self.changes += 1
        except Exception as exc:  # pyroute2 raises NetlinkError; absent is fine
            if getattr(exc, "code", None) not in (3, 2):  # ESRCH, ENOENT
                raise DataplaneError(f"deleting route {dst}: {exc}") from exc

    def retry_pending(self) -> int:
        """Program pending routes whose device now exists; returns how many."""
        done = 0
        for route in list(self.pending.values()):
            if self.try_set(route):
                done += 1
        return done

    def resync(self, desired: dict[str, Route]) -> tuple[int, int]:
        """Make the kernel hold exactly `desired` among the agent's routes:
        (routes written, routes removed).  Touches nothing that is right."""
        have = self.read()
        written = removed = 0
        for dst, route in desired.items():
            want = self.expected(route)
            current = have.get(want.dst) if want is not None else None
            if want is not None and current is not None and current.satisfies(want):
                self.pending.pop(dst, None)
            elif self.try_set(route):
                written += 1
        wanted = {str(ipaddress.ip_network(d)) for d in desired}
        for dst in have.keys() - wanted:
            self.delete(dst)
            removed += 1
        return written, removed

    def _write(self, want: KernelRoute) -> None:
        net = ipaddress.ip_network(want.dst)
        args: dict[str, Any] = {
            "dst": want.dst,
            "family": AF_INET if net.version == 4 else AF_INET6,
            "proto": RT_PROTO,
            "table": 254,
        }
        if want.blackhole:
            args["type"] = "blackhole"
        else:
            args["oif"] = want.oif
            if want.gateway:
                args["gateway"] = want.gateway
            else:
                args["scope"] = "link" if net.version == 4 else 0
            if want.onlink:
                args["flags"] = RTNH_F_ONLINK
        ours = want.dst in self._ours
        try:
            self._ipr.route("replace" if ours else "add", **args)
        except Exception as exc:
            code = getattr(exc, "code", None)
            if code in _NOT_YET:
                raise _NotYet from exc
            if code == EEXIST and not ours and want.dst in self.read():
                # Ours after all (the kernel changed under a failed resync).
                self._ipr.route("replace", **args)
                self.changes += 1
                return
            if code == EEXIST and not ours:
                raise DataplaneError(
                    f"route {want.dst}: the kernel holds a route there that is not the"
                    f" agent's (protocol other than {RT_PROTO}); left alone"
                ) from exc
            raise DataplaneError(f"route {want.dst}: {exc}") from exc
        self._ours.add(want.dst)
        self.changes += 1


class _NotYet(Exception):
    """The route cannot be programmed until its device or next hop is ready."""


_NOT_YET = (100, 101, 113, 19)  # ENETDOWN, ENETUNREACH, EHOSTUNREACH, ENODEV
EEXIST = 17
