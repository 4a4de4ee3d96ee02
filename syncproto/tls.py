"""TLS for the agent port: server context and the client-certificate allow lists.

With no allow list every certificate signed by the CA is accepted.  With
either list set, a peer is admitted when its subject CN is in the CN list or
one of its URI SANs is in the URI list (as Calico's Typha does).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

from syncproto.errors import ConfigError


@dataclass(frozen=True, slots=True)
class PeerPolicy:
    """Which client certificates the server admits: any certificate its CA signed, or only those
    whose CN or URI SAN is in the allow lists."""

    allowed_cns: frozenset[str] = frozenset()
    allowed_uri_sans: frozenset[str] = frozenset()

    def check(self, cert: dict[str, Any] | None) -> str | None:
        """None if the peer is admitted, else a short reason."""
        if not self.allowed_cns and not self.allowed_uri_sans:
            return None
        if not cert:
            return "no client certificate"
        cns = {
            value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"
        }
        uris = {value for kind, value in cert.get("subjectAltName", ()) if kind == "URI"}
        if cns & self.allowed_cns or uris & self.allowed_uri_sans:
            return None
        return f"certificate CN {sorted(cns)} / URI SANs {sorted(uris)} not allowed"


def server_context(cert_file: str, key_file: str, ca_file: str) -> ssl.SSLContext:
    """A server context that requires a client certificate signed by `ca_file`."""
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert_file, key_file)
        ctx.load_verify_locations(ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS files unusable: {exc}") from None
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def split_list(text: str) -> frozenset[str]:
    """A comma-separated list as a set, blanks dropped."""
    return frozenset(item.strip() for item in text.split(",") if item.strip())


def client_context(
    ca_file: str, cert_file: str | None = None, key_file: str | None = None
) -> ssl.SSLContext:
    """A client context trusting `ca_file`, presenting a certificate if given."""
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
        if cert_file:
            ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS files unusable: {exc}") from None
    return ctx
