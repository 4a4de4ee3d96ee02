"""`typha serve` configuration: every flag is also an env var TYPHA_<FLAG>.

Precedence: command-line flag, then environment, then default.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from runtime import envconfig, flags, hostport
from runtime.flags import flag
from runtime.helpformat import DefaultsHelpFormatter
from runtime.hostport import HostPort
from runtime.logformat import LogFormat, log_format_flag, log_level_flag, log_summary_flag
from typha.datastore.etcd_client import EtcdOptions
from typha.errors import ConfigError

DEFAULT_AGENT_PORT = 5473
DEFAULT_HTTP_PORT = 9098


def parse_hostport(text: str, default_port: int | None = None) -> HostPort:
    """A listen address: H:P, [v6]:P, or H alone when a default port is
    given; no host means every address (0.0.0.0).  Raises ConfigError."""
    try:
        return hostport.parse_hostport(
            text, default_port=default_port, default_host="0.0.0.0", port_zero=True
        )
    except hostport.BadAddress as exc:
        raise ConfigError(f"bad address {exc}") from None


def parse_etcd_endpoints(text: str, *, tls: bool) -> tuple[str, ...]:
    """`H:P[,H:P...]`, each also as `http://H:P` or `https://H:P` (as etcd
    prints them; a trailing `/` is ignored), the port defaulting to 2379.
    `https://` needs TLS to etcd (`tls`: --etcd-ca-file given) and `http://`
    refuses it.  Raises ConfigError naming the bad endpoint."""
    out = []
    for item in (e.strip() for e in text.split(",")):
        if not item:
            continue
        scheme, sep, rest = item.partition("://")
        if sep:
            if scheme not in ("http", "https"):
                raise ConfigError(f"etcd endpoint {item!r}: scheme must be http or https")
            if (scheme == "https") != tls:
                need = "needs --etcd-ca-file" if scheme == "https" else "but --etcd-ca-file is set"
                raise ConfigError(f"etcd endpoint {item!r} is {scheme}:// {need}")
            item = rest.rstrip("/")
            if not item or "/" in item:
                raise ConfigError(f"etcd endpoint {scheme}://{rest!r}: expected HOST[:PORT]")
        out.append(str(parse_hostport(item, 2379)))
    if not out:
        raise ConfigError("--etcd-endpoints: no endpoint given")
    return tuple(out)


def _as_given(text: str) -> str:
    # Read later, with what it depends on (see serve_config).
    return text


def _agent_address(text: str) -> HostPort:
    return parse_hostport(text, DEFAULT_AGENT_PORT)


def _http_address(text: str) -> HostPort:
    return parse_hostport(text, DEFAULT_HTTP_PORT)


def comma_set(text: str) -> frozenset[str]:
    """A comma-separated list, blanks dropped."""
    return frozenset(x.strip() for x in text.split(",") if x.strip())


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """A checked `typha serve` configuration.  Each field that is a flag is
    declared here once (`runtime.flags.flag`): `--field-name`, its variable
    TYPHA_FIELD_NAME, its default, help, type and bounds."""

    etcd_endpoints: tuple[str, ...] = flag(
        (),
        "etcd endpoints, H:P[,H:P...], each also as http://H:P or https://H:P (required)",
        text="",
        parse=_as_given,
    )
    prefix: str = flag("/calico/", "datastore prefix to serve")
    listen: HostPort = flag(
        HostPort("0.0.0.0", DEFAULT_AGENT_PORT), "agent port address H:P", parse=_agent_address
    )
    http_listen: HostPort = flag(
        HostPort("0.0.0.0", DEFAULT_HTTP_PORT),
        "health/metrics/status address H:P",
        parse=_http_address,
    )
    server_id: str = flag("", "name reported to agents (default: hostname-pid)")
    list_page_size: int = flag(10_000, "keys per page when listing etcd", minimum=1)
    max_frame_bytes: int = flag(16 * 1024 * 1024, "largest frame accepted or sent", minimum=4096)
    max_connections: int = flag(20_000, "agent connections beyond this are refused", minimum=1)
    max_client_buffer_bytes: int = flag(
        8 * 1024 * 1024,
        "an agent whose unsent bytes exceed this is disconnected (slow client)",
        minimum=65536,
    )
    handshake_timeout: float = flag(10.0, "seconds an agent has to send its hello", minimum=0.1)
    idle_timeout: float = flag(
        60.0, "seconds of silence before a connection is dropped", minimum=0.1
    )
    ping_interval: float = flag(10.0, "seconds of silence before a ping is sent", minimum=0.05)
    pong_timeout: float = flag(10.0, "seconds an agent has to answer a ping", minimum=0.1)
    max_inbound_frame_bytes: int = flag(
        64 * 1024,
        "largest frame accepted from an agent (agents send only small control messages)",
        minimum=1024,
    )
    max_client_msgs_per_sec: float = flag(
        50.0, "messages per second an agent may send, sustained", minimum=1.0
    )
    max_client_msg_burst: int = flag(200, "messages an agent may send in a burst", minimum=10)
    applied_reports_per_second: float = flag(
        2000.0,
        "APPLIED reports per second this replica asks of all its agents together: each new agent "
        "is told to report at most every max(0.25 s, agents / this) (0: 0.25 s always)",
        minimum=0.0,
    )
    etcd_watch_timeout: float = flag(
        10.0,
        "seconds the etcd watch may stay silent (no event, no answer to a progress request) "
        "before the replica counts etcd as lost",
        minimum=1.0,
    )
    log_level: str = log_level_flag(ConfigError)
    log_format: LogFormat = log_format_flag(ConfigError)
    log_summary_interval: float = log_summary_flag()
    tls_reload_interval: float = flag(
        30.0,
        "seconds between checks of the TLS files (agent port and etcd) for a rotated certificate "
        "(0: never)",
        minimum=0.0,
    )
    # A leaf of a tiered fan-out: sync from these typha replicas, not etcd.
    upstream_typha: str = flag(
        "",
        "H:P[,H:P...] of typha replicas to sync from instead of etcd (a leaf of a tiered fan-out; "
        "--etcd-endpoints is then not used)",
    )
    # TLS to the upstream replicas: this leaf's client identity and the CA it
    # trusts them by (all three, or none for plain TCP).
    upstream_tls_cert_file: str = flag(
        "", "TLS to --upstream-typha: this leaf's client certificate"
    )
    upstream_tls_key_file: str = flag("", "TLS to --upstream-typha: its private key")
    upstream_tls_ca_file: str = flag(
        "", "TLS to --upstream-typha: CA of the upstreams' certificates"
    )
    upstream_tls_server_name: str = flag(
        "", "TLS to --upstream-typha: name the upstreams' certificates carry (default: the host)"
    )
    batch_window: float = flag(0.005, "seconds to gather etcd events into one batch", minimum=0.0)
    fanout_pacing: float = flag(
        1.0,
        "after a fan-out pass, wait this many times its duration before the next (updates "
        "arriving meanwhile share it: batches grow with load); 0 passes at once",
        minimum=0.0,
    )
    fanout_writes_per_second: float = flag(
        40_000.0,
        "writes to agents per second that fan-out passes may make, at most: a pass costs a write "
        "per agent however little it carries, so passes over N agents start at least N / this "
        "seconds apart (0: pacing alone decides)",
        minimum=0.0,
    )
    history_max_batches: int = flag(10_000, "delta batches kept for catch-up and resume", minimum=1)
    history_max_bytes: int = flag(64 * 1024 * 1024, "bytes of delta batches kept", minimum=1024)
    history_max_age: float = flag(300.0, "seconds of delta batches kept", minimum=0.0)
    max_client_lag: float = flag(
        30.0, "seconds an agent may stay unable to take our writes", minimum=0.1
    )
    shutdown_timeout: float = flag(
        30.0, "seconds over which SIGTERM spreads the disconnects", minimum=0.0
    )
    snapshot_chunk_bytes: int = flag(
        256 * 1024, "raw bytes of entries per snapshot chunk", minimum=1024
    )
    tls_cert_file: str = flag("", "agent port TLS: server certificate (PEM)")
    tls_key_file: str = flag("", "agent port TLS: server private key (PEM)")
    tls_ca_file: str = flag("", "agent port TLS: CA that signs agent certificates (PEM)")
    tls_allowed_cns: frozenset[str] = flag(
        frozenset(), "comma-separated agent certificate CNs admitted", text="", parse=comma_set
    )
    tls_allowed_uri_sans: frozenset[str] = flag(
        frozenset(), "comma-separated agent certificate URI SANs admitted", text="", parse=comma_set
    )
    etcd_ca_file: str = flag("", "CA that signs etcd's certificate (PEM): enables TLS to etcd")
    etcd_cert_file: str = flag("", "client certificate for etcd (PEM)")
    etcd_key_file: str = flag("", "client key for etcd (PEM)")
    etcd_server_name: str = flag(
        "", "name to verify etcd's certificate by (needed with several endpoints)"
    )
    etcd_username: str = flag("", "etcd user (with --etcd-password)")
    etcd_password: str = flag("", "etcd password; prefer the env var to the flag")
    source_check_interval: float = flag(
        300.0, "seconds between cache-vs-etcd digest checks (0 disables)", minimum=0.0
    )
    registry_prefix: str = flag(
        "/typha/registry/", "etcd prefix where replicas register (outside the served prefix)"
    )
    rebalance_interval: float = flag(
        10.0, "seconds between fair-share checks (0 disables)", minimum=0.0
    )
    rebalance_tolerance: float = flag(0.1, "fraction above the fair share tolerated", minimum=0.0)
    history_backfill_revisions: int = flag(
        5000,
        "on start, replay this many past etcd revisions into the history (resume across restarts)",
        minimum=0,
    )

    def etcd_options(self) -> EtcdOptions:
        """Reads the TLS files; raises ConfigError if they are unreadable."""

        def read(path: str) -> bytes | None:
            if not path:
                return None
            try:
                with open(path, "rb") as f:
                    return f.read()
            except OSError as exc:
                raise ConfigError(f"cannot read {path}: {exc}") from None

        return EtcdOptions(
            endpoints=self.etcd_endpoints,
            ca_cert=read(self.etcd_ca_file),
            cert_chain=read(self.etcd_cert_file),
            cert_key=read(self.etcd_key_file),
            server_name=self.etcd_server_name or None,
            username=self.etcd_username,
            password=self.etcd_password,
        )


def env_name(flag: str) -> str:
    """The variable that sets `--flag`: TYPHA_<FLAG>, dashes as underscores."""
    return envconfig.env_name("TYPHA_", flag)


# Calico Typha's names for settings that mean the same here, read when ours
# is not set (a manifest written for Calico keeps working).
CALICO_SPELLINGS = {
    "log-level": "TYPHA_LOGSEVERITYSCREEN",
    "max-connections": "TYPHA_MAXCONNECTIONSUPPERLIMIT",
    "shutdown-timeout": "TYPHA_SHUTDOWNTIMEOUTSECS",
    "tls-cert-file": "TYPHA_SERVERCERTFILE",
    "tls-key-file": "TYPHA_SERVERKEYFILE",
    "tls-ca-file": "TYPHA_CAFILE",
    "tls-allowed-cns": "TYPHA_CLIENTCN",
    "tls-allowed-uri-sans": "TYPHA_CLIENTURISAN",
}
# Read by other `typha` commands (status, wait-applied), not by serve.
OTHER_COMMANDS_VARIABLES = frozenset({"TYPHA_ENDPOINTS"})


def _env_default(env: Mapping[str, str], flag: str, default: str | None) -> str | None:
    return envconfig.env_default(env, "TYPHA_", flag, CALICO_SPELLINGS.get(flag), default)


def unknown_variables(env: Mapping[str, str], parser: argparse.ArgumentParser) -> list[str]:
    """`TYPHA_*` variables that name no setting of `parser` (a misspelling is
    otherwise silently ignored).  Calico's spellings of our settings, and the
    variables other commands read, count as known."""
    known = set(CALICO_SPELLINGS.values()) | OTHER_COMMANDS_VARIABLES
    return envconfig.unknown_variables(env, "TYPHA_", parser, known)


def _also(flag: str) -> str:
    calico = CALICO_SPELLINGS.get(flag)
    return f", or Calico's {calico}" if calico else ""


def add_serve_arguments(p: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """The flags of `typha serve`, with defaults taken from `env` (TYPHA_<FLAG>)."""
    flags.add_flags(
        p,
        ServeConfig,
        lambda name, text: _env_default(env, name, text),
        lambda name, help_: f"{help_} [env {env_name(name)}{_also(name)}]",
    )


def serve_config(ns: argparse.Namespace) -> ServeConfig:
    """Check parsed arguments; raises ConfigError naming the bad flag."""
    v = flags.read_flags(ns, ServeConfig, ConfigError)
    upstream = v["upstream_typha"].strip()
    raw_endpoints = v["etcd_endpoints"]
    if not raw_endpoints and not upstream:
        raise ConfigError(
            "--etcd-endpoints (or TYPHA_ETCD_ENDPOINTS) is required, "
            "unless --upstream-typha names replicas to sync from"
        )
    v["etcd_endpoints"] = (
        parse_etcd_endpoints(raw_endpoints, tls=bool(v["etcd_ca_file"]))
        if raw_endpoints and not upstream
        else ()
    )
    if upstream:
        check_upstream(upstream)
    v["upstream_typha"] = upstream
    up_tls = (v["upstream_tls_cert_file"], v["upstream_tls_key_file"], v["upstream_tls_ca_file"])
    if any(up_tls) and not all(up_tls):
        raise ConfigError(
            "--upstream-tls-cert-file, --upstream-tls-key-file and --upstream-tls-ca-file "
            "go together"
        )
    if (any(up_tls) or v["upstream_tls_server_name"]) and not upstream:
        raise ConfigError("upstream TLS options need --upstream-typha")
    prefix = v["prefix"] = normalise_prefix(v["prefix"])
    tls = (v["tls_cert_file"], v["tls_key_file"], v["tls_ca_file"])
    if any(tls) and not all(tls):
        raise ConfigError("--tls-cert-file, --tls-key-file and --tls-ca-file go together")
    if (v["tls_allowed_cns"] or v["tls_allowed_uri_sans"]) and not all(tls):
        raise ConfigError("TLS allow lists need --tls-cert-file, --tls-key-file, --tls-ca-file")
    if bool(v["etcd_cert_file"]) != bool(v["etcd_key_file"]):
        raise ConfigError("--etcd-cert-file and --etcd-key-file go together")
    if (v["etcd_cert_file"] or v["etcd_server_name"]) and not v["etcd_ca_file"]:
        raise ConfigError("etcd TLS options need --etcd-ca-file")
    if bool(v["etcd_username"]) != bool(v["etcd_password"]):
        raise ConfigError("--etcd-username and --etcd-password go together")
    registry = v["registry_prefix"] = normalise_prefix(v["registry_prefix"])
    if registry.startswith(prefix) or prefix.startswith(registry):
        raise ConfigError("--registry-prefix must lie outside the served --prefix")
    v["server_id"] = v["server_id"] or f"{os.uname().nodename}-{os.getpid()}"
    if upstream:
        # A leaf has no etcd to check against or to register in: its
        # upstream does both, and every hop checks the digest.
        v["source_check_interval"] = 0.0
        v["rebalance_interval"] = 0.0
    return ServeConfig(**v)


def normalise_prefix(prefix: str) -> str:
    """A prefix ends with '/'."""
    return prefix if prefix.endswith("/") else prefix + "/"


def parse_serve_args(argv: Sequence[str], env: Mapping[str, str] | None = None) -> ServeConfig:
    """Parse and check `typha serve` arguments (argparse exits on bad syntax)."""
    p = argparse.ArgumentParser(prog="typha serve", formatter_class=DefaultsHelpFormatter)
    add_serve_arguments(p, os.environ if env is None else env)
    return serve_config(p.parse_args(list(argv)))


def check_upstream(text: str) -> None:
    """`--upstream-typha`: one or more H:P, comma-separated."""
    try:
        hostport.parse_hostports(text)
    except hostport.BadAddress as exc:
        raise ConfigError(f"--upstream-typha: {exc}") from None
