"""Certificates rotate under a running server and agent: new handshakes get
the new certificate, open connections stay, unusable files change nothing."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from commands.demo.etcd import EmbeddedEtcd
from runtime.tls import ReloadingContext, client_context
from tests.certs import CertAuthority, Issued
from tests.conftest import (
    Proc,
    http_json,
    http_text,
    metric,
    start_felix_agent,
    start_typha,
    wait_until,
)


def install(issued: Issued, cert_path: Path, key_path: Path) -> None:
    """Replace the files atomically, as a Secret volume update does."""
    for src, dst in ((issued.cert_file, cert_path), (issued.key_file, key_path)):
        tmp = dst.with_suffix(".tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


def served_serial(port: int, ca: CertAuthority, client: Issued) -> int:
    ctx = client_context(ca.ca_file, client.cert_file, client.key_file)
    ctx.check_hostname = False
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    from cryptography import x509

    return x509.load_der_x509_certificate(der).serial_number


@pytest.mark.integration
def test_a_rotated_server_certificate_is_served_without_a_restart(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc], tmp_path: Path
) -> None:
    ca = CertAuthority(tmp_path)
    first, second = ca.issue(dns=("typha.local",)), ca.issue(dns=("typha.local",))
    agent_cert = ca.issue(cn="felix")
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    install(first, cert_path, key_path)
    typha, agent_port, http_port = start_typha(
        procs,
        etcd,
        "--tls-cert-file",
        str(cert_path),
        "--tls-key-file",
        str(key_path),
        "--tls-ca-file",
        ca.ca_file,
        "--tls-reload-interval",
        "0.2",
    )
    tls_args = ("--tls-ca-file", ca.ca_file, "--tls-cert-file", agent_cert.cert_file)
    tls_args += ("--tls-key-file", agent_cert.key_file, "--tls-server-name", "typha.local")
    _, status_port = start_felix_agent(procs, f"127.0.0.1:{agent_port}", "n1", *tls_args)
    status = f"http://127.0.0.1:{status_port}/status"
    wait_until(lambda: http_json(status)["in_sync"], "agent in sync over TLS")
    before = served_serial(agent_port, ca, agent_cert)

    install(second, cert_path, key_path)
    metrics = f"http://127.0.0.1:{http_port}/metrics"
    wait_until(
        lambda: metric(http_text(metrics), 'typha_tls_reloads_total{what="agents"}') == 1,
        "the server takes the new certificate in",
    )
    after = served_serial(agent_port, ca, agent_cert)
    assert after != before
    assert "agent port: new TLS certificate loaded" in typha.output()
    assert http_json(status)["connects"] == 1  # the open connection was left alone

    # Half-written or wrong files are refused; the last good ones stay.
    cert_path.write_text("-----BEGIN CERTIFICATE-----\ngarbage\n")
    wait_until(
        lambda: metric(http_text(metrics), 'typha_tls_reload_failures_total{what="agents"}') >= 1,
        "the bad files are counted",
    )
    assert served_serial(agent_port, ca, agent_cert) == after
    assert http_json(status)["in_sync"] is True

    # Half rotated: a new certificate beside the old key.  Loaded into the
    # live context it would leave the port unable to handshake.
    install(second, cert_path, key_path)
    wait_until(lambda: served_serial(agent_port, ca, agent_cert) == after, "the good pair again")
    failures = metric(http_text(metrics), 'typha_tls_reload_failures_total{what="agents"}')
    shutil.copyfile(ca.issue(dns=("typha.local",)).cert_file, cert_path.with_suffix(".tmp"))
    os.replace(cert_path.with_suffix(".tmp"), cert_path)
    wait_until(
        lambda: (
            metric(http_text(metrics), 'typha_tls_reload_failures_total{what="agents"}') > failures
        ),
        "the mismatched pair is refused",
    )
    assert served_serial(agent_port, ca, agent_cert) == after  # still handshakes, old pair
    _, second_agent = start_felix_agent(procs, f"127.0.0.1:{agent_port}", "n2", *tls_args)
    wait_until(
        lambda: http_json(f"http://127.0.0.1:{second_agent}/status")["in_sync"],
        "a new agent connects while the pair is half rotated",
    )


def test_a_client_context_takes_in_a_new_ca(tmp_path: Path) -> None:
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    old = CertAuthority(old_dir)
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    new = CertAuthority(new_dir)
    bundle = tmp_path / "ca-bundle.pem"
    shutil.copyfile(old.ca_file, bundle)
    ctx = client_context(str(bundle))
    reloading = ReloadingContext(ctx, None, None, str(bundle))
    assert reloading.check() is False  # nothing changed yet
    assert ctx.cert_store_stats()["x509_ca"] == 1
    tmp = tmp_path / "ca-bundle.tmp"
    tmp.write_bytes(Path(old.ca_file).read_bytes() + Path(new.ca_file).read_bytes())
    os.replace(tmp, bundle)
    assert reloading.check() is True
    assert ctx.cert_store_stats()["x509_ca"] == 2  # both trusted during the overlap
    assert reloading.check() is False
    assert reloading.reloads == 1
    assert isinstance(ctx, ssl.SSLContext)
