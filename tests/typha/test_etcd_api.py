"""What typha/datastore/etcd_api.py assumes of etcd3aio and gRPC, checked
against the installed library (so an upgrade that moves a private name or a
signature fails here), and the channel it builds, against a real etcd."""

from __future__ import annotations

import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from commands.demo.etcd import EmbeddedEtcd
from typha.datastore import etcd_api
from typha.datastore.etcd_client import EtcdConnection, EtcdOptions
from typha.errors import DatastoreError

ROOT = Path(__file__).resolve().parents[2]


def _declared(name: str) -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in deps if re.match(rf"{name}\b", d)]
    return spec


def test_the_installed_etcd3aio_is_in_the_checked_series() -> None:
    spec = _declared("etcd3aio")
    assert spec == "etcd3aio>=0.3.0,<0.4", "re-check etcd_api.py before widening this bound"
    major, minor = (int(x) for x in version("etcd3aio").split(".")[:2])
    assert (major, minor) == (0, 3)


def test_private_watch_messages_have_the_fields_we_send() -> None:
    create = etcd_api.WatchCreateRequest(
        key=b"/a/", range_end=b"/a0", start_revision=7, progress_notify=True
    )
    assert (create.key, create.range_end, create.start_revision) == (b"/a/", b"/a0", 7)
    assert etcd_api.WatchRequest(create_request=create).HasField("create_request")
    assert etcd_api.WatchRequest(progress_request={}).HasField("progress_request")
    assert etcd_api.prefix_range_end(b"/a/") == b"/a0"


def _params(fn: object) -> set[str]:
    return set(inspect.signature(fn).parameters)  # type: ignore[arg-type]


def test_service_signatures_we_call() -> None:
    kv, lease, auth = etcd_api.KVService, etcd_api.LeaseService, etcd_api.AuthService
    for cls in (kv, lease, auth):
        assert "max_attempts" in _params(cls.__init__)
        assert hasattr(cls, "set_token")
    assert {"range_end", "revision", "limit", "sort_order", "sort_target", "count_only"} <= (
        _params(kv.get)
    )
    assert {"lease", "timeout"} <= _params(kv.put)
    assert {"range_end", "timeout"} <= _params(kv.delete)
    assert {"timeout"} <= _params(kv.txn) & _params(kv.compact)
    assert callable(kv.txn_op_put)
    assert callable(kv.txn_op_delete)
    assert {"timeout"} <= _params(lease.grant) & _params(lease.revoke)
    for name in ("authenticate", "user_add", "user_grant_role", "auth_enable"):
        assert "timeout" in _params(getattr(auth, name)), name
    assert {"ASCEND", "KEY"} <= set(etcd_api.SortOrder.__members__) | set(
        etcd_api.SortTarget.__members__
    )


@pytest.mark.parametrize(
    ("endpoints", "attempt", "target"),
    [
        (["10.0.0.1:2379", "10.0.0.2:2379"], 5, "ipv4:10.0.0.1:2379,10.0.0.2:2379"),
        (["[fd00::1]:2379"], 0, "ipv6:[fd00::1]:2379"),
        (["etcd-0.etcd:2379", "etcd-1.etcd:2379"], 0, "dns:///etcd-0.etcd:2379"),
        (["etcd-0.etcd:2379", "etcd-1.etcd:2379"], 3, "dns:///etcd-1.etcd:2379"),
        (["localhost:2379", "10.0.0.2:2379"], 1, "dns:///10.0.0.2:2379"),
    ],
)
def test_channel_target(endpoints: list[str], attempt: int, target: str) -> None:
    assert etcd_api.channel_target(endpoints, attempt) == target


def test_a_client_certificate_without_a_ca_is_refused() -> None:
    spec = etcd_api.ChannelSpec(("127.0.0.1:1",), cert_chain=b"x", cert_key=b"y")
    with pytest.raises(ValueError, match="CA"):
        etcd_api.open_channel(spec)


async def test_etcd_by_host_name(etcd: EmbeddedEtcd) -> None:
    # A cluster calls its etcd by name (etcd-0.etcd:2379); etcd3aio's own
    # channel would have dialled "ipv4:localhost:..." and never connected.
    port = etcd.endpoint.rsplit(":", 1)[1]
    conn = EtcdConnection(EtcdOptions((f"localhost:{port}",), timeout=10))
    try:
        rev = await conn.put("/calico/x", b"1")
        got, items, _ = await conn.list_prefix("/calico/", page_size=10)
        assert got >= rev
        assert [kv.key for kv in items] == [b"/calico/x"]
        stream = conn.watch("/calico/", rev + 1)
        await conn.put("/calico/y", b"2")
        async for batch in stream:
            if batch.events:
                assert batch.events[0].key == b"/calico/y"
                break
        stream.cancel()
    finally:
        await conn.close()


async def test_a_name_that_does_not_resolve_is_a_datastore_error() -> None:
    conn = EtcdConnection(EtcdOptions(("no-such-etcd.invalid:2379",), timeout=2))
    try:
        with pytest.raises(DatastoreError):
            await conn.put("/calico/x", b"1")
    finally:
        await conn.close()
