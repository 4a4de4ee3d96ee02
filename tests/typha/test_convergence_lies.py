"""Convergence that cannot be lied to, with real processes: etcd, `typha
serve` (a root, a leaf syncing from it), `felix-agent`s, and a client that
speaks the protocol by hand to claim what it never applied.

* A client saying hello as node n1 at revision 2**62 and reporting APPLIED
  2**62 is closed as malformed, and `wait-applied` is not fooled by it.
* `wait-applied` refuses to say converged with no agent at all.
* A leaf replica's connection to its root is not an agent of the root.
* With TLS, only a certificate that names the node may report for it.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from commands.demo.etcd import EmbeddedEtcd
from syncproto import ClientConnection, Limits
from tests.certs import CertAuthority
from tests.cluster import put_items, seed_sample
from tests.conftest import (
    Proc,
    http_json,
    http_text,
    metric,
    start_felix_agent,
    start_typha,
    wait_until,
)
from tests.typha.test_convergence import POLICY, POLICY_KEY, wait_applied

pytestmark = pytest.mark.integration


def write_policy(etcd: EmbeddedEtcd, order: int) -> int:
    """A change every agent must program; its revision."""
    value = {**POLICY, "spec": {**POLICY["spec"], "order": order}}
    return asyncio.run(put_items(etcd.endpoint, [(POLICY_KEY, orjson.dumps(value))]))


def test_a_forged_hello_and_report_do_not_count(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    asyncio.run(seed_sample(etcd.endpoint, 2, 2))
    _, agent_port, http_port = start_typha(procs, etcd)
    liar = socket.create_connection(("127.0.0.1", agent_port), timeout=5)
    try:
        core = ClientConnection(
            node="n1", now=0.0, limits=Limits(), revision=2**62, digest="0" * 32
        )
        liar.sendall(b"".join(core.data_to_send()))
        liar.settimeout(10)
        got = b""
        while True:  # until the server answers the hello (after its resume wait)
            chunk = liar.recv(1 << 16)
            assert chunk, "the server closed the connection before answering"
            got += chunk
            if core.receive_data(chunk, 0.0):
                break
        assert core.send_applied(2**62)
        liar.sendall(b"".join(core.data_to_send()))
        wait_until(
            lambda: (
                metric(
                    http_text(f"http://127.0.0.1:{http_port}/metrics"),
                    'typha_protocol_errors_total{code="malformed"}',
                )
                >= 1
            ),
            "the forged report is refused as malformed",
        )
    finally:
        liar.close()
    revision = write_policy(etcd, 7)
    done = subprocess.run(wait_applied(revision, http_port, 1.0), capture_output=True)
    assert done.returncode == 1, done.stdout
    assert orjson.loads(done.stdout)["converged"] is False


def test_no_agent_is_not_converged(etcd: EmbeddedEtcd, procs: Callable[..., Proc]) -> None:
    asyncio.run(seed_sample(etcd.endpoint, 2, 2))
    _, _, http_port = start_typha(procs, etcd)
    revision = http_json(f"http://127.0.0.1:{http_port}/status")["revision"]
    done = subprocess.run(wait_applied(revision, http_port, 0.5), capture_output=True)
    assert done.returncode == 1
    summary = orjson.loads(done.stdout)
    assert summary["agents"] == 0
    assert summary["converged"] is False


def test_a_leaf_is_not_an_agent_of_its_root(etcd: EmbeddedEtcd, procs: Callable[..., Proc]) -> None:
    asyncio.run(seed_sample(etcd.endpoint, 2, 2))
    _, root_agents, root_http = start_typha(procs, etcd)
    _, leaf_agents, leaf_http = start_typha(
        procs, None, "--upstream-typha", f"127.0.0.1:{root_agents}"
    )
    _, status = start_felix_agent(procs, f"127.0.0.1:{leaf_agents}", "node-1")
    wait_until(lambda: http_json(f"http://127.0.0.1:{status}/status")["in_sync"], "agent in sync")
    root = http_json(f"http://127.0.0.1:{root_http}/convergence")
    assert root["agents"] == 0, root  # the leaf is connected, but it is no agent
    assert root["not_reporting"] == []
    revision = write_policy(etcd, 8)
    done = subprocess.run(wait_applied(revision, [root_http, leaf_http], 60), capture_output=True)
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["applied"] == 1


def test_with_tls_only_a_certificate_naming_the_node_reports_for_it(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc], tmp_path: Path
) -> None:
    asyncio.run(seed_sample(etcd.endpoint, 2, 2))
    ca = CertAuthority(tmp_path)
    server = ca.issue(cn="typha", dns=("typha.local",))
    _, agent_port, http_port = start_typha(
        procs,
        etcd,
        "--tls-cert-file",
        server.cert_file,
        "--tls-key-file",
        server.key_file,
        "--tls-ca-file",
        ca.ca_file,
    )
    ports = {}
    for node, cert in (
        ("node-1", ca.issue(cn="node-1")),
        ("node-2", ca.issue(uris=("spiffe://cluster/ns/calico/node/node-2",))),
        ("node-3", ca.issue(cn="node-1")),  # someone else's certificate
    ):
        _, ports[node] = start_felix_agent(
            procs,
            f"127.0.0.1:{agent_port}",
            node,
            "--tls-ca-file",
            ca.ca_file,
            "--tls-cert-file",
            cert.cert_file,
            "--tls-key-file",
            cert.key_file,
            "--tls-server-name",
            "typha.local",
        )
    for node, port in ports.items():
        wait_until(
            lambda port=port: http_json(f"http://127.0.0.1:{port}/status")["in_sync"],
            f"{node} in sync",
        )
    conv = http_json(f"http://127.0.0.1:{http_port}/convergence")
    # node-3 is connected and served, but nothing it says counts: it is an
    # agent whose state is unknown, so convergence waits for it.
    assert conv["agents"] == 3, conv
    assert conv["applied"] == 2
    assert conv["not_reporting"] == ["node-3"]
    text = http_text(f"http://127.0.0.1:{http_port}/metrics")
    assert metric(text, "typha_applied_unverified_total") == 1
