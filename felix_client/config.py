"""`felix-agent` configuration: every flag is also an env var FELIX_<FLAG>.

Precedence: command-line flag, then environment, then default.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from calico_model.keys import DEFAULT_PREFIX, KeyLayout
from dataplane import log_prefix
from dataplane.endpoint_to_host import EndpointToHostAction
from dataplane.errors import BadFailsafePorts, UnsafeValue
from dataplane.failsafe import DEFAULT_INBOUND, DEFAULT_OUTBOUND, Failsafes, parse_ports
from dataplane.host_settings import VXLAN_LIMITS, HostSettings, VxlanParams
from dataplane.nat_outgoing import NatOutgoingExclusions
from dataplane.ownership import DEFAULT_INTERFACE_PREFIXES, Ownership
from felix_client.verdict_series import DEFAULT_COUNTER_SERIES
from runtime import envconfig, flags
from runtime.flags import flag
from runtime.helpformat import DefaultsHelpFormatter
from runtime.logformat import LogFormat, log_format_flag, log_level_flag, log_summary_flag
from syncclient.addresses import parse_addresses
from syncclient.errors import ConfigError

ENV_PREFIX = "FELIX_"
T = TypeVar("T")


def env_name(flag: str) -> str:
    """The environment variable that stands in for `--flag`."""
    return envconfig.env_name(ENV_PREFIX, flag)


class DataplaneKind(StrEnum):
    """The dataplane drivers."""

    MEMORY = "memory"
    LINUX = "linux"


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """A checked agent configuration."""

    typha: str
    node: str
    http_host: str
    http_port: int
    prefix: str = DEFAULT_PREFIX
    dataplane: DataplaneKind = DataplaneKind.MEMORY
    dataplane_netns: str = ""
    sysctl_root: str = "/proc/sys"
    dataplane_delay: float = 0.0  # testing: seconds each dataplane batch is held back
    resync_interval: float = 90.0
    failsafes: Failsafes = field(default_factory=Failsafes)
    endpoint_to_host: EndpointToHostAction = EndpointToHostAction.DROP
    nat_exclusions: NatOutgoingExclusions = NatOutgoingExclusions.IPPOOLS_ONLY
    log_prefix: str = log_prefix.DEFAULT_LOG_PREFIX
    vxlan: VxlanParams = field(default_factory=VxlanParams)
    # The flags given, or set through the environment (ours or Calico's
    # spelling): these win over the datastore's FelixConfiguration.
    explicit: frozenset[str] = frozenset()

    def explicit_settings(self) -> HostSettings:
        """The dataplane settings the operator set (None where not)."""
        e = self.explicit
        return HostSettings(
            self.failsafes.inbound if "failsafe-inbound-host-ports" in e else None,
            self.failsafes.outbound if "failsafe-outbound-host-ports" in e else None,
            self.endpoint_to_host if "default-endpoint-to-host-action" in e else None,
            self.resync_interval if "resync-interval" in e else None,
            self.nat_exclusions if "nat-outgoing-exclusions" in e else None,
            self.log_prefix if "log-prefix" in e else None,
            self.vxlan.vni if "vxlan-vni" in e else None,
            self.vxlan.port if "vxlan-port" in e else None,
            self.vxlan.mtu if "vxlan-mtu" in e else None,
            self.vxlan.mtu6 if "vxlan-mtu-v6" in e else None,
        )

    ownership: Ownership = field(default_factory=Ownership)
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.TEXT
    log_summary_interval: float = 60.0
    tls_reload_interval: float = 30.0
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_server_name: str = ""
    upstream_stale_after: float = 10.0
    max_snapshot_bytes: int = 1 << 30
    policy_counter_series: int = DEFAULT_COUNTER_SERIES


def _named(flag_name: str, read: Callable[[str], T]) -> Callable[[str], T]:
    """`read`, its ValueError as a ConfigError naming `--flag_name`."""

    def parse(text: str) -> T:
        try:
            return read(text)
        except (ValueError, UnsafeValue) as exc:
            raise ConfigError(f"--{flag_name}: {exc}") from None

    return parse


_VXLAN = VxlanParams()


def _vxlan_flag(field_name: str, help_: str) -> Any:
    """A VXLAN flag: VxlanParams' default for `field_name`, within its limits."""
    lo, hi = VXLAN_LIMITS[field_name]
    return flag(getattr(_VXLAN, field_name), help_, minimum=lo, maximum=hi)


@dataclass(frozen=True, slots=True)
class AgentFlags:
    """Every `felix-agent` flag, declared once (`runtime.flags.flag`):
    `--field-name`, its variable FELIX_FIELD_NAME (or Calico's spelling),
    its default, help, type and bounds.  `agent_config` builds the checked
    AgentConfig from it."""

    typha: str = flag(None, "typha addresses H:P[,H:P...] (required)", required=True)
    node: str = flag(None, "this node's name (required)", required=True)
    prefix: str = flag(DEFAULT_PREFIX, "datastore prefix the server serves")
    http_listen: str = flag("127.0.0.1:9099", "status port H:P")
    dataplane: DataplaneKind = flag(
        DataplaneKind.MEMORY,
        "dataplane driver",
        text=DataplaneKind.MEMORY.value,
        choices=tuple(d.value for d in DataplaneKind),
        parse=DataplaneKind,
    )
    dataplane_netns: str = flag(
        "",
        "linux: program this network namespace (a path such as /run/netns/N) instead of"
        " the agent's own; the connection to typha stays in the agent's namespace",
    )
    sysctl_root: str = flag(
        "/proc/sys",
        "linux: where the kernel's network settings are written (forwarding, proxy ARP);"
        " in a pod, the host's /proc/sys/net mounted writable (the runtime's is read-only)",
    )
    resync_interval: float = flag(
        90.0,
        "linux: seconds between checks that repair routes and rules someone changed (0: never)",
        minimum=0,
    )
    failsafe_inbound_host_ports: str = flag(
        ",".join(str(p) for p in DEFAULT_INBOUND),
        "linux: proto:port list (or none) that host endpoint policy never blocks inbound",
    )
    failsafe_outbound_host_ports: str = flag(
        ",".join(str(p) for p in DEFAULT_OUTBOUND),
        "linux: proto:port list (or none) that host endpoint policy never blocks outbound",
    )
    default_endpoint_to_host_action: EndpointToHostAction = flag(
        EndpointToHostAction.DROP,
        "linux: what happens to a workload's packets to its own host once its egress policy"
        " allowed them: Drop, Return (the host's own firewall decides) or Accept",
        text=EndpointToHostAction.DROP.value,
        parse=_named("default-endpoint-to-host-action", EndpointToHostAction.parse),
    )
    nat_outgoing_exclusions: NatOutgoingExclusions = flag(
        NatOutgoingExclusions.IPPOOLS_ONLY,
        "linux: destinations a natOutgoing pool's traffic is not masqueraded to: IPPoolsOnly"
        " (addresses in a pool) or IPPoolsAndHostIPs (and every node's address)",
        text=NatOutgoingExclusions.IPPOOLS_ONLY.value,
        parse=_named("nat-outgoing-exclusions", NatOutgoingExclusions.parse),
    )
    log_prefix: str = flag(
        log_prefix.DEFAULT_LOG_PREFIX,
        "linux: the kernel log prefix of Log rules; %%t, %%k, %%n, %%p become the tier, the"
        " kind (np, gnp, pro), the name, the namespace/name (Calico's LogPrefix)",
        parse=_named("log-prefix", log_prefix.check),
    )
    vxlan_vni: int = _vxlan_flag("vni", "linux: the VXLAN devices' VNI (Calico's VXLANVNI)")
    vxlan_port: int = _vxlan_flag("port", "linux: the VXLAN devices' UDP port (Calico's VXLANPort)")
    vxlan_mtu: int = _vxlan_flag("mtu", "linux: vxlan.calico's MTU; 0: the kernel's, 1450")
    vxlan_mtu_v6: int = _vxlan_flag("mtu6", "linux: vxlan-v6.calico's MTU; 0: the kernel's, 1430")
    interface_prefix: Ownership = flag(
        Ownership(),
        "workload interface name prefixes, comma separated: the only interfaces the agent"
        " routes to, configures and puts in workload dispatch (Calico's InterfacePrefix)",
        text=",".join(DEFAULT_INTERFACE_PREFIXES),
        parse=_named("interface-prefix", Ownership.parse),
    )
    log_level: str = log_level_flag(ConfigError)
    log_format: LogFormat = log_format_flag(ConfigError)
    log_summary_interval: float = log_summary_flag()
    tls_ca_file: str = flag("", "CA that signs typha's certificate (PEM)")
    tls_cert_file: str = flag("", "this agent's certificate (PEM)")
    tls_key_file: str = flag("", "this agent's private key (PEM)")
    tls_server_name: str = flag("", "name to verify typha's certificate by")
    tls_reload_interval: float = flag(
        30.0,
        "seconds between checks of the TLS files for a rotated certificate (0: never)",
        minimum=0,
    )
    upstream_stale_after: float = flag(
        10.0,
        "seconds a replica may report the datastore lost before the agent moves away",
        minimum=0,
    )
    dataplane_delay: float = flag(
        0.0,
        "testing only: seconds each dataplane batch waits before it is programmed "
        "(blocking), to watch convergence wait for a slow node",
        minimum=0,
    )
    max_snapshot_bytes: int = flag(
        1 << 30, "largest snapshot accepted (keys + values); a larger one is refused", minimum=1
    )
    policy_counter_series: int = flag(
        DEFAULT_COUNTER_SERIES,
        "most policy rules with verdict counter series of their own; the rest are summed"
        " into policy __OVERFLOW__ (0: only those)",
        minimum=0,
    )


def add_agent_arguments(p: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """The flags of `felix-agent`, with defaults taken from `env`."""

    def help_of(name: str, help_: str) -> str:
        calico = CALICO_SPELLINGS.get(name)
        return (
            f"{help_} [env {env_name(name)}" + (f", or Calico's {calico}" if calico else "") + "]"
        )

    flags.add_flags(
        p,
        AgentFlags,
        lambda name, text: envconfig.env_default(
            env, ENV_PREFIX, name, CALICO_SPELLINGS.get(name), text
        ),
        help_of,
    )


def unknown_variables(env: Mapping[str, str], parser: argparse.ArgumentParser) -> list[str]:
    """`FELIX_*` variables that name no flag (a misspelling is otherwise
    silently ignored).  Calico's own spellings of a flag we have
    (`FELIX_INTERFACEPREFIX`) count as known."""
    return envconfig.unknown_variables(env, ENV_PREFIX, parser, CALICO_SPELLINGS.values())


# Calico Felix's names for settings that mean the same here, read when ours
# is not set (a manifest written for Calico keeps working).
CALICO_SPELLINGS = {
    "typha": "FELIX_TYPHAADDR",
    "interface-prefix": "FELIX_INTERFACEPREFIX",
    "log-level": "FELIX_LOGSEVERITYSCREEN",
    "default-endpoint-to-host-action": "FELIX_DEFAULTENDPOINTTOHOSTACTION",
    "nat-outgoing-exclusions": "FELIX_NATOUTGOINGEXCLUSIONS",
    "log-prefix": "FELIX_LOGPREFIX",
    "vxlan-vni": "FELIX_VXLANVNI",
    "vxlan-port": "FELIX_VXLANPORT",
    "vxlan-mtu": "FELIX_VXLANMTU",
    "vxlan-mtu-v6": "FELIX_VXLANMTUV6",
    "tls-ca-file": "FELIX_TYPHACAFILE",
    "tls-cert-file": "FELIX_TYPHACERTFILE",
    "tls-key-file": "FELIX_TYPHAKEYFILE",
}


def normalise_prefix(prefix: str) -> str:
    """`prefix` with its trailing "/", checked (ConfigError if unusable)."""
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    try:
        KeyLayout(prefix)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return prefix


def agent_config(ns: argparse.Namespace) -> AgentConfig:
    """Check parsed arguments; raises ConfigError naming the bad one."""
    for name in ("typha", "node"):
        if not getattr(ns, name):
            raise ConfigError(f"--{name} (or {env_name(name)}) is required")
    f = AgentFlags(**flags.read_flags(ns, AgentFlags, ConfigError))
    parse_addresses(f.typha)
    host, port = parse_addresses(f.http_listen, listen=True)[0]
    tls = (f.tls_ca_file, f.tls_cert_file, f.tls_key_file)
    if any(tls) and not all(tls):
        # typha always asks for a client certificate: a CA alone, or a
        # certificate without one, would be a connection that never works,
        # or (no CA) one in plaintext without a word.
        raise ConfigError("--tls-ca-file, --tls-cert-file and --tls-key-file go together")
    if f.tls_server_name and not all(tls):
        raise ConfigError("--tls-server-name needs --tls-ca-file, --tls-cert-file, --tls-key-file")
    try:
        failsafes = Failsafes(
            parse_ports(f.failsafe_inbound_host_ports),
            parse_ports(f.failsafe_outbound_host_ports),
        )
    except BadFailsafePorts as exc:
        raise ConfigError(str(exc)) from None
    return AgentConfig(
        typha=f.typha,
        node=f.node,
        http_host=host,
        http_port=port,
        prefix=normalise_prefix(f.prefix),
        dataplane=f.dataplane,
        dataplane_netns=f.dataplane_netns,
        sysctl_root=f.sysctl_root,
        dataplane_delay=f.dataplane_delay,
        resync_interval=f.resync_interval,
        failsafes=failsafes,
        endpoint_to_host=f.default_endpoint_to_host_action,
        nat_exclusions=f.nat_outgoing_exclusions,
        log_prefix=f.log_prefix,
        vxlan=VxlanParams(f.vxlan_vni, f.vxlan_port, f.vxlan_mtu, f.vxlan_mtu_v6),
        ownership=f.interface_prefix,
        log_level=f.log_level,
        log_format=f.log_format,
        log_summary_interval=f.log_summary_interval,
        tls_reload_interval=f.tls_reload_interval,
        tls_ca_file=f.tls_ca_file,
        tls_cert_file=f.tls_cert_file,
        tls_key_file=f.tls_key_file,
        tls_server_name=f.tls_server_name,
        upstream_stale_after=f.upstream_stale_after,
        max_snapshot_bytes=f.max_snapshot_bytes,
        policy_counter_series=f.policy_counter_series,
    )


def agent_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """The `felix-agent` argument parser, defaults taken from `env`."""
    p = argparse.ArgumentParser(
        prog="felix-agent",
        description="node agent fed by typha.  Also: `felix-agent compute --node N [FILE]`"
        " (a state in, the node's tables out) and `felix-agent --version`.",
        formatter_class=DefaultsHelpFormatter,
    )
    add_agent_arguments(p, env)
    return p


# The flags whose settings FelixConfiguration may also set (live).
LIVE_FLAGS = (
    "failsafe-inbound-host-ports",
    "failsafe-outbound-host-ports",
    "default-endpoint-to-host-action",
    "resync-interval",
    "nat-outgoing-exclusions",
    "log-prefix",
    "vxlan-vni",
    "vxlan-port",
    "vxlan-mtu",
    "vxlan-mtu-v6",
)


def explicit_flags(argv: Sequence[str], env: Mapping[str, str]) -> frozenset[str]:
    """Which of LIVE_FLAGS the operator set: on the command line, or in the
    environment under our name or Calico's."""
    given = argparse.ArgumentParser(add_help=False)
    for name in LIVE_FLAGS:
        given.add_argument(f"--{name}", default=argparse.SUPPRESS)
    ns, _ = given.parse_known_args(list(argv))
    out = {name for name in LIVE_FLAGS if hasattr(ns, name.replace("-", "_"))}
    for name in LIVE_FLAGS:
        if env_name(name) in env or CALICO_SPELLINGS.get(name, "") in env:
            out.add(name)
    return frozenset(out)


def parse_agent_args(argv: Sequence[str] | None, env: Mapping[str, str]) -> AgentConfig:
    """Parse and check `felix-agent` arguments (argparse exits on bad syntax)."""
    args = list(sys.argv[1:] if argv is None else argv)
    config = agent_config(agent_parser(env).parse_args(args))
    return dataclasses.replace(config, explicit=explicit_flags(args, env))
