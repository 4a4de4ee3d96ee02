"""The node-wide settings of the Linux dataplane that can change while it
runs, and how their sources combine (as in Felix): a flag or environment
variable the operator set wins; then the datastore's FelixConfiguration
(`node.<name>` over `default`, field by field); then the built-in default.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from dataplane.endpoint_to_host import EndpointToHostAction
from dataplane.failsafe import Failsafes, ProtoPort
from dataplane.log_prefix import DEFAULT_LOG_PREFIX
from dataplane.nat_outgoing import NatOutgoingExclusions

DEFAULT_RESYNC_INTERVAL = 90.0  # Felix's routeRefreshInterval


# What each VXLAN parameter may be: (lowest, highest).
VXLAN_LIMITS = {
    "vni": (0, 16_777_215),
    "port": (1, 65_535),
    "mtu": (0, 65_535),
    "mtu6": (0, 65_535),
}


@dataclass(frozen=True, slots=True)
class VxlanParams:
    """The VXLAN devices' parameters: Calico's VNI and port; an MTU of 0
    is the kernel's own for a device with no lower link (1450 for IPv4,
    1430 for IPv6: 1500 less the encapsulation)."""

    vni: int = 4096
    port: int = 4789
    mtu: int = 0
    mtu6: int = 0

    def mtu_of(self, family: int) -> int:
        """The MTU to give the device of `family`."""
        if family == 4:
            return self.mtu or 1450
        return self.mtu6 or 1430


@dataclass(frozen=True, slots=True)
class HostSettings:
    """Each field None where this source does not set it."""

    failsafe_inbound: tuple[ProtoPort, ...] | None = None
    failsafe_outbound: tuple[ProtoPort, ...] | None = None
    endpoint_to_host: EndpointToHostAction | None = None
    resync_interval: float | None = None  # seconds; 0: never
    nat_exclusions: NatOutgoingExclusions | None = None
    log_prefix: str | None = None  # a template: see dataplane.log_prefix
    vxlan_vni: int | None = None
    vxlan_port: int | None = None
    vxlan_mtu: int | None = None
    vxlan_mtu6: int | None = None

    def over(self, below: HostSettings) -> HostSettings:
        """These settings where set, `below`'s elsewhere."""
        return HostSettings(
            *(
                mine if (mine := getattr(self, f.name)) is not None else getattr(below, f.name)
                for f in fields(self)
            )
        )

    def failsafes(self) -> Failsafes:
        """The failsafe ports in force (defaults where unset)."""
        d = Failsafes()
        return Failsafes(
            d.inbound if self.failsafe_inbound is None else self.failsafe_inbound,
            d.outbound if self.failsafe_outbound is None else self.failsafe_outbound,
        )

    def to_host(self) -> EndpointToHostAction:
        """The endpoint-to-host action in force (Felix's Drop if unset)."""
        return self.endpoint_to_host or EndpointToHostAction.DROP

    def resync(self) -> float:
        """Seconds between repairs of what someone changed in the kernel
        (the agent's default, 90, if unset; 0: never)."""
        return DEFAULT_RESYNC_INTERVAL if self.resync_interval is None else self.resync_interval

    def vxlan(self) -> VxlanParams:
        """The VXLAN parameters in force (Calico's defaults where unset)."""
        d = VxlanParams()
        return VxlanParams(
            d.vni if self.vxlan_vni is None else self.vxlan_vni,
            d.port if self.vxlan_port is None else self.vxlan_port,
            d.mtu if self.vxlan_mtu is None else self.vxlan_mtu,
            d.mtu6 if self.vxlan_mtu6 is None else self.vxlan_mtu6,
        )

    def log_template(self) -> str:
        """The Log rules' prefix template in force (Felix's `calico-packet`
        if unset or empty)."""
        return self.log_prefix or DEFAULT_LOG_PREFIX

    def nat_outgoing_exclusions(self) -> NatOutgoingExclusions:
        """The outgoing NAT exclusions in force (Felix's IPPoolsOnly if unset)."""
        return self.nat_exclusions or NatOutgoingExclusions.IPPOOLS_ONLY

    def nat_excludes_hosts(self) -> bool:
        """Whether outgoing NAT leaves node addresses alone."""
        return self.nat_outgoing_exclusions().excludes_hosts

    def kernel_rules_differ(self, other: HostSettings) -> bool:
        """Whether the base chains for `other` differ from ours."""
        return self._kernel_view() != other._kernel_view()

    def _kernel_view(self) -> tuple[object, ...]:
        return (self.failsafes(), self.to_host(), self.nat_excludes_hosts())

    def to_dict(self) -> dict[str, object]:
        """JSON-ready, the effective values."""
        fs, vxlan = self.failsafes(), self.vxlan()
        return {
            "failsafe_inbound_host_ports": [str(p) for p in fs.inbound],
            "failsafe_outbound_host_ports": [str(p) for p in fs.outbound],
            "default_endpoint_to_host_action": self.to_host().value,
            "resync_interval": self.resync(),
            "log_prefix": self.log_template(),
            "vxlan": {
                "vni": vxlan.vni,
                "port": vxlan.port,
                "mtu": vxlan.mtu_of(4),
                "mtu6": vxlan.mtu_of(6),
            },
            "nat_outgoing_exclusions": self.nat_outgoing_exclusions().value,
        }


@dataclass(frozen=True, slots=True)
class ConfiguredSettings:
    """What the datastore's FelixConfiguration asks of this node: the
    settings the dataplane applies live, the fields it sets that this agent
    does not apply (reported, never half applied), and the applied fields it
    could not read exactly (ignored, with why: the value below stays)."""

    settings: HostSettings = HostSettings()
    not_applied: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """JSON-ready, for /status."""
        return {"not_applied": list(self.not_applied), "errors": list(self.errors)}
