"""The VXLAN tunnels: `vxlan.calico` (IPv4) and `vxlan-v6.calico` (IPv6),
each with one neighbour and one forwarding entry per remote node.

As in Calico: VNI 4096 on UDP port 4789 unless configured otherwise
(`VxlanParams`, from FelixConfiguration's vxlanVNI, vxlanPort, vxlanMTU and
vxlanMTUV6: a new VNI or port replaces the device), learning off; a device carries the
node's VTEP address of its family (/32, /128) and MAC from its Node
resource; for each other node with a VTEP of that family, a permanent
neighbour entry (its VTEP address → its VTEP MAC) and a forwarding entry
(that MAC → its underlay address).  Routes to remote blocks then go
`via <VTEP address> dev <device> onlink`.  Only entries on our devices are
ever read or changed.

`sync` reads the kernel's entries and writes the difference (start-up,
resync); `update` writes only the entries of the nodes a batch changed,
without reading anything back, so a new node costs two netlink calls per
family however many peers there are.
"""

from __future__ import annotations

from typing import Any

from dataplane.batch import Vtep
from dataplane.errors import DataplaneError
from dataplane.host_settings import VxlanParams

DEVICES = {4: "vxlan.calico", 6: "vxlan-v6.calico"}
AF = {4: 2, 6: 10}
NUD_PERMANENT = 0x80
NTF_SELF = 0x02


class Vxlan:
    """Keeps both VXLAN devices and their peer entries as the VTEPs say."""

    def __init__(self, ipr: Any, node: str, params: VxlanParams | None = None) -> None:
        self._ipr = ipr
        self.node = node
        self.params = params or VxlanParams()  # set it, then `sync`
        self.changes = 0
        # What the last sync or update left in the kernel: the device index
        # and the peers' (underlay, address, MAC) per family.
        self._index_of: dict[int, int] = {}
        self._peers: dict[int, dict[str, tuple[str, str, str]]] = {}

    def update(self, vteps: dict[str, Vtep], changed: set[str]) -> int:
        """Write the entries of the `changed` nodes only (a full `sync` if
        our own node changed or nothing was synced yet); returns how many
        kernel changes that took."""
        if self.node in changed or not self._peers:
            return self.sync(vteps)
        before = self.changes
        for family, idx in self._index_of.items():
            known = self._peers[family]
            for n in changed:
                v = vteps.get(n)
                new = v.of(family) if v is not None else None
                old = known.get(n)
                if new == old:
                    continue
                try:
                    if old is not None:
                        self._forget(idx, old, new)
                    if new is not None:
                        self._learn(idx, new)
                except Exception as exc:
                    raise DataplaneError(f"{DEVICES[family]}: {exc}") from exc
                if new is None:
                    known.pop(n, None)
                else:
                    known[n] = new
        return self.changes - before

    def _learn(self, idx: int, peer: tuple[str, str, str]) -> None:
        underlay, address, mac = peer
        self._ipr.neigh("replace", dst=address, lladdr=mac, ifindex=idx, state=NUD_PERMANENT)
        self._ipr.fdb(
            "replace", ifindex=idx, lladdr=mac, dst=underlay, state=NUD_PERMANENT, flags=NTF_SELF
        )
        self.changes += 2

    def _forget(
        self, idx: int, old: tuple[str, str, str], new: tuple[str, str, str] | None
    ) -> None:
        underlay, address, mac = old
        if new is None or new[1] != address:
            self._ipr.neigh("del", dst=address, ifindex=idx)
            self.changes += 1
        if new is None or new[2] != mac:
            self._ipr.fdb("del", ifindex=idx, lladdr=mac, dst=underlay, flags=NTF_SELF)
            self.changes += 1

    def sync(self, vteps: dict[str, Vtep]) -> int:
        """Make the devices and their entries match `vteps` (every node's,
        ours included); returns how many kernel changes that took."""
        before = self.changes
        own = vteps.get(self.node)
        self._index_of, self._peers = {}, {}
        for family in (4, 6):
            mine = own.of(family) if own is not None else None
            peers = {
                n: t for n, v in vteps.items() if n != self.node and (t := v.of(family)) is not None
            }
            try:
                idx = self._device(family, *mine) if mine is not None else self._index(family)
                if idx is not None:
                    self._neighbours(family, idx, peers)
                    self._fdb(idx, peers)
                    self._index_of[family], self._peers[family] = idx, peers
            except DataplaneError:
                raise
            except Exception as exc:
                raise DataplaneError(f"{DEVICES[family]}: {exc}") from exc
        return self.changes - before

    def _index(self, family: int) -> int | None:
        found = self._ipr.link_lookup(ifname=DEVICES[family])
        return int(found[0]) if found else None

    def _device(self, family: int, underlay: str, address: str, mac: str) -> int:
        name, idx = DEVICES[family], self._index(family)
        local = "vxlan_local" if family == 4 else "vxlan_local6"
        if idx is not None:
            link = self._ipr.link("get", index=idx)[0]
            data = (link.get("linkinfo") or {}).get("data") or {}
            same = (
                data.get("vxlan_id") == self.params.vni
                and data.get("vxlan_port") == self.params.port
                and data.get(local) == underlay
            )
            if not same:
                self._ipr.link("del", index=idx)
                self.changes += 1
                idx = None
        if idx is None:
            self._ipr.link(
                "add",
                ifname=name,
                kind="vxlan",
                vxlan_id=self.params.vni,
                vxlan_port=self.params.port,
                vxlan_learning=0,
                **{local: underlay},
            )
            self.changes += 1
            idx = self._index(family)
            assert idx is not None
        link = self._ipr.link("get", index=idx)[0]
        if link.get("address") != mac or not link["flags"] & 1:
            self._ipr.link("set", index=idx, address=mac, state="up")
            self.changes += 1
        mtu = self.params.mtu_of(family)
        if link.get("mtu") != mtu:
            self._ipr.link("set", index=idx, mtu=mtu)
            self.changes += 1
        plen = 32 if family == 4 else 128
        addrs = {a.get("address") for a in self._ipr.get_addr(index=idx, family=AF[family])}
        addrs = {a for a in addrs if a and not a.startswith("fe80:")}
        if address not in addrs:
            for a in addrs:
                self._ipr.addr("del", index=idx, address=a, prefixlen=plen)
            self._ipr.addr("add", index=idx, address=address, prefixlen=plen)
            self.changes += 1
        return idx

    def _neighbours(self, family: int, idx: int, peers: dict[str, tuple[str, str, str]]) -> None:
        have = {
            n.get("dst"): n.get("lladdr")
            for n in self._ipr.get_neighbours(ifindex=idx, family=AF[family])
            if n["state"] & NUD_PERMANENT
        }
        want = {address: mac for _, address, mac in peers.values()}
        for dst, mac in want.items():
            if have.get(dst) != mac:
                self._ipr.neigh("replace", dst=dst, lladdr=mac, ifindex=idx, state=NUD_PERMANENT)
                self.changes += 1
        for dst in have.keys() - want.keys():
            self._ipr.neigh("del", dst=dst, ifindex=idx)
            self.changes += 1

    def _fdb(self, idx: int, peers: dict[str, tuple[str, str, str]]) -> None:
        have = {
            f.get("lladdr"): f.get("dst")
            for f in self._ipr.fdb("dump", ifindex=idx)
            if f.get("dst") and f["state"] & NUD_PERMANENT
        }
        want = {mac: underlay for underlay, _, mac in peers.values()}
        for mac, dst in want.items():
            if have.get(mac) != dst:
                self._ipr.fdb(
                    "replace", ifindex=idx, lladdr=mac, dst=dst, state=NUD_PERMANENT, flags=NTF_SELF
                )
                self.changes += 1
        for mac in have.keys() - want.keys():
            self._ipr.fdb("del", ifindex=idx, lladdr=mac, dst=have[mac], flags=NTF_SELF)
            self.changes += 1
