"""`felix-agent` configuration: every flag is also an env var FELIX_<FLAG>.

Precedence: command-line flag, then environment, then default.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from calico_model.keys import DEFAULT_PREFIX, KeyLayout
from dataplane import log_prefix
from dataplane.endpoint_to_host import EndpointToHostAction
from dataplane.errors import BadFailsafePorts, UnsafeValue
from dataplane.failsafe import DEFAULT_INBOUND, DEFAULT_OUTBOUND, Failsafes, parse_ports
from dataplane.host_settings import VXLAN_LIMITS, HostSettings, VxlanParams
from dataplane.nat_outgoing import NatOutgoingExclusions
from dataplane.ownership import DEFAULT_INTERFACE_PREFIXES, Ownership
from runtime import envconfig
from runtime.helpformat import DefaultsHelpFormatter
from runtime.logformat import LogFormat
from syncclient.addresses import parse_addresses
from syncclient.errors import ConfigError

ENV_PREFIX = "FELIX_"


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


def add_agent_arguments(p: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """The flags of `felix-agent`, with defaults taken from `env`."""

    def add(flag: str, default: str | None, help_: str, **kw: object) -> None:
        calico = CALICO_SPELLINGS.get(flag)
        names = env_name(flag) + (f", or Calico's {calico}" if calico else "")
        p.add_argument(
            f"--{flag}",
            default=envconfig.env_default(env, ENV_PREFIX, flag, calico, default),
            help=f"{help_} [env {names}]",
            **kw,  # type: ignore[arg-type]
        )

    add("typha", None, "typha addresses H:P[,H:P...] (required)")
    add("node", None, "this node's name (required)")
    add("prefix", DEFAULT_PREFIX, "datastore prefix the server serves")
    add("http-listen", "127.0.0.1:9099", "status port H:P")
    add("dataplane", "memory", "dataplane driver", choices=[d.value for d in DataplaneKind])
    add(
        "dataplane-netns",
        "",
        "linux: program this network namespace (a path such as /run/netns/N) instead of"
        " the agent's own; the connection to typha stays in the agent's namespace",
    )
    add(
        "sysctl-root",
        "/proc/sys",
        "linux: where the kernel's network settings are written (forwarding, proxy ARP);"
        " in a pod, the host's /proc/sys/net mounted writable (the runtime's is read-only)",
    )
    add(
        "resync-interval",
        "90",
        "linux: seconds between checks that repair routes and rules someone changed (0: never)",
    )
    add(
        "failsafe-inbound-host-ports",
        ",".join(str(p) for p in DEFAULT_INBOUND),
        "linux: proto:port list (or none) that host endpoint policy never blocks inbound",
    )
    add(
        "failsafe-outbound-host-ports",
        ",".join(str(p) for p in DEFAULT_OUTBOUND),
        "linux: proto:port list (or none) that host endpoint policy never blocks outbound",
    )
    add(
        "default-endpoint-to-host-action",
        EndpointToHostAction.DROP.value,
        "linux: what happens to a workload's packets to its own host once its egress policy"
        " allowed them: Drop, Return (the host's own firewall decides) or Accept",
    )
    add(
        "nat-outgoing-exclusions",
        NatOutgoingExclusions.IPPOOLS_ONLY.value,
        "linux: destinations a natOutgoing pool's traffic is not masqueraded to: IPPoolsOnly"
        " (addresses in a pool) or IPPoolsAndHostIPs (and every node's address)",
    )
    add(
        "log-prefix",
        log_prefix.DEFAULT_LOG_PREFIX,
        "linux: the kernel log prefix of Log rules; %%t, %%k, %%n, %%p become the tier, the"
        " kind (np, gnp, pro), the name, the namespace/name (Calico's LogPrefix)",
    )
    d = VxlanParams()
    add("vxlan-vni", str(d.vni), "linux: the VXLAN devices' VNI (Calico's VXLANVNI)")
    add("vxlan-port", str(d.port), "linux: the VXLAN devices' UDP port (Calico's VXLANPort)")
    add("vxlan-mtu", str(d.mtu), "linux: vxlan.calico's MTU; 0: the kernel's, 1450")
    add("vxlan-mtu-v6", str(d.mtu6), "linux: vxlan-v6.calico's MTU; 0: the kernel's, 1430")
    add(
        "interface-prefix",
        ",".join(DEFAULT_INTERFACE_PREFIXES),
        "workload interface name prefixes, comma separated: the only interfaces the agent"
        " routes to, configures and puts in workload dispatch (Calico's InterfacePrefix)",
    )
    add("log-level", "INFO", "DEBUG, INFO, WARNING or ERROR")
    add("log-format", "text", "text (ISO-8601 UTC time, level, logger, message) or json")
    add("log-summary-interval", "60", "seconds between one-line summaries in the log (0: none)")
    add("tls-ca-file", "", "CA that signs typha's certificate (PEM)")
    add("tls-cert-file", "", "this agent's certificate (PEM)")
    add("tls-key-file", "", "this agent's private key (PEM)")
    add("tls-server-name", "", "name to verify typha's certificate by")
    add(
        "tls-reload-interval",
        "30",
        "seconds between checks of the TLS files for a rotated certificate (0: never)",
    )
    add(
        "upstream-stale-after",
        "10",
        "seconds a replica may report the datastore lost before the agent moves away",
    )
    add(
        "dataplane-delay",
        "0",
        "testing only: seconds each dataplane batch waits before it is programmed "
        "(blocking), to watch convergence wait for a slow node",
    )
    add(
        "max-snapshot-bytes",
        str(1 << 30),
        "largest snapshot accepted (keys + values); a larger one is refused",
    )


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _number(
    ns: argparse.Namespace, flag: str, typ: type[int] | type[float], minimum: float
) -> float:
    """The flag's value as a number of at least `minimum`; ConfigError
    naming the flag otherwise."""
    raw = getattr(ns, flag.replace("-", "_"))
    try:
        value = typ(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"--{flag}: {raw!r} is not a number") from None
    if value != value or value < minimum:  # NaN too
        raise ConfigError(f"--{flag}: must be at least {minimum:g}")
    return value


# The VXLAN flags, in VxlanParams' order, with the field each sets.
VXLAN_FLAGS = {"vxlan-vni": "vni", "vxlan-port": "port", "vxlan-mtu": "mtu", "vxlan-mtu-v6": "mtu6"}


def _bounded(ns: argparse.Namespace, flag: str, lo: int, hi: int) -> int:
    """The flag's value as an integer in [lo, hi]; ConfigError naming it otherwise."""
    value = int(_number(ns, flag, int, lo))
    if value > hi:
        raise ConfigError(f"--{flag}: must be at most {hi}")
    return value


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
    for flag in ("typha", "node"):
        if not getattr(ns, flag):
            raise ConfigError(f"--{flag} (or {env_name(flag)}) is required")
    parse_addresses(ns.typha)
    host, port = parse_addresses(ns.http_listen, listen=True)[0]
    stale = _number(ns, "upstream-stale-after", float, 0)
    max_snapshot = int(_number(ns, "max-snapshot-bytes", int, 1))
    resync = _number(ns, "resync-interval", float, 0)
    summary = _number(ns, "log-summary-interval", float, 0)
    tls_reload = _number(ns, "tls-reload-interval", float, 0)
    delay = _number(ns, "dataplane-delay", float, 0)
    level = str(ns.log_level).upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"--log-level: {ns.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    tls = (ns.tls_ca_file, ns.tls_cert_file, ns.tls_key_file)
    if any(tls) and not all(tls):
        # typha always asks for a client certificate: a CA alone, or a
        # certificate without one, would be a connection that never works,
        # or (no CA) one in plaintext without a word.
        raise ConfigError("--tls-ca-file, --tls-cert-file and --tls-key-file go together")
    if ns.tls_server_name and not all(tls):
        raise ConfigError("--tls-server-name needs --tls-ca-file, --tls-cert-file, --tls-key-file")
    try:
        log_format = LogFormat(ns.log_format.lower())
    except ValueError:
        raise ConfigError(f"--log-format: {ns.log_format!r} is not text or json") from None
    try:
        failsafes = Failsafes(
            parse_ports(ns.failsafe_inbound_host_ports),
            parse_ports(ns.failsafe_outbound_host_ports),
        )
    except BadFailsafePorts as exc:
        raise ConfigError(str(exc)) from None
    try:
        to_host = EndpointToHostAction.parse(ns.default_endpoint_to_host_action)
    except ValueError as exc:
        raise ConfigError(f"--default-endpoint-to-host-action: {exc}") from None
    try:
        exclusions = NatOutgoingExclusions.parse(ns.nat_outgoing_exclusions)
    except ValueError as exc:
        raise ConfigError(f"--nat-outgoing-exclusions: {exc}") from None
    try:
        prefix = log_prefix.check(ns.log_prefix)
    except ValueError as exc:
        raise ConfigError(f"--log-prefix: {exc}") from None
    vxlan = VxlanParams(*(_bounded(ns, flag, *VXLAN_LIMITS[p]) for flag, p in VXLAN_FLAGS.items()))
    try:
        ownership = Ownership.parse(ns.interface_prefix)
    except UnsafeValue as exc:
        raise ConfigError(f"--interface-prefix: {exc}") from None
    return AgentConfig(
        typha=ns.typha,
        node=ns.node,
        http_host=host,
        http_port=port,
        prefix=normalise_prefix(ns.prefix),
        dataplane=DataplaneKind(ns.dataplane),
        dataplane_netns=ns.dataplane_netns,
        sysctl_root=ns.sysctl_root,
        dataplane_delay=delay,
        resync_interval=resync,
        failsafes=failsafes,
        endpoint_to_host=to_host,
        nat_exclusions=exclusions,
        log_prefix=prefix,
        vxlan=vxlan,
        ownership=ownership,
        log_level=level,
        log_format=log_format,
        log_summary_interval=summary,
        tls_reload_interval=tls_reload,
        tls_ca_file=ns.tls_ca_file,
        tls_cert_file=ns.tls_cert_file,
        tls_key_file=ns.tls_key_file,
        tls_server_name=ns.tls_server_name,
        upstream_stale_after=stale,
        max_snapshot_bytes=max_snapshot,
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
    for flag in LIVE_FLAGS:
        given.add_argument(f"--{flag}", default=argparse.SUPPRESS)
    ns, _ = given.parse_known_args(list(argv))
    out = {flag for flag in LIVE_FLAGS if hasattr(ns, flag.replace("-", "_"))}
    for flag in LIVE_FLAGS:
        if env_name(flag) in env or CALICO_SPELLINGS.get(flag, "") in env:
            out.add(flag)
    return frozenset(out)


def parse_agent_args(argv: Sequence[str] | None, env: Mapping[str, str]) -> AgentConfig:
    """Parse and check `felix-agent` arguments (argparse exits on bad syntax)."""
    args = list(sys.argv[1:] if argv is None else argv)
    config = agent_config(agent_parser(env).parse_args(args))
    return dataclasses.replace(config, explicit=explicit_flags(args, env))
