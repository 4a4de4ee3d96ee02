"""etcd client TLS and username/password: served when right, refused (not
crashed) when wrong."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from commands.demo.etcd import EmbeddedEtcd, EtcdTLS
from felix_client import SyncClient
from tests.certs import CertAuthority
from tests.cluster import serve_config
from tests.conftest import async_wait_until
from typha.app import TyphaApp
from typha.config import ServeConfig
from typha.datastore.etcd_client import EtcdConnection, EtcdOptions
from typha.datastore.etcd_state import read_etcd_state

pytestmark = pytest.mark.integration


def config(endpoint: str, **kw: object) -> ServeConfig:
    return serve_config(endpoint, "sec", **kw)


@pytest.fixture
def tls_etcd(tmp_path: Path) -> Iterator[tuple[EmbeddedEtcd, CertAuthority]]:
    ca = CertAuthority(tmp_path)
    leaf = ca.issue(cn="etcd", dns=("etcd.local",), ips=("127.0.0.1",))
    server = EmbeddedEtcd(
        str(tmp_path / "etcd"), tls=EtcdTLS(leaf.cert_file, leaf.key_file, ca.ca_file)
    )
    server.start()
    try:
        yield server, ca
    finally:
        server.stop()


async def test_etcd_over_tls_with_a_client_certificate(
    tls_etcd: tuple[EmbeddedEtcd, CertAuthority],
) -> None:
    etcd, ca = tls_etcd
    client_cert = ca.issue(cn="typha")
    cfg = config(
        etcd.endpoint,
        etcd_ca_file=ca.ca_file,
        etcd_cert_file=client_cert.cert_file,
        etcd_key_file=client_cert.key_file,
        etcd_server_name="etcd.local",
    )
    opts = cfg.etcd_options()
    conn = EtcdConnection(opts)
    await conn.put("/calico/felix/a", b'{"a": 1}')
    await conn.close()
    app = TyphaApp(cfg)
    await app.start()
    try:
        async with SyncClient(f"127.0.0.1:{app.agent_port}", node="n") as client:
            await asyncio.wait_for(client.wait_in_sync(), 30)
            truth = await read_etcd_state(opts)
            assert truth.keys == 1
            assert client.digest == truth.digest
    finally:
        await app.stop()

    # Without a client certificate etcd refuses us: not ready, errors counted, no crash.
    no_cert = TyphaApp(
        config(etcd.endpoint, etcd_ca_file=ca.ca_file, etcd_server_name="etcd.local")
    )
    await no_cert.start()
    try:
        await async_wait_until(lambda: no_cert.syncer.stats.errors >= 2, "errors counted")
        assert not no_cert.ready()
        assert not no_cert.syncer.has_state
    finally:
        await no_cert.stop()


async def test_etcd_with_username_and_password(etcd: EmbeddedEtcd) -> None:
    conn = EtcdConnection([etcd.endpoint])
    await conn.put("/calico/felix/a", orjson.dumps({"a": 1}))
    await conn.close()
    await etcd.enable_auth("root", "s3cret")

    app = TyphaApp(config(etcd.endpoint, etcd_username="root", etcd_password="s3cret"))
    await app.start()
    try:
        async with SyncClient(f"127.0.0.1:{app.agent_port}", node="n") as client:
            await asyncio.wait_for(client.wait_in_sync(), 30)
            truth = await read_etcd_state(
                EtcdOptions((etcd.endpoint,), username="root", password="s3cret")
            )
            assert client.digest == truth.digest
            assert len(client.state) == 1
    finally:
        await app.stop()

    wrong = TyphaApp(config(etcd.endpoint, etcd_username="root", etcd_password="nope"))
    await wrong.start()
    try:
        await async_wait_until(lambda: wrong.syncer.stats.errors >= 2, "auth failures counted")
        assert not wrong.ready()
    finally:
        await wrong.stop()
