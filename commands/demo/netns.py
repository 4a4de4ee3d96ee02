"""A fabric made only of network namespaces: an underlay bridge, nodes, pods.

`typha demo --dataplane linux` and the kernel tests build their nodes and
pods with it.  Every `ip` command runs inside a namespace of the fabric, so
the root namespace's interfaces, routes and firewall are never touched;
`close` removes every namespace the fabric made.  Needs root, CAP_NET_ADMIN,
iproute2 and libnftables: `kernel_missing` says which is absent.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import os
import shutil
import subprocess
import uuid

HOST_MAC = "ee:ee:ee:ee:ee:ee"  # as Calico's CNI plugin sets the host side
HOST_LL = "fe80::ecee:eeff:feee:eeee"  # its link-local address: the pod's IPv6 gateway
NETNS_DIR = "/run/netns"


def kernel_missing() -> str | None:
    """Why network namespaces and nftables are out of reach here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, netlink, nftables)"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    if ctypes.util.find_library("nftables") is None:
        return "needs libnftables (Debian package nftables)"
    name = f"probe-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"needs CAP_NET_ADMIN: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def sh(
    ns: str, *cmd: str, check: bool = True, timeout: float = 10
) -> subprocess.CompletedProcess[str]:
    """Run a command inside namespace `ns`."""
    return subprocess.run(
        ["ip", "netns", "exec", ns, *cmd],
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


class Fabric:
    """Namespaces for nodes, pods and an underlay bridge, all named
    `<prefix><tag>-<role>`; `close` removes them all."""

    def __init__(self, prefix: str = "t", tag: str = "") -> None:
        self.prefix = prefix
        self.tag = tag or uuid.uuid4().hex[:6]
        self.namespaces: list[str] = []
        self.underlay = ""

    def ns(self, role: str) -> str:
        """Create a namespace (loopback up) and return its name."""
        name = f"{self.prefix}{self.tag}-{role}"
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        self.namespaces.append(name)
        sh(name, "ip", "link", "set", "lo", "up")
        return name

    @staticmethod
    def path(ns: str) -> str:
        """The namespace's path, for LinuxDataplane(netns=...)."""
        return f"{NETNS_DIR}/{ns}"

    def node(self, name: str, underlay_ip: str | None = None, underlay_ip6: str = "") -> str:
        """A node namespace; with `underlay_ip` (a /24 address) its eth0 is
        plugged into the fabric's underlay bridge (and given `underlay_ip6`,
        a /64 address, too)."""
        ns = self.ns(name)
        if underlay_ip is None:
            return ns
        if not self.underlay:
            self.underlay = self.ns("underlay")
            sh(self.underlay, "ip", "link", "add", "br0", "type", "bridge")
            sh(self.underlay, "ip", "link", "set", "br0", "up")
        port = f"u-{name}"[:15]
        veth = ["ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns]
        sh(self.underlay, *veth)
        sh(self.underlay, "ip", "link", "set", port, "master", "br0", "up")
        sh(ns, "ip", "addr", "add", underlay_ip, "dev", "eth0")
        sh(ns, "ip", "link", "set", "eth0", "up")
        # A default route, as real nodes have: proxy ARP answers for the
        # pods' gateway 169.254.1.1 only when the node has a route to it.
        gateway = underlay_ip.rsplit(".", 1)[0] + ".254"
        sh(ns, "ip", "route", "add", "default", "via", gateway, "dev", "eth0")
        if underlay_ip6:
            sh(ns, "ip", "-6", "addr", "add", underlay_ip6, "dev", "eth0", "nodad")
        return ns

    def pod(self, node_ns: str, name: str, host_iface: str, ip: str, ip6: str = "") -> str:
        """A pod as the CNI plugin makes it: `eth0` with its /32 and a default
        route via 169.254.1.1; the host side named `host_iface` in the node,
        with MAC ee:ee:ee:ee:ee:ee.  With `ip6`: its /128 and a default route
        via the host side's link-local address."""
        ns = self.ns(name)
        veth = ["ip", "link", "add", host_iface, "address", HOST_MAC, "type", "veth"]
        sh(node_ns, *veth, "peer", "name", "eth0", "netns", ns)
        # No duplicate address detection on the host side: its link-local
        # address is the pod's IPv6 gateway and must answer at once.
        sh(node_ns, "sysctl", "-qw", f"net.ipv6.conf.{host_iface}.accept_dad=0")
        sh(ns, "ip", "addr", "add", f"{ip}/32", "dev", "eth0")
        sh(ns, "ip", "link", "set", "eth0", "up")
        sh(ns, "ip", "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
        sh(ns, "ip", "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
        if ip6:
            sh(ns, "ip", "-6", "addr", "add", f"{ip6}/128", "dev", "eth0", "nodad")
            sh(ns, "ip", "-6", "route", "add", "default", "via", HOST_LL, "dev", "eth0")
        return ns

    def close(self) -> None:
        """Remove every namespace this fabric made (interfaces, routes and
        nftables tables inside them go with them)."""
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces.clear()


def remove_orphans(prefix: str) -> list[str]:
    """Remove namespaces named `<prefix><pid>...` whose process `pid` is gone
    (a demo killed with SIGKILL); returns their names."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(NETNS_DIR):
            if not name.startswith(prefix):
                continue
            pid = name[len(prefix) :].split("-", 1)[0]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
                removed.append(name)
    return removed
