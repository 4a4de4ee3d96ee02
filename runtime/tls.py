"""TLS for the agent port: server context and the client-certificate allow lists.

With no allow list every certificate signed by the CA is accepted.  With
either list set, a peer is admitted when its subject CN is in the CN list or
one of its URI SANs is in the URI list (as Calico's Typha does).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Any

from runtime.errors import ConfigError


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


def certificate_identities(cert: dict[str, Any] | None) -> frozenset[str]:
    """A peer certificate's CNs and URI SANs."""
    if not cert:
        return frozenset()
    cns = {value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"}
    uris = {value for kind, value in cert.get("subjectAltName", ()) if kind == "URI"}
    return frozenset(cns | uris)


def node_in_identities(node: str, identities: frozenset[str]) -> bool:
    """Whether a certificate with these identities speaks for `node`: a CN
    equal to it, or a URI SAN whose last path segment is it
    (`spiffe://cluster/ns/calico-system/node/<node>`)."""
    if not node:
        return False
    return any(
        i == node or (":" in i and i.rstrip("/").rsplit("/", 1)[-1] == node) for i in identities
    )


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


class FileWatch:
    """Notices when files change.  Kubernetes updates a mounted Secret by
    swapping a symlink, so each path is compared by what it resolves to now
    (inode, size, mtime)."""

    def __init__(self, *paths: str | None) -> None:
        self._paths = tuple(p for p in paths if p)
        self._seen = self._fingerprint()

    def fingerprint(self) -> tuple[tuple[int, int, int], ...]:
        """What the files are now (inode, size, mtime each)."""
        return self._fingerprint()

    def _fingerprint(self) -> tuple[tuple[int, int, int], ...]:
        out = []
        for path in self._paths:
            try:
                st = os.stat(path)
            except OSError:
                out.append((0, 0, 0))
                continue
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(out)

    def changed(self) -> bool:
        """Whether any file differs from when `accept()` (or the constructor) last ran."""
        return self._fingerprint() != self._seen

    def accept(self, seen: tuple[tuple[int, int, int], ...] | None = None) -> None:
        """The files have been taken in as they were at `seen` (a
        `fingerprint()`; None: as they are now).  Taken as they were before
        a load, a change during it is noticed by the next check."""
        self._seen = self._fingerprint() if seen is None else seen


class ReloadingContext:
    """Keeps an SSLContext in step with its files: when they change,
    `check()` loads the new certificate and key into the same context, so
    every handshake from then on presents them, with no restart and no
    dropped connection.  A new CA is added to the trusted ones (rotations
    overlap old and new); removing a CA takes a restart.  The new files are
    first loaded into a fresh context: only a certificate, key and CA that
    load there together (a certificate whose key has not been rotated with
    it does not) go into the live one, so a half-rotated or half-written
    pair never leaves it unable to handshake; the next check retries."""

    def __init__(
        self, context: ssl.SSLContext, cert_file: str | None, key_file: str | None, ca_file: str
    ) -> None:
        self.context = context
        self._cert, self._key, self._ca = cert_file, key_file, ca_file
        self._watch = FileWatch(cert_file, key_file, ca_file)
        self.reloads = 0
        self.failures = 0

    def check(self) -> bool:
        """Reload if the files changed; True if it did.  Raises ConfigError
        (counted in `failures`) if the new files cannot be loaded; the
        context is then unchanged and the next call tries again."""
        if not self._watch.changed():
            return False
        seen = self._watch.fingerprint()
        try:
            self._load(ssl.SSLContext(self.context.protocol))  # the trial: nothing live yet
        except (OSError, ssl.SSLError) as exc:
            self.failures += 1
            raise ConfigError(f"new TLS files unusable, keeping the old ones: {exc}") from None
        try:
            self._load(self.context)
        except (OSError, ssl.SSLError) as exc:  # changed again since the trial
            self.failures += 1
            raise ConfigError(f"TLS files changed while loading, retrying: {exc}") from None
        self._watch.accept(seen)
        self.reloads += 1
        return True

    def _load(self, ctx: ssl.SSLContext) -> None:
        if self._cert:
            ctx.load_cert_chain(self._cert, self._key)
        ctx.load_verify_locations(self._ca)
