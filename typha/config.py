"""`typha serve` configuration: every flag is also an env var TYPHA_<FLAG>.

Precedence: command-line flag, then environment, then default.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from runtime import envconfig, hostport
from runtime.helpformat import DefaultsHelpFormatter
from runtime.hostport import HostPort
from runtime.logformat import LogFormat
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


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """A checked `typha serve` configuration."""

    etcd_endpoints: tuple[str, ...]
    prefix: str = "/calico/"
    listen: HostPort = HostPort("0.0.0.0", DEFAULT_AGENT_PORT)
    http_listen: HostPort = HostPort("0.0.0.0", DEFAULT_HTTP_PORT)
    server_id: str = ""
    list_page_size: int = 10_000
    max_frame_bytes: int = 16 * 1024 * 1024
    max_connections: int = 20_000
    max_client_buffer_bytes: int = 8 * 1024 * 1024
    handshake_timeout: float = 10.0
    idle_timeout: float = 60.0
    ping_interval: float = 10.0
    pong_timeout: float = 10.0
    max_inbound_frame_bytes: int = 64 * 1024
    max_client_msgs_per_sec: float = 50.0
    max_client_msg_burst: int = 200
    applied_reports_per_second: float = 2000.0
    etcd_watch_timeout: float = 10.0
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.TEXT
    log_summary_interval: float = 60.0
    tls_reload_interval: float = 30.0
    # A leaf of a tiered fan-out: sync from these typha replicas, not etcd.
    upstream_typha: str = ""
    # TLS to the upstream replicas: this leaf's client identity and the CA it
    # trusts them by (all three, or none for plain TCP).
    upstream_tls_cert_file: str = ""
    upstream_tls_key_file: str = ""
    upstream_tls_ca_file: str = ""
    upstream_tls_server_name: str = ""
    batch_window: float = 0.005
    fanout_pacing: float = 1.0
    fanout_writes_per_second: float = 40_000.0
    history_max_batches: int = 10_000
    history_max_bytes: int = 64 * 1024 * 1024
    history_max_age: float = 300.0
    max_client_lag: float = 30.0
    shutdown_timeout: float = 30.0
    snapshot_chunk_bytes: int = 256 * 1024
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_file: str = ""
    tls_allowed_cns: frozenset[str] = frozenset()
    tls_allowed_uri_sans: frozenset[str] = frozenset()
    etcd_ca_file: str = ""
    etcd_cert_file: str = ""
    etcd_key_file: str = ""
    etcd_server_name: str = ""
    etcd_username: str = ""
    etcd_password: str = ""
    source_check_interval: float = 300.0
    registry_prefix: str = "/typha/registry/"
    rebalance_interval: float = 10.0
    rebalance_tolerance: float = 0.1
    history_backfill_revisions: int = 5000

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

    def add(flag: str, default: str | None, help_: str) -> None:
        p.add_argument(
            f"--{flag}",
            default=_env_default(env, flag, default),
            help=f"{help_} [env {env_name(flag)}{_also(flag)}]",
        )

    add(
        "etcd-endpoints",
        None,
        "etcd endpoints, H:P[,H:P...], each also as http://H:P or https://H:P (required)",
    )
    add(
        "upstream-typha",
        "",
        "H:P[,H:P...] of typha replicas to sync from instead of etcd (a leaf of a tiered "
        "fan-out; --etcd-endpoints is then not used)",
    )
    add("upstream-tls-cert-file", "", "TLS to --upstream-typha: this leaf's client certificate")
    add("upstream-tls-key-file", "", "TLS to --upstream-typha: its private key")
    add("upstream-tls-ca-file", "", "TLS to --upstream-typha: CA of the upstreams' certificates")
    add(
        "upstream-tls-server-name",
        "",
        "TLS to --upstream-typha: name the upstreams' certificates carry (default: the host)",
    )
    add("prefix", "/calico/", "datastore prefix to serve")
    add("listen", f"0.0.0.0:{DEFAULT_AGENT_PORT}", "agent port address H:P")
    add("http-listen", f"0.0.0.0:{DEFAULT_HTTP_PORT}", "health/metrics/status address H:P")
    add("server-id", "", "name reported to agents (default: hostname-pid)")
    add("list-page-size", "10000", "keys per page when listing etcd")
    add("max-frame-bytes", str(16 * 1024 * 1024), "largest frame accepted or sent")
    add("max-connections", "20000", "agent connections beyond this are refused")
    add(
        "max-client-buffer-bytes",
        str(8 * 1024 * 1024),
        "an agent whose unsent bytes exceed this is disconnected (slow client)",
    )
    add("handshake-timeout", "10", "seconds an agent has to send its hello")
    add("idle-timeout", "60", "seconds of silence before a connection is dropped")
    add("ping-interval", "10", "seconds of silence before a ping is sent")
    add("pong-timeout", "10", "seconds an agent has to answer a ping")
    add(
        "max-inbound-frame-bytes",
        str(64 * 1024),
        "largest frame accepted from an agent (agents send only small control messages)",
    )
    add("max-client-msgs-per-sec", "50", "messages per second an agent may send, sustained")
    add("max-client-msg-burst", "200", "messages an agent may send in a burst")
    add(
        "applied-reports-per-second",
        "2000",
        "APPLIED reports per second this replica asks of all its agents together: each new "
        "agent is told to report at most every max(0.25 s, agents / this) (0: 0.25 s always)",
    )
    add(
        "etcd-watch-timeout",
        "10",
        "seconds the etcd watch may stay silent (no event, no answer to a progress request) "
        "before the replica counts etcd as lost",
    )
    add("log-level", "INFO", "DEBUG, INFO, WARNING or ERROR")
    add("log-format", "text", "text (ISO-8601 UTC time, level, logger, message) or json")
    add("log-summary-interval", "60", "seconds between one-line summaries in the log (0: none)")
    add(
        "tls-reload-interval",
        "30",
        "seconds between checks of the TLS files (agent port and etcd) for a rotated "
        "certificate (0: never)",
    )
    add("batch-window", "0.005", "seconds to gather etcd events into one batch")
    add(
        "fanout-pacing",
        "1",
        "after a fan-out pass, wait this many times its duration before the next (updates "
        "arriving meanwhile share it: batches grow with load); 0 passes at once",
    )
    add(
        "fanout-writes-per-second",
        "40000",
        "writes to agents per second that fan-out passes may make, at most: a pass costs a "
        "write per agent however little it carries, so passes over N agents start at least "
        "N / this seconds apart (0: pacing alone decides)",
    )
    add("history-max-batches", "10000", "delta batches kept for catch-up and resume")
    add("history-max-bytes", str(64 * 1024 * 1024), "bytes of delta batches kept")
    add("history-max-age", "300", "seconds of delta batches kept")
    add(
        "history-backfill-revisions",
        "5000",
        "on start, replay this many past etcd revisions into the history (resume across restarts)",
    )
    add("max-client-lag", "30", "seconds an agent may stay unable to take our writes")
    add("shutdown-timeout", "30", "seconds over which SIGTERM spreads the disconnects")
    add("snapshot-chunk-bytes", str(256 * 1024), "raw bytes of entries per snapshot chunk")
    add("tls-cert-file", "", "agent port TLS: server certificate (PEM)")
    add("tls-key-file", "", "agent port TLS: server private key (PEM)")
    add("tls-ca-file", "", "agent port TLS: CA that signs agent certificates (PEM)")
    add("tls-allowed-cns", "", "comma-separated agent certificate CNs admitted")
    add("tls-allowed-uri-sans", "", "comma-separated agent certificate URI SANs admitted")
    add("etcd-ca-file", "", "CA that signs etcd's certificate (PEM): enables TLS to etcd")
    add("etcd-cert-file", "", "client certificate for etcd (PEM)")
    add("etcd-key-file", "", "client key for etcd (PEM)")
    add(
        "etcd-server-name",
        "",
        "name to verify etcd's certificate by (needed with several endpoints)",
    )
    add("etcd-username", "", "etcd user (with --etcd-password)")
    add("etcd-password", "", "etcd password; prefer the env var to the flag")
    add(
        "registry-prefix",
        "/typha/registry/",
        "etcd prefix where replicas register (outside the served prefix)",
    )
    add("rebalance-interval", "10", "seconds between fair-share checks (0 disables)")
    add("rebalance-tolerance", "0.1", "fraction above the fair share tolerated")
    add("source-check-interval", "300", "seconds between cache-vs-etcd digest checks (0 disables)")


def _num(ns: argparse.Namespace, name: str, typ: type[int] | type[float], minimum: float) -> float:
    raw = getattr(ns, name.replace("-", "_"))
    try:
        val = typ(raw)
    except ValueError:
        raise ConfigError(f"--{name}: {raw!r} is not a number") from None
    if val < minimum:
        raise ConfigError(f"--{name}: must be at least {minimum}")
    return val


def serve_config(ns: argparse.Namespace) -> ServeConfig:
    """Check parsed arguments; raises ConfigError naming the bad flag."""
    upstream = ns.upstream_typha.strip()
    if not ns.etcd_endpoints and not upstream:
        raise ConfigError(
            "--etcd-endpoints (or TYPHA_ETCD_ENDPOINTS) is required, "
            "unless --upstream-typha names replicas to sync from"
        )
    endpoints = (
        parse_etcd_endpoints(ns.etcd_endpoints, tls=bool(ns.etcd_ca_file))
        if ns.etcd_endpoints and not upstream
        else ()
    )
    if upstream:
        check_upstream(upstream)
    up_tls = (ns.upstream_tls_cert_file, ns.upstream_tls_key_file, ns.upstream_tls_ca_file)
    if any(up_tls) and not all(up_tls):
        raise ConfigError(
            "--upstream-tls-cert-file, --upstream-tls-key-file and --upstream-tls-ca-file "
            "go together"
        )
    if (any(up_tls) or ns.upstream_tls_server_name) and not upstream:
        raise ConfigError("upstream TLS options need --upstream-typha")
    prefix = ns.prefix if ns.prefix.endswith("/") else ns.prefix + "/"
    tls = (ns.tls_cert_file, ns.tls_key_file, ns.tls_ca_file)
    if any(tls) and not all(tls):
        raise ConfigError("--tls-cert-file, --tls-key-file and --tls-ca-file go together")
    allowed_cns = frozenset(x.strip() for x in ns.tls_allowed_cns.split(",") if x.strip())
    allowed_uris = frozenset(x.strip() for x in ns.tls_allowed_uri_sans.split(",") if x.strip())
    if (allowed_cns or allowed_uris) and not all(tls):
        raise ConfigError("TLS allow lists need --tls-cert-file, --tls-key-file, --tls-ca-file")
    if bool(ns.etcd_cert_file) != bool(ns.etcd_key_file):
        raise ConfigError("--etcd-cert-file and --etcd-key-file go together")
    if (ns.etcd_cert_file or ns.etcd_server_name) and not ns.etcd_ca_file:
        raise ConfigError("etcd TLS options need --etcd-ca-file")
    if bool(ns.etcd_username) != bool(ns.etcd_password):
        raise ConfigError("--etcd-username and --etcd-password go together")
    registry = ns.registry_prefix if ns.registry_prefix.endswith("/") else ns.registry_prefix + "/"
    if registry.startswith(prefix) or prefix.startswith(registry):
        raise ConfigError("--registry-prefix must lie outside the served --prefix")
    level = ns.log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"--log-level: unknown level {ns.log_level!r}")
    log_format = parse_log_format(ns.log_format)
    return ServeConfig(
        etcd_endpoints=endpoints,
        prefix=prefix,
        listen=parse_hostport(ns.listen, DEFAULT_AGENT_PORT),
        http_listen=parse_hostport(ns.http_listen, DEFAULT_HTTP_PORT),
        server_id=ns.server_id or f"{os.uname().nodename}-{os.getpid()}",
        list_page_size=int(_num(ns, "list-page-size", int, 1)),
        max_frame_bytes=int(_num(ns, "max-frame-bytes", int, 4096)),
        max_connections=int(_num(ns, "max-connections", int, 1)),
        max_client_buffer_bytes=int(_num(ns, "max-client-buffer-bytes", int, 65536)),
        handshake_timeout=_num(ns, "handshake-timeout", float, 0.1),
        idle_timeout=_num(ns, "idle-timeout", float, 0.1),
        ping_interval=_num(ns, "ping-interval", float, 0.05),
        pong_timeout=_num(ns, "pong-timeout", float, 0.1),
        max_inbound_frame_bytes=int(_num(ns, "max-inbound-frame-bytes", int, 1024)),
        max_client_msgs_per_sec=_num(ns, "max-client-msgs-per-sec", float, 1.0),
        max_client_msg_burst=int(_num(ns, "max-client-msg-burst", int, 10)),
        applied_reports_per_second=_num(ns, "applied-reports-per-second", float, 0.0),
        etcd_watch_timeout=_num(ns, "etcd-watch-timeout", float, 1.0),
        log_level=level,
        log_format=log_format,
        log_summary_interval=_num(ns, "log-summary-interval", float, 0.0),
        tls_reload_interval=_num(ns, "tls-reload-interval", float, 0.0),
        batch_window=_num(ns, "batch-window", float, 0.0),
        fanout_pacing=_num(ns, "fanout-pacing", float, 0.0),
        fanout_writes_per_second=_num(ns, "fanout-writes-per-second", float, 0.0),
        history_max_batches=int(_num(ns, "history-max-batches", int, 1)),
        history_max_bytes=int(_num(ns, "history-max-bytes", int, 1024)),
        history_max_age=_num(ns, "history-max-age", float, 0.0),
        history_backfill_revisions=int(_num(ns, "history-backfill-revisions", int, 0)),
        max_client_lag=_num(ns, "max-client-lag", float, 0.1),
        shutdown_timeout=_num(ns, "shutdown-timeout", float, 0.0),
        snapshot_chunk_bytes=int(_num(ns, "snapshot-chunk-bytes", int, 1024)),
        tls_cert_file=ns.tls_cert_file,
        tls_key_file=ns.tls_key_file,
        tls_ca_file=ns.tls_ca_file,
        tls_allowed_cns=allowed_cns,
        tls_allowed_uri_sans=allowed_uris,
        etcd_ca_file=ns.etcd_ca_file,
        etcd_cert_file=ns.etcd_cert_file,
        etcd_key_file=ns.etcd_key_file,
        etcd_server_name=ns.etcd_server_name,
        etcd_username=ns.etcd_username,
        etcd_password=ns.etcd_password,
        # A leaf has no etcd to check against or to register in: its
        # upstream does both, and every hop checks the digest.
        source_check_interval=0.0 if upstream else _num(ns, "source-check-interval", float, 0.0),
        registry_prefix=registry,
        rebalance_interval=0.0 if upstream else _num(ns, "rebalance-interval", float, 0.0),
        upstream_typha=upstream,
        upstream_tls_cert_file=ns.upstream_tls_cert_file,
        upstream_tls_key_file=ns.upstream_tls_key_file,
        upstream_tls_ca_file=ns.upstream_tls_ca_file,
        upstream_tls_server_name=ns.upstream_tls_server_name,
        rebalance_tolerance=_num(ns, "rebalance-tolerance", float, 0.0),
    )


def parse_serve_args(argv: Sequence[str], env: Mapping[str, str] | None = None) -> ServeConfig:
    """Parse and check `typha serve` arguments (argparse exits on bad syntax)."""
    p = argparse.ArgumentParser(prog="typha serve", formatter_class=DefaultsHelpFormatter)
    add_serve_arguments(p, os.environ if env is None else env)
    return serve_config(p.parse_args(list(argv)))


def parse_log_format(value: str) -> LogFormat:
    """`--log-format`: text or json."""
    try:
        return LogFormat(value.lower())
    except ValueError:
        raise ConfigError(f"--log-format: {value!r} is not text or json") from None


def check_upstream(text: str) -> None:
    """`--upstream-typha`: one or more H:P, comma-separated."""
    try:
        hostport.parse_hostports(text)
    except hostport.BadAddress as exc:
        raise ConfigError(f"--upstream-typha: {exc}") from None
