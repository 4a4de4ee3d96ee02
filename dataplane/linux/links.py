"""What a workload's host-side interface needs for the data path.

The pod's default gateway is 169.254.1.1, an address nobody has: proxy ARP
(IPv4) and proxy NDP (IPv6) on the host side make the host answer for it,
so the pod's packets reach the host, which routes them.  Forwarding must be
on.  Settings are written under /proc/sys of the calling thread's network
namespace, or under another root: a container runtime mounts /proc/sys
read-only, so a pod mounts the host's /proc/sys/net writable elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from dataplane.errors import DataplaneError

WORKLOAD_SETTINGS_V4 = {"proxy_arp": "1", "forwarding": "1"}
WORKLOAD_SETTINGS_V6 = {"proxy_ndp": "1", "forwarding": "1", "accept_ra": "0"}


class Sysctl:
    """Reads and writes /proc/sys/net settings, writing only what differs."""

    def __init__(self, root: str = "/proc/sys") -> None:
        self.root = Path(root)
        self.writes = 0

    def ensure(self, rel: str, value: str) -> bool:
        """Set `rel` (e.g. `net/ipv4/ip_forward`) to `value`; True if it had to
        change.  Raises DataplaneError if the setting is missing or refused."""
        path = self.root / rel
        try:
            if path.read_text().strip() == value:
                return False
            path.write_text(value)
        except OSError as exc:
            raise DataplaneError(f"sysctl {rel}={value}: {exc.strerror or exc}") from exc
        self.writes += 1
        return True

    def writable(self) -> bool:
        """Whether the settings can be written at all (a container's own
        /proc/sys is mounted read-only)."""
        return os.access(self.root / "net/ipv4/ip_forward", os.W_OK)

    def exists(self, rel: str) -> bool:
        """Whether a setting exists (an interface's directory appears with it)."""
        return (self.root / rel).exists()


def configure_host(sysctl: Sysctl) -> None:
    """Forwarding for the whole namespace."""
    sysctl.ensure("net/ipv4/ip_forward", "1")
    if sysctl.exists("net/ipv6/conf/all/forwarding"):
        sysctl.ensure("net/ipv6/conf/all/forwarding", "1")


def configure_workload_interface(sysctl: Sysctl, iface: str) -> bool:
    """Proxy ARP/NDP and forwarding on a workload's host-side interface;
    False if the interface does not exist (yet)."""
    base4 = f"net/ipv4/conf/{iface}"
    if not sysctl.exists(base4):
        return False
    for key, value in WORKLOAD_SETTINGS_V4.items():
        sysctl.ensure(f"{base4}/{key}", value)
    sysctl.ensure(f"net/ipv4/neigh/{iface}/proxy_delay", "0")
    base6 = f"net/ipv6/conf/{iface}"
    if sysctl.exists(base6):
        for key, value in WORKLOAD_SETTINGS_V6.items():
            sysctl.ensure(f"{base6}/{key}", value)
    return True
