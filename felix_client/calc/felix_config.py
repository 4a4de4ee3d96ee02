"""Graph node: the FelixConfiguration that applies to this node.

Felix merges `default` with `node.<this node>`, the node's fields winning
one by one, and ignores every other node's.  Of the merged spec, this agent
applies live the fields in APPLIED; every other field set is reported as not
applied (the operator must not believe it is in force), and an applied field
whose value cannot be honoured exactly (a failsafe port limited to a `net`,
say) is ignored as a whole, with the reason, never applied in part.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from calico_model.value_checks import go_duration_seconds
from dataplane import log_prefix
from dataplane.endpoint_to_host import EndpointToHostAction
from dataplane.failsafe import PROTOCOLS, ProtoPort
from dataplane.host_settings import VXLAN_LIMITS, ConfiguredSettings, HostSettings
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
T = TypeVar("T")
# FelixConfiguration's VXLAN fields, in HostSettings' order, with the
# VxlanParams field each sets.
VXLAN_FIELDS = {"vxlanVNI": "vni", "vxlanPort": "port", "vxlanMTU": "mtu", "vxlanMTUV6": "mtu6"}
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

        def read(name: str, parse: Callable[[Any], T]) -> T | None:
            """The field parsed, or None if unset or unreadable (then why is in `errors`)."""
            if name not in merged:
                return None
            try:
                return parse(merged[name])
            except ValueError as exc:
                errors.append(f"{name}: {exc}")
                return None

        intervals = [i for name in REFRESH if (i := read(name, _seconds)) is not None]
        positive = [i for i in intervals if i > 0]
        resync = min(positive) if positive else (0.0 if intervals else None)
        return ConfiguredSettings(
            HostSettings(
                read("failsafeInboundHostPorts", _ports),
                read("failsafeOutboundHostPorts", _ports),
                read("defaultEndpointToHostAction", lambda v: EndpointToHostAction.parse(str(v))),
                resync,
                read("natOutgoingExclusions", lambda v: NatOutgoingExclusions.parse(str(v))),
                read("logPrefix", lambda v: log_prefix.check(str(v))),
                *(read(f, _in_range(*VXLAN_LIMITS[p])) for f, p in VXLAN_FIELDS.items()),
            ),
            tuple(sorted(k for k in merged if k not in APPLIED)),
            tuple(sorted(errors)),
        )


def _in_range(lo: int, hi: int) -> Callable[[Any], int]:
    def parse(v: Any) -> int:
        if isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi:
            return v
        raise ValueError(f"{v!r:.20} is not in {lo}-{hi}")

    return parse


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
