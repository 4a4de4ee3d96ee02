"""A test fabric made only of network namespaces the test creates and removes.

Nothing here touches the root namespace's interfaces, routes or firewall:
every `ip` and `nft` command runs inside a namespace of the fabric.  Needs
root and CAP_NET_ADMIN and the `nftables` package; `require_kernel()` skips
the test with the reason when any is missing.
"""

from __future__ import annotations

import ctypes.util
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST_MAC = "ee:ee:ee:ee:ee:ee"  # as Calico's CNI plugin sets the host side
HOST_LL = "fe80::ecee:eeff:feee:eeee"  # its link-local address: the pod's IPv6 gateway


def kernel_missing() -> str | None:
    """Why kernel tests cannot run here, or None."""
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


def require_kernel() -> None:
    """Skip the calling test, with the reason, if the kernel is out of reach."""
    why = kernel_missing()
    if why:
        pytest.skip(why)


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
    """Namespaces for nodes, pods and an underlay bridge; `close` removes them all."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.namespaces: list[str] = []
        self.underlay = ""

    def ns(self, role: str) -> str:
        """Create a namespace (loopback up) and return its name."""
        name = f"t{self.tag}-{role}"
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        self.namespaces.append(name)
        sh(name, "ip", "link", "set", "lo", "up")
        return name

    def path(self, ns: str) -> str:
        """The namespace's path, for LinuxDataplane(netns=...)."""
        return f"/run/netns/{ns}"

    def node(self, name: str, underlay_ip: str | None = None, underlay_ip6: str = "") -> str:
        """A node namespace; with `underlay_ip` (a /24 address) its eth0 is
        plugged into the fabric's underlay bridge (and given `underlay_ip6`,
        a /64 address, too)."""
        ns = self.ns(name)
        if underlay_ip is not None:
            if not self.underlay:
                self.underlay = self.ns("underlay")
                sh(self.underlay, "ip", "link", "add", "br0", "type", "bridge")
                sh(self.underlay, "ip", "link", "set", "br0", "up")
            port = f"u-{name}"[:15]
            sh(
                self.underlay,
                "ip",
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
            )
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

    def ping(self, ns: str, ip: str) -> bool:
        """One ICMP (ICMPv6 for an IPv6 address) echo request from `ns`, one
        second to answer."""
        return self._probe(ns, "ping", ip, "1")

    def connect(self, ns: str, ip: str, port: int) -> bool:
        """One TCP connect from `ns`, one second to be accepted."""
        return self._probe(ns, "connect", ip, str(port), "1")

    def listen(self, ns: str, port: int, seconds: float) -> subprocess.Popen[bytes]:
        """A TCP listener in `ns` for `seconds`."""
        return subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                "-m",
                "tests.probe",
                "listen",
                str(port),
                str(seconds),
            ],
            cwd=ROOT,
        )

    def probe(self, ns: str, *args: str) -> subprocess.Popen[str]:
        """Start a probe (`python -m tests.probe ...`) in `ns`; the caller
        waits for it."""
        cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.probe", *args]
        return subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def _probe(self, ns: str, *args: str) -> bool:
        cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.probe", *args]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=10).returncode == 0

    def close(self) -> None:
        """Remove every namespace this fabric made."""
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces.clear()


@contextmanager
def fabric() -> Iterator[Fabric]:
    """A fabric that is always removed, whatever the test does."""
    require_kernel()
    f = Fabric()
    try:
        yield f
    finally:
        f.close()
