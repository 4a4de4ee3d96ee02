"""Graph node: the FelixConfiguration that applies to this node.

Felix merges `default` with `node.<this node>`, the node's fields winning
one by one, and ignores every other node's.  Of the merged spec, this agent
applies live the fields in APPLIED; every other field set is reported as not
applied (the operator must not believe it is in force), and an applied field
whose value cannot be honoured exactly (a failsafe port limited to a `net`,
say) is ignored as a whole, with the reason, never applied in part.
"""

from __future__ import annotations

from typing import Any

from calico_model.field_spec import go_duration_seconds
from dataplane import log_prefix
from dataplane.endpoint_to_host import EndpointToHostAction
from dataplane.failsafe import PROTOCOLS, ProtoPort
from dataplane.host_settings import ConfiguredSettings, HostSettings
from dataplane.nat_outgoing import NatOutgoingExclusions

APPLIED = (
    "defaultEndpointToHostAction",
    "failsafeInboundHostPorts",
    "failsafeOutboundHostPorts",
    "iptablesRefreshInterval",
    "logPrefix",
    "natOutgoingExclusions",
    "routeRefreshInterval",
    "vxlanMTU",
    "vxlanMTUV6",
    "vxlanPort",
    "vxlanVNI",
)
# FelixConfiguration's VXLAN fields: (lowest, highest) each takes here.
VXLAN_RANGES = {
    "vxlanVNI": (0, 16777215),
    "vxlanPort": (1, 65535),
    "vxlanMTU": (0, 65535),
    "vxlanMTUV6": (0, 65535),
}
# One resync repairs both routes and rules here: it runs at the shorter of
# the two refresh intervals set (0 where both set are 0: never).
REFRESH = ("routeRefreshInterval", "iptablesRefreshInterval")


class FelixConfigCalc:
    """Feed it every FelixConfiguration by name; `changed` says whether
    `effective()` may differ since the caller last cleared it."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.specs: dict[str, dict[str, Any]] = {}  # "default" and this node's only
        self.changed = False

    def set(self, name: str, value: dict[str, Any] | None) -> None:
        """A FelixConfiguration changed (None: deleted)."""
        if name not in ("default", f"node.{self.node}"):
            return
        spec = value.get("spec") if isinstance(value, dict) else None
        if isinstance(spec, dict):
            self.specs[name] = spec
        else:
            self.specs.pop(name, None)
        self.changed = True

    def effective(self) -> ConfiguredSettings:
        """The merged spec, read."""
        merged = {**self.specs.get("default", {}), **self.specs.get(f"node.{self.node}", {})}
        errors: list[str] = []
        to_host = None
        if "defaultEndpointToHostAction" in merged:
            try:
                to_host = EndpointToHostAction.parse(str(merged["defaultEndpointToHostAction"]))
            except ValueError as exc:
                errors.append(f"defaultEndpointToHostAction: {exc}")
        exclusions = None
        if "natOutgoingExclusions" in merged:
            try:
                exclusions = NatOutgoingExclusions.parse(str(merged["natOutgoingExclusions"]))
            except ValueError as exc:
                errors.append(f"natOutgoingExclusions: {exc}")
        prefix = None
        if "logPrefix" in merged:
            try:
                prefix = log_prefix.check(str(merged["logPrefix"]))
            except ValueError as exc:
                errors.append(f"logPrefix: {exc}")
        vxlan: dict[str, int | None] = {}
        for name, (lo, hi) in VXLAN_RANGES.items():
            vxlan[name] = None
            if name in merged:
                v = merged[name]
                if isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi:
                    vxlan[name] = v
                else:
                    errors.append(f"{name}: {v!r:.20} is not in {lo}-{hi}")
        ports: dict[str, tuple[ProtoPort, ...] | None] = {}
        for name in ("failsafeInboundHostPorts", "failsafeOutboundHostPorts"):
            ports[name] = None
            if name in merged:
                try:
                    ports[name] = _ports(merged[name])
                except ValueError as exc:
                    errors.append(f"{name}: {exc}")
        intervals = []
        for name in REFRESH:
            if name in merged:
                try:
                    intervals.append(_seconds(merged[name]))
                except ValueError as exc:
                    errors.append(f"{name}: {exc}")
        positive = [i for i in intervals if i > 0]
        resync = min(positive) if positive else (0.0 if intervals else None)
        return ConfiguredSettings(
            HostSettings(
                ports["failsafeInboundHostPorts"],
                ports["failsafeOutboundHostPorts"],
                to_host,
                resync,
                exclusions,
                prefix,
                vxlan["vxlanVNI"],
                vxlan["vxlanPort"],
                vxlan["vxlanMTU"],
                vxlan["vxlanMTUV6"],
            ),
            tuple(sorted(k for k in merged if k not in APPLIED)),
            tuple(errors),
        )


def _seconds(value: Any) -> float:
    """A Go duration as Calico writes them (`90s`, `1m30s`, `500ms`, `0`);
    raises ValueError otherwise."""
    return 0.0 if value == 0 else go_duration_seconds(value)


def _ports(value: Any) -> tuple[ProtoPort, ...]:
    """A FelixConfiguration list of `{protocol, port[, net]}`; raises
    ValueError for anything this agent cannot honour exactly."""
    if not isinstance(value, list):
        raise ValueError("not a list")
    out = []
    for item in value:
        if not isinstance(item, dict):
            raise ValueError(f"{item!r:.40} is not {{protocol, port}}")
        if item.get("net"):
            raise ValueError("a failsafe port limited to a net is not supported")
        proto = str(item.get("protocol", "tcp")).lower()
        port = item.get("port")
        if proto not in PROTOCOLS or not isinstance(port, int) or isinstance(port, bool):
            raise ValueError(f"{item!r:.40} is not {{protocol, port}}")
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is not in 1-65535")
        out.append(ProtoPort(proto, port))
    return tuple(sorted(set(out)))
