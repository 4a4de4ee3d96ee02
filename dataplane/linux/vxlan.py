"""The IPv4 VXLAN tunnel: the `vxlan.calico` device and one neighbour and
one forwarding entry per remote node.

As in Calico: VNI 4096 on UDP port 4789, learning off; the device carries
the node's VTEP address (/32) and MAC from its Node resource; for each other
node, a permanent neighbour entry (its VTEP address → its VTEP MAC) and a
forwarding entry (that MAC → its underlay address).  Routes to remote blocks
then go `via <VTEP address> dev vxlan.calico onlink`.  Only entries on our
device are ever read or changed.
"""

from __future__ import annotations

from typing import Any

from dataplane.batch import Vtep
from dataplane.errors import DataplaneError

DEVICE = "vxlan.calico"
VNI = 4096
PORT = 4789
NUD_PERMANENT = 0x80
NTF_SELF = 0x02


class Vxlan:
    """Keeps `vxlan.calico` and its peer entries as the VTEPs say."""

    def __init__(self, ipr: Any, node: str) -> None:
        self._ipr = ipr
        self.node = node
        self.changes = 0

    def _index(self) -> int | None:
        found = self._ipr.link_lookup(ifname=DEVICE)
        return found[0] if found else None

    def sync(self, vteps: dict[str, Vtep]) -> int:
        """Make the device and its entries match `vteps` (every node's,
        ours included); returns how many kernel changes that took."""
        before = self.changes
        own = vteps.get(self.node)
        try:
            idx = self._device(own) if own is not None else self._index()
            if idx is None:
                return 0
            peers = {n: v for n, v in vteps.items() if n != self.node}
            self._neighbours(idx, peers)
            self._fdb(idx, peers)
        except Exception as exc:
            if isinstance(exc, DataplaneError):
                raise
            raise DataplaneError(f"{DEVICE}: {exc}") from exc
        return self.changes - before

    def _device(self, own: Vtep) -> int:
        idx = self._index()
        if idx is not None:
            link = self._ipr.link("get", index=idx)[0]
            data = (link.get("linkinfo") or {}).get("data") or {}
            same = (
                data.get("vxlan_id") == VNI
                and data.get("vxlan_port") == PORT
                and data.get("vxlan_local") == own.underlay
            )
            if not same:
                self._ipr.link("del", index=idx)
                self.changes += 1
                idx = None
        if idx is None:
            self._ipr.link(
                "add",
                ifname=DEVICE,
                kind="vxlan",
                vxlan_id=VNI,
                vxlan_port=PORT,
                vxlan_local=own.underlay,
                vxlan_learning=0,
            )
            self.changes += 1
            idx = self._index()
            assert idx is not None
        link = self._ipr.link("get", index=idx)[0]
        if link.get("address") != own.mac or not link["flags"] & 1:
            self._ipr.link("set", index=idx, address=own.mac, state="up")
            self.changes += 1
        addrs = {a.get("address") for a in self._ipr.get_addr(index=idx, family=2)}
        if own.address not in addrs:
            for a in addrs:
                self._ipr.addr("del", index=idx, address=a, prefixlen=32)
            self._ipr.addr("add", index=idx, address=own.address, prefixlen=32)
            self.changes += 1
        return int(idx)

    def _neighbours(self, idx: int, peers: dict[str, Vtep]) -> None:
        have = {
            n.get("dst"): n.get("lladdr")
            for n in self._ipr.get_neighbours(ifindex=idx, family=2)
            if n["state"] & NUD_PERMANENT
        }
        want = {v.address: v.mac for v in peers.values()}
        for dst, mac in want.items():
            if have.get(dst) != mac:
                self._ipr.neigh("replace", dst=dst, lladdr=mac, ifindex=idx, state=NUD_PERMANENT)
                self.changes += 1
        for dst in have.keys() - want.keys():
            self._ipr.neigh("del", dst=dst, ifindex=idx)
            self.changes += 1

    def _fdb(self, idx: int, peers: dict[str, Vtep]) -> None:
        have = {
            f.get("lladdr"): f.get("dst")
            for f in self._ipr.fdb("dump", ifindex=idx)
            if f.get("dst") and f["state"] & NUD_PERMANENT
        }
        want = {v.mac: v.underlay for v in peers.values()}
        for mac, dst in want.items():
            if have.get(mac) != dst:
                self._ipr.fdb(
                    "replace", ifindex=idx, lladdr=mac, dst=dst, state=NUD_PERMANENT, flags=NTF_SELF
                )
                self.changes += 1
        for mac in have.keys() - want.keys():
            self._ipr.fdb("del", ifindex=idx, lladdr=mac, dst=have[mac], flags=NTF_SELF)
            self.changes += 1
