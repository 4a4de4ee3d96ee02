"""Everything this project takes from etcd3aio and gRPC, and nothing else.

etcd3aio has no public raw watch stream (its WatchService resumes on its own
after a break, which can skip events), so the Watch stub and its request
messages come from its private `_protobuf` module.  The channel is ours, not
etcd3aio's ConnectionManager: that one prefixes every endpoint with `ipv4:`,
so a host name (`etcd-0.etcd:2379`, what a cluster's etcd is called) never
resolves, and its option list had to be patched after the fact.

tests/typha/test_etcd_api.py checks every assumption made here against the
installed library, so an upgrade that moves one fails a test rather than a
replica's watch.  Nothing outside this module imports etcd3aio or grpc.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass

# Names resolve as every other program on the machine resolves them (nsswitch:
# /etc/hosts, then the cluster's DNS), not by gRPC's bundled c-ares, which in
# a container with hostAliases and no reachable nameserver found nothing.
# Read by gRPC when it starts, hence before the import.
os.environ.setdefault("GRPC_DNS_RESOLVER", "native")

import grpc
import grpc.aio
from etcd3aio import prefix_range_end
from etcd3aio._protobuf import WatchCreateRequest, WatchRequest, WatchStub
from etcd3aio.auth import AuthService
from etcd3aio.kv import KVService, SortOrder, SortTarget
from etcd3aio.lease import LeaseService

__all__ = [
    "AuthService",
    "Channel",
    "ChannelSpec",
    "KVService",
    "LeaseService",
    "RpcError",
    "SortOrder",
    "SortTarget",
    "WatchCreateRequest",
    "WatchRequest",
    "WatchStub",
    "channel_target",
    "describe",
    "open_channel",
    "prefix_range_end",
]

Channel = grpc.aio.Channel
RpcError = grpc.aio.AioRpcError

# Which host-name endpoint the next channel dials: with names, one channel
# holds one endpoint (gRPC's dns resolver takes one name), and each new
# connection, which the syncer makes after every failure, tries the next.
_rotation = itertools.count()


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """How to dial etcd: `endpoints` as `host:port` or `[v6]:port`, TLS
    material as PEM bytes (all None for plain text), and gRPC channel
    options applied as given."""

    endpoints: tuple[str, ...]
    options: tuple[tuple[str, int | str], ...] = ()
    ca_cert: bytes | None = None
    cert_chain: bytes | None = None
    cert_key: bytes | None = None
    server_name: str | None = None


def _host(endpoint: str) -> str:
    host = endpoint.rsplit(":", 1)[0]
    return host[1:-1] if host.startswith("[") else host


def _literal(host: str) -> int:
    """4 or 6 for an IP literal, 0 for a name."""
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return 0


def describe(exc: BaseException) -> str:
    """One line for a failed call: gRPC's status code and details (its
    exceptions' str() is empty for a deadline)."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details() or 'no details'}"
    return str(exc) or type(exc).__name__


def channel_target(endpoints: Sequence[str], attempt: int) -> str:
    """The gRPC target for `endpoints`: every IP literal of one family in one
    `ipv4:`/`ipv6:` list (gRPC balances over them itself); otherwise one
    endpoint by name, resolved by gRPC (off our event loop) through the
    system resolver, the `attempt`-th in rotation.  `localhost` counts as a name."""
    if not endpoints:
        raise ValueError("no etcd endpoint")
    families = {_literal(_host(e)) for e in endpoints}
    if families == {4}:
        return "ipv4:" + ",".join(endpoints)
    if families == {6}:
        return "ipv6:" + ",".join(endpoints)
    return "dns:///" + endpoints[attempt % len(endpoints)]


def open_channel(spec: ChannelSpec) -> grpc.aio.Channel:
    """A new channel to etcd; the caller closes it.  Raises ValueError for
    client-certificate material without a CA."""
    target = channel_target(spec.endpoints, next(_rotation))
    options = list(spec.options)
    if spec.ca_cert is None:
        if spec.cert_chain is not None or spec.cert_key is not None:
            raise ValueError("a client certificate needs the CA of etcd's certificate")
        return grpc.aio.insecure_channel(target, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=spec.ca_cert,
        private_key=spec.cert_key,
        certificate_chain=spec.cert_chain,
    )
    if spec.server_name:
        options.append(("grpc.ssl_target_name_override", spec.server_name))
    return grpc.aio.secure_channel(target, credentials, options=options)
