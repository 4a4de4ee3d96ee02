"""Tiered fan-out with real processes: etcd, a root typha, a leaf typha
syncing from the root (`--upstream-typha`), and agents on the leaf."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from commands.demo.etcd import EmbeddedEtcd
from tests.certs import CertAuthority, Issued
from tests.cluster import put_items
from tests.conftest import (
    Proc,
    free_port,
    http_json,
    http_text,
    listening_ports,
    metric,
    start_felix_agent,
    start_typha,
    wait_until,
)
from typha.datastore.etcd_state import read_etcd_state

pytestmark = pytest.mark.integration


def etcd_digest(etcd: EmbeddedEtcd) -> str:
    return asyncio.run(read_etcd_state([etcd.endpoint])).digest


def start_leaf(procs: Callable[..., Proc], upstream: str) -> tuple[Proc, int, int]:
    return start_typha(procs, None, "--upstream-typha", upstream)


def test_agents_on_a_leaf_follow_etcd_through_a_root_restart_without_a_snapshot(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    asyncio.run(
        put_items(etcd.endpoint, [(f"/calico/t/k{i}", b'{"v": %d}' % i) for i in range(30)])
    )
    root_port = free_port()
    root, _, root_http = start_typha(procs, etcd, agent_port=root_port)
    leaf, leaf_port, leaf_http = start_leaf(procs, f"127.0.0.1:{root_port}")
    agents = [start_felix_agent(procs, f"127.0.0.1:{leaf_port}", f"n{i}")[1] for i in range(3)]

    def all_at(digest: str) -> bool:
        return all(http_json(f"http://127.0.0.1:{p}/status")["digest"] == digest for p in agents)

    wait_until(lambda: all_at(etcd_digest(etcd)), "agents on the leaf reach etcd's state")
    leaf_status = http_json(f"http://127.0.0.1:{leaf_http}/status")
    assert leaf_status["digest"] == etcd_digest(etcd)
    assert leaf_status["datastore_status"] == "in_sync"
    asyncio.run(put_items(etcd.endpoint, [("/calico/t/k1", b'{"v": "changed"}')]))
    wait_until(lambda: all_at(etcd_digest(etcd)), "a change flows through both tiers")

    root.stop(signal.SIGKILL)
    wait_until(
        lambda: http_json(f"http://127.0.0.1:{leaf_http}/status")["datastore_status"] == "waiting",
        "the leaf reports its upstream gone",
    )
    status = f"http://127.0.0.1:{agents[0]}/status"
    wait_until(lambda: http_json(status)["upstream_status"] == "waiting", "agents are told")
    assert http_json(status)["in_sync"] is True  # they keep their state
    asyncio.run(
        put_items(
            etcd.endpoint,
            [("/calico/t/k2", None), ("/calico/t/new", b'{"while": "root down"}')],
        )
    )

    root, _, root_http = start_typha(procs, etcd, agent_port=root_port)
    wait_until(lambda: all_at(etcd_digest(etcd)), "agents catch up once the root is back")
    for port in agents:
        st = http_json(f"http://127.0.0.1:{port}/status")
        assert st["snapshots"] == 1  # only the first sync: everything after was deltas
        assert st["upstream_in_sync"] is True
    leaf_metrics = http_text(f"http://127.0.0.1:{leaf_http}/metrics")
    assert metric(leaf_metrics, "typha_snapshots_sent_total") == 3
    root_metrics = http_text(f"http://127.0.0.1:{root_http}/metrics")
    assert metric(root_metrics, "typha_snapshots_sent_total") == 0  # the leaf resumed
    assert metric(root_metrics, "typha_resumes_total") == 1
    assert leaf.popen.poll() is None


def test_a_leaf_syncs_from_a_tls_root_with_its_own_identity_and_an_outsider_is_refused(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc], tmp_path: Path
) -> None:
    asyncio.run(put_items(etcd.endpoint, [(f"/calico/t/k{i}", b"{}") for i in range(20)]))
    ca = CertAuthority(tmp_path)
    root_cert = ca.issue(cn="typha-root", dns=("typha-root.local",))
    root_port = free_port()
    _, _, root_http = start_typha(
        procs,
        etcd,
        "--tls-cert-file",
        root_cert.cert_file,
        "--tls-key-file",
        root_cert.key_file,
        "--tls-ca-file",
        ca.ca_file,
        "--tls-allowed-cns",
        "typha-leaf",
        agent_port=root_port,
    )

    def leaf_tls(identity: Issued) -> tuple[str, ...]:
        return (
            "--upstream-typha",
            f"127.0.0.1:{root_port}",
            "--upstream-tls-cert-file",
            identity.cert_file,
            "--upstream-tls-key-file",
            identity.key_file,
            "--upstream-tls-ca-file",
            ca.ca_file,
            "--upstream-tls-server-name",
            "typha-root.local",
        )

    _, leaf_port, _ = start_typha(procs, None, *leaf_tls(ca.issue(cn="typha-leaf")))
    _, agent = start_felix_agent(procs, f"127.0.0.1:{leaf_port}", "n0")
    wait_until(
        lambda: http_json(f"http://127.0.0.1:{agent}/status")["digest"] == etcd_digest(etcd),
        "an agent on the TLS leaf reaches etcd's state",
    )

    outsider = procs(
        "typha",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        *leaf_tls(ca.issue(cn="mallory")),
    )
    _, outsider_http = listening_ports(
        outsider, r"agents on 127\.0\.0\.1:(\d+), http on 127\.0\.0\.1:(\d+)", "outsider"
    )
    root_metrics = f"http://127.0.0.1:{root_http}/metrics"
    wait_until(
        lambda: (
            metric(http_text(root_metrics), 'typha_protocol_errors_total{code="tls_forbidden"}')
            >= 2
        ),
        "the root refuses the leaf it does not admit, repeatedly",
    )
    status = http_json(f"http://127.0.0.1:{outsider_http}/status")
    assert status["datastore_status"] != "in_sync"
    assert status["revision"] == 0  # it got nothing
