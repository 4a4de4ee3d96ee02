"""Values, peers and outages that must never stop, starve or stale the fleet.

Each test drives real processes (etcd, `typha serve`, `felix-agent`) on
loopback, and hostile peers over real sockets.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import orjson
import pytest
import zstandard

from commands.demo.cluster import policy
from commands.demo.etcd import EmbeddedEtcd
from syncproto import ClientHello, Codec, MsgType, Ping, encode_frame
from syncproto.frames import FLAG_ZSTD, HEADER
from tests.certs import CertAuthority
from tests.cluster import put_items
from tests.conftest import (
    Proc,
    free_port,
    http_json,
    http_text,
    metric,
    start_felix_agent,
    start_typha,
    wait_until,
)
from tests.tcp_proxy import TcpProxy
from typha.datastore.etcd_state import read_etcd_state

pytestmark = pytest.mark.integration

CODEC = Codec(max_frame=16 * 1024 * 1024)


# -- helpers -----------------------------------------------------------------


async def put(endpoint: str, items: list[tuple[str, bytes | None]]) -> int:
    return await put_items(endpoint, items)


def seed(etcd: EmbeddedEtcd, n: int = 10, size: int = 100) -> int:
    items: list[tuple[str, bytes | None]] = [
        (f"/calico/t/k{i:04d}", orjson.dumps({"i": i, "pad": os.urandom(size // 2).hex()}))
        for i in range(n)
    ]
    return asyncio.run(put(etcd.endpoint, items))


def status(port: int) -> dict[str, object]:
    got: dict[str, object] = http_json(f"http://127.0.0.1:{port}/status")
    return got


def metrics(port: int) -> str:
    return http_text(f"http://127.0.0.1:{port}/metrics")


def ready(port: int) -> bool:
    try:
        return bool(http_json(f"http://127.0.0.1:{port}/readyz")["ready"])
    except Exception:
        return False


def truth(etcd: EmbeddedEtcd) -> tuple[int, str, int]:
    st = asyncio.run(read_etcd_state([etcd.endpoint]))
    return st.revision, st.digest, st.keys


def hello(node: str = "raw", caps: frozenset[str] = frozenset()) -> bytes:
    return CODEC.encode(ClientHello(node=node, caps=caps))


def read_frames(sock: socket.socket, until: Callable[[list[tuple[int, object]]], bool]) -> list:  # type: ignore[type-arg]
    """Read frames (type, decoded body) until `until(frames)` or EOF."""
    buf = b""
    frames: list[tuple[int, object]] = []
    while not until(frames):
        try:
            data = sock.recv(1 << 16)
        except (TimeoutError, ConnectionResetError):
            break
        if not data:
            break
        buf += data
        while len(buf) >= HEADER.size:
            length, mtype, flags, _, _ = HEADER.unpack_from(buf)
            if len(buf) < HEADER.size + length:
                break
            body = buf[HEADER.size : HEADER.size + length]
            buf = buf[HEADER.size + length :]
            if flags & FLAG_ZSTD:
                body = zstandard.ZstdDecompressor().decompress(body, max_output_size=1 << 26)
            frames.append((mtype, msgpack.unpackb(body, raw=False)))
    return frames


def goodbye_reason(frames: list[tuple[int, object]]) -> str:
    for mtype, body in frames:
        if mtype == MsgType.GOODBYE and isinstance(body, dict):
            return str(body["reason"])
    return ""


def has_goodbye(frames: list[tuple[int, object]]) -> bool:
    return bool(goodbye_reason(frames))


def connect(port: int, timeout: float = 15.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return sock


@pytest.fixture
def typha_with_agent(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> Iterator[tuple[Proc, int, int, int]]:
    """typha + one felix-agent in sync: (typha, agent port, http port, agent status port)."""
    seed(etcd)
    server, agent_port, http_port = start_typha(procs, etcd)
    _, status_port = start_felix_agent(procs, f"127.0.0.1:{agent_port}", "bystander")
    wait_until(lambda: status(status_port)["in_sync"], "bystander agent in sync")
    return server, agent_port, http_port, status_port


def bystander_follows(etcd: EmbeddedEtcd, status_port: int) -> None:
    """A write reaches the bystander agent, which never had to reconnect."""
    asyncio.run(put(etcd.endpoint, [("/calico/t/after", orjson.dumps({"t": time.time()}))]))
    _, digest, _ = truth(etcd)
    wait_until(lambda: status(status_port)["digest"] == digest, "bystander converges")
    assert status(status_port)["connects"] == 1


# -- 1. values that reach past validation ------------------------------------


def hostile_values() -> list[tuple[str, bytes | None]]:
    out: list[tuple[str, bytes | None]] = []
    deep = b'{"a":' + b"[" * 300 + b"]" * 300 + b"}"
    out.append(("/calico/felix/v2/deep", deep))
    # (A run of '!' is no hazard any more: Calico toggles one negation.)
    selectors = ["(" * 400 + "all()" + ")" * 400, "a == '" + "x" * 5000 + "'"]
    for i, sel in enumerate(selectors):
        key, value = policy("shop", f"bad-sel-{i}", "web", 1, 80)
        value["spec"]["selector"] = sel
        out.append((key, orjson.dumps(value)))
    for i, port in enumerate(["²", "9" * 5000]):
        key, value = policy("shop", f"bad-port-{i}", "web", 1, 80)
        value["spec"]["ingress"][0]["destination"]["ports"] = [port]
        out.append((key, orjson.dumps(value)))
    return out


def test_hostile_values_never_stop_a_replica_nor_its_backfill(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    seed(etcd)
    _, _a_agent, a_http = start_typha(procs, etcd)
    bad = hostile_values()
    asyncio.run(put(etcd.endpoint, bad))
    marker = asyncio.run(put(etcd.endpoint, [("/calico/t/marker", b'{"after":"bad"}')]))
    rev, digest, keys = truth(etcd)
    assert rev == marker
    wait_until(lambda: status(a_http)["revision"] >= marker, "replica A follows past the values")
    st = status(a_http)
    assert (st["digest"], st["keys"], st["in_sync"]) == (digest, keys, True)
    text = metrics(a_http)
    assert metric(text, 'typha_invalid_values_total{reason="too_deep"}') == 1
    assert metric(text, 'typha_invalid_values_total{reason="bad_selector"}') == 2
    assert metric(text, 'typha_invalid_values_total{reason="bad_port"}') == 2
    assert ready(a_http)

    # A replica started while they exist becomes ready with the same state.
    _, _, b_http = start_typha(procs, etcd)
    assert status(b_http)["digest"] == digest

    # Deleted again, but still in the history a new replica backfills.
    asyncio.run(put(etcd.endpoint, [(k, None) for k, _ in bad]))
    rev, digest, keys = truth(etcd)
    _, c_agent, c_http = start_typha(procs, etcd)
    wait_until(lambda: status(c_http)["revision"] >= rev, "replica C caught up")
    st = status(c_http)
    assert (st["digest"], st["keys"]) == (digest, keys)
    assert keys > 10
    _, agent_port = start_felix_agent(procs, f"127.0.0.1:{c_agent}", "n1")
    wait_until(lambda: status(agent_port)["digest"] == digest, "agent on C has etcd's state")


# -- 2-5. hostile peers --------------------------------------------------------


def test_compressed_frames_from_clients_are_refused(
    typha_with_agent: tuple[Proc, int, int, int], etcd: EmbeddedEtcd
) -> None:
    _, agent_port, http_port, status_port = typha_with_agent
    body = zstandard.ZstdCompressor().compress(msgpack.packb({"token": 1}))
    ping = encode_frame(MsgType.PING, body, flags=FLAG_ZSTD)
    # A compression bomb: a few hundred bytes that would expand to 16 MiB.
    bomb = encode_frame(
        MsgType.PING, zstandard.ZstdCompressor().compress(b"\0" * (16 << 20)), flags=FLAG_ZSTD
    )
    assert len(bomb) < 4096
    for frame in (ping, bomb):
        with connect(agent_port) as sock:
            sock.sendall(frame * 5)
            frames = read_frames(sock, has_goodbye)
        assert goodbye_reason(frames) == "malformed"
        assert not [f for f in frames if f[0] == MsgType.PONG]
    assert metric(metrics(http_port), 'typha_protocol_errors_total{code="malformed"}') >= 2
    bystander_follows(etcd, status_port)


def test_a_ping_flooder_is_cut_off_and_starves_nobody(
    typha_with_agent: tuple[Proc, int, int, int], etcd: EmbeddedEtcd
) -> None:
    _, agent_port, http_port, status_port = typha_with_agent
    ping = CODEC.encode(Ping(1))
    with connect(agent_port) as sock:
        sock.sendall(hello())
        try:
            for _ in range(20):
                sock.sendall(ping * 1000)
        except OSError:
            pass  # cut off mid-flood
        frames = read_frames(sock, has_goodbye)
    assert goodbye_reason(frames) == "rate_limited"
    assert len([f for f in frames if f[0] == MsgType.PONG]) < 1000
    assert metric(metrics(http_port), 'typha_protocol_errors_total{code="rate_limited"}') == 1
    bystander_follows(etcd, status_port)


def test_a_flooder_that_never_reads_cannot_pile_up_replies(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    seed(etcd)
    _, agent_port, http_port = start_typha(
        procs,
        etcd,
        "--max-client-msgs-per-sec",
        "100000000",
        "--max-client-msg-burst",
        "100000000",
        "--max-client-lag",
        "2",
    )
    ping = CODEC.encode(Ping(1)) * 4096
    sent = 0
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", agent_port))
    sock.settimeout(1.0)
    deadline = time.monotonic() + 15
    try:
        sock.sendall(hello())
        while time.monotonic() < deadline:
            sent += sock.send(ping)
    except OSError:
        pass  # blocked: the server stopped reading
    try:
        text = metrics(http_port)
        written = metric(text, "typha_bytes_sent_total")
        # What the server wrote is bounded by the kernel's socket buffers
        # plus its write high-water mark and one read, and the flooder was
        # blocked, not served.
        assert written < 8 * 1024 * 1024, (written, sent)
        assert sent < 32 * 1024 * 1024, (written, sent)
        wait_until(
            lambda: (
                metric(metrics(http_port), 'typha_connections_closed_total{reason="slow_client"}')
                >= 1
            ),
            "the non-reader is dropped by the lag limit",
        )
    finally:
        sock.close()


def test_inbound_frames_are_small_and_never_left_half_sent(
    typha_with_agent: tuple[Proc, int, int, int], etcd: EmbeddedEtcd
) -> None:
    _, agent_port, _http_port, status_port = typha_with_agent
    # Announcing a 16 MiB frame: refused as soon as the header arrives.
    with connect(agent_port) as sock:
        sock.sendall(HEADER.pack(16 * 1024 * 1024, MsgType.PING, 0, 0, 0) + b"x" * 100)
        frames = read_frames(sock, has_goodbye)
    assert goodbye_reason(frames) == "frame_too_large"
    # After a hello, half a frame and silence: dropped by the frame timeout
    # (the handshake timeout, 10 s), long before the 60 s idle timeout.
    with connect(agent_port, timeout=30) as sock:
        sock.sendall(hello())
        read_frames(sock, lambda fs: any(f[0] == MsgType.SNAPSHOT_END for f in fs))
        sock.sendall(CODEC.encode(Ping(7))[:10])
        frames = read_frames(sock, has_goodbye)
    assert goodbye_reason(frames) == "frame_timeout"
    bystander_follows(etcd, status_port)


# -- 6-7. the datastore freezes, vanishes, or drops packets -------------------


@pytest.mark.parametrize("fault", ["sigstop", "silent_drop"])
def test_an_unresponsive_etcd_turns_the_replica_and_its_agents_not_in_sync(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc], fault: str
) -> None:
    seed(etcd)
    proxy = TcpProxy(int(etcd.endpoint.rsplit(":", 1)[1]))
    try:
        args = ("--etcd-watch-timeout", "3", "--etcd-endpoints", proxy.endpoint)
        _, agent_port, http_port = start_typha(procs, etcd, *args)
        _, status_port = start_felix_agent(procs, f"127.0.0.1:{agent_port}", "n1")
        wait_until(lambda: status(status_port)["upstream_in_sync"] is True, "agent in sync")
        assert etcd.proc is not None
        etcd_pid = etcd.proc.pid
        if fault == "sigstop":
            os.kill(etcd_pid, signal.SIGSTOP)
        else:
            proxy.blackhole()
        try:
            wait_until(lambda: not ready(http_port), "replica reports not ready")
            st = status(http_port)
            assert st["in_sync"] is False
            assert st["datastore_status"] == "waiting"
            wait_until(
                lambda: status(status_port)["upstream_in_sync"] is False,
                "the agent learns its replica lost etcd",
            )
            assert status(status_port)["in_sync"] is True  # it keeps its state
            assert metric(metrics(http_port), "typha_etcd_watch_stalls_total") >= 1
        finally:
            if fault == "sigstop":
                os.kill(etcd_pid, signal.SIGCONT)
            else:
                proxy.heal()
        wait_until(lambda: ready(http_port), "replica ready again")
        wait_until(lambda: status(status_port)["upstream_in_sync"] is True, "agent told")
        asyncio.run(put(etcd.endpoint, [("/calico/t/after", b'{"back":true}')]))
        _, digest, _ = truth(etcd)
        wait_until(lambda: status(status_port)["digest"] == digest, "agent converges")
    finally:
        proxy.close()


def test_etcd_retries_back_off_until_a_watch_delivers(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    seed(etcd)
    _, _, http_port = start_typha(procs, etcd, "--etcd-watch-timeout", "3")

    def backoff_after_errors() -> tuple[float, float]:
        text = metrics(http_port)
        return metric(text, "typha_etcd_errors_total"), metric(
            text, "typha_etcd_retry_backoff_seconds"
        )

    assert backoff_after_errors() == (0.0, 0.2)
    etcd.kill()
    wait_until(lambda: backoff_after_errors()[0] >= 6, "six failed attempts")
    errors, bound = backoff_after_errors()
    # Doubling from 0.2 s on every consecutive failure (capped at 10 s).
    assert bound >= min(0.2 * 2**6, 10.0), (errors, bound)
    etcd.spawn()
    etcd.wait_ready()
    wait_until(lambda: ready(http_port), "replica recovers")
    asyncio.run(put(etcd.endpoint, [("/calico/t/after", b'{"back":true}')]))
    wait_until(lambda: backoff_after_errors()[1] == 0.2, "backoff resets once the watch delivers")


# -- 8. agents leave a stale or silent replica --------------------------------


def test_an_agent_leaves_a_replica_that_lost_etcd_for_one_that_has_it(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    seed(etcd)
    proxy = TcpProxy(int(etcd.endpoint.rsplit(":", 1)[1]))
    try:
        a_args = ("--etcd-watch-timeout", "3", "--etcd-endpoints", proxy.endpoint)
        _, a_port, a_http = start_typha(procs, etcd, *a_args)
        b_port = free_port()
        typha = f"127.0.0.1:{a_port},127.0.0.1:{b_port}"
        _, status_port = start_felix_agent(procs, typha, "n1", "--upstream-stale-after", "2")
        wait_until(lambda: status(status_port)["in_sync"], "agent in sync on A (B is not up)")
        _, _, b_http = start_typha(procs, etcd, agent_port=b_port)
        proxy.blackhole()
        wait_until(lambda: not ready(a_http), "A lost etcd")
        wait_until(
            lambda: str(status(status_port)["server"]).endswith(f":{b_port}"),
            "the agent moved to B",
        )
        st = status(status_port)
        assert st["upstream_in_sync"] is True
        assert st["stale_upstream_moves"] == 1
        assert st["snapshots"] == 1  # the move was a resume
        # The probe that found B in sync resumed too, then closed.
        assert metric(metrics(b_http), "typha_resumes_total") >= 1
        asyncio.run(put(etcd.endpoint, [("/calico/t/after", b'{"moved":true}')]))
        _, digest, _ = truth(etcd)
        wait_until(lambda: status(status_port)["digest"] == digest, "agent follows B")
    finally:
        proxy.close()


def test_over_tls_an_agent_verifies_the_replica_it_probes_by_the_name_it_was_given(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc], tmp_path: Path
) -> None:
    # The replicas are named `localhost` and their certificate says only
    # that: a probe that verified them by the address it dialled (127.0.0.1)
    # would find none in sync, and the agent would never move.
    seed(etcd)
    ca = CertAuthority(tmp_path)
    server = ca.issue(dns=("localhost",))
    agent = ca.issue(cn="n1")
    tls = ("--tls-cert-file", server.cert_file, "--tls-key-file", server.key_file)
    tls += ("--tls-ca-file", ca.ca_file)
    proxy = TcpProxy(int(etcd.endpoint.rsplit(":", 1)[1]))
    try:
        a_args = ("--etcd-watch-timeout", "3", "--etcd-endpoints", proxy.endpoint, *tls)
        _, a_port, a_http = start_typha(procs, etcd, *a_args)
        b_port = free_port()
        agent_tls = ("--tls-ca-file", ca.ca_file, "--tls-cert-file", agent.cert_file)
        agent_tls += ("--tls-key-file", agent.key_file)
        typha = f"localhost:{a_port},localhost:{b_port}"
        _, status_port = start_felix_agent(
            procs, typha, "n1", "--upstream-stale-after", "1", *agent_tls
        )
        wait_until(lambda: status(status_port)["in_sync"], "agent in sync on A over TLS")
        start_typha(procs, etcd, *tls, agent_port=b_port)
        proxy.blackhole()
        wait_until(lambda: not ready(a_http), "A lost etcd")
        wait_until(
            lambda: str(status(status_port)["server"]).endswith(f":{b_port}"),
            "the agent moved to B",
        )
        assert status(status_port)["stale_upstream_moves"] == 1
    finally:
        proxy.close()


def test_an_agent_goes_straight_to_the_replica_found_in_sync(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    # Three replicas, two of them stale: the agent leaves its stale one for
    # the one its probe found in sync, not for whichever comes next.
    seed(etcd)
    proxy = TcpProxy(int(etcd.endpoint.rsplit(":", 1)[1]))
    try:
        stale_args = ("--etcd-watch-timeout", "3", "--etcd-endpoints", proxy.endpoint)
        _, a_port, a_http = start_typha(procs, etcd, *stale_args)
        _, c_port, c_http = start_typha(procs, etcd, *stale_args)
        b_port = free_port()
        typha = ",".join(f"127.0.0.1:{p}" for p in (a_port, c_port, b_port))
        _, status_port = start_felix_agent(procs, typha, "n1", "--upstream-stale-after", "1")
        wait_until(lambda: status(status_port)["in_sync"], "agent in sync (B is not up)")
        _, _, b_http = start_typha(procs, etcd, agent_port=b_port)
        proxy.blackhole()
        wait_until(lambda: not ready(a_http) and not ready(c_http), "A and C lost etcd")
        wait_until(
            lambda: str(status(status_port)["server"]).endswith(f":{b_port}"),
            "the agent moved to B",
        )
        assert status(status_port)["stale_upstream_moves"] == 1
        assert ready(b_http)
    finally:
        proxy.close()


def test_an_agent_stays_on_a_stale_replica_when_no_other_is_in_sync(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    # etcd is unreachable for every replica: moving would only make every
    # agent reconnect and resync at the worst moment, for nothing.
    seed(etcd)
    proxy = TcpProxy(int(etcd.endpoint.rsplit(":", 1)[1]))
    try:
        args = ("--etcd-watch-timeout", "3", "--etcd-endpoints", proxy.endpoint)
        _, a_port, a_http = start_typha(procs, etcd, *args)
        _, b_port, b_http = start_typha(procs, etcd, *args)
        typha = f"127.0.0.1:{a_port},127.0.0.1:{b_port}"
        _, status_port = start_felix_agent(procs, typha, "n1", "--upstream-stale-after", "1")
        wait_until(lambda: status(status_port)["upstream_in_sync"] is True, "agent in sync")
        proxy.blackhole()
        wait_until(lambda: not ready(a_http) and not ready(b_http), "both replicas lost etcd")
        wait_until(
            lambda: status(status_port)["stale_upstream_stays"] >= 2,
            "the agent looked for a replica in sync twice and stayed",
        )
        st = status(status_port)
        assert st["stale_upstream_moves"] == 0
        assert st["connects"] == 1
        assert st["in_sync"] is True  # it keeps serving its state to the dataplane
        proxy.heal()
        wait_until(lambda: status(status_port)["upstream_in_sync"] is True, "etcd is back")
        assert status(status_port)["connects"] == 1
    finally:
        proxy.close()


def test_an_agent_treats_a_silent_replica_as_dead_within_seconds(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    seed(etcd)
    a, a_port, _ = start_typha(procs, etcd)
    b_port = free_port()
    _, status_port = start_felix_agent(procs, f"127.0.0.1:{a_port},127.0.0.1:{b_port}", "n1")
    wait_until(lambda: status(status_port)["in_sync"], "agent in sync on A")
    start_typha(procs, etcd, agent_port=b_port)
    os.kill(a.popen.pid, signal.SIGSTOP)
    try:
        asyncio.run(put(etcd.endpoint, [("/calico/t/after", b'{"a":"frozen"}')]))
        _, digest, _ = truth(etcd)
        # Pings every 5 s of silence, 5 s to answer: well inside the 60 s
        # idle timeout that used to be the only limit.
        wait_until(lambda: status(status_port)["digest"] == digest, "agent moved to B", 40)
        assert str(status(status_port)["server"]).endswith(f":{b_port}")
    finally:
        os.kill(a.popen.pid, signal.SIGCONT)


# -- 9. TLS handshakes ---------------------------------------------------------


def test_tls_connections_that_never_handshake_count_and_time_out(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc], tmp_path: Path
) -> None:
    seed(etcd)
    ca = CertAuthority(tmp_path)
    cert = ca.issue(dns=("typha.local",))
    agent_cert = ca.issue(cn="felix")
    _, agent_port, http_port = start_typha(
        procs,
        etcd,
        "--tls-cert-file",
        cert.cert_file,
        "--tls-key-file",
        cert.key_file,
        "--tls-ca-file",
        ca.ca_file,
        "--max-connections",
        "2",
        "--handshake-timeout",
        "3",
    )
    silent = [connect(agent_port, timeout=30) for _ in range(2)]
    try:
        wait_until(
            lambda: status(http_port)["tls_handshakes_pending"] == 2, "both silent peers counted"
        )
        tls = (
            "--tls-ca-file",
            ca.ca_file,
            "--tls-cert-file",
            agent_cert.cert_file,
            "--tls-key-file",
            agent_cert.key_file,
            "--tls-server-name",
            "typha.local",
        )
        _, status_port = start_felix_agent(procs, f"127.0.0.1:{agent_port}", "n1", *tls)
        wait_until(
            lambda: metric(metrics(http_port), "typha_connections_refused_total") >= 1,
            "the agent is refused while the silent peers hold the limit",
        )
        for sock in silent:
            assert sock.recv(1) == b""  # closed by the server's handshake timeout
        wait_until(lambda: status(status_port)["in_sync"], "the agent gets in afterwards")
        wait_until(
            lambda: metric(metrics(http_port), "typha_tls_handshake_failures_total") == 2,
            "both counted as failed handshakes",
        )
    finally:
        for sock in silent:
            sock.close()


# -- 10. agent reconnect storms ------------------------------------------------


class WrongDigestServer:
    """Answers every hello with a snapshot whose digest is wrong."""

    def __init__(self) -> None:
        self.hellos = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._stop = False
        import threading

        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        from syncproto import ServerConnection, SnapshotChunk, SnapshotEnd

        while not self._stop:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with sock:
                sock.settimeout(5)
                core = ServerConnection(server_id="liar", now=time.monotonic())
                try:
                    while core.hello is None:
                        data = sock.recv(4096)
                        if not data:
                            break
                        core.receive_data(data, time.monotonic())
                    if core.hello is None:
                        continue
                    self.hellos += 1
                    core.accept()
                    core.send_frames(
                        [
                            core.codec.encode(SnapshotChunk(5, [("/calico/x", b'{"a":1}')])),
                            core.codec.encode(SnapshotEnd(5, 1, "0" * 32)),
                        ]
                    )
                    sock.sendall(b"".join(core.data_to_send()))
                    while sock.recv(4096):
                        pass
                except OSError:
                    pass

    def close(self) -> None:
        self._stop = True
        self.listener.close()


def test_an_agent_backs_off_from_a_server_that_fails_right_after_hello(
    procs: Callable[..., Proc],
) -> None:
    liar = WrongDigestServer()
    try:
        agent, status_port = start_felix_agent(procs, f"127.0.0.1:{liar.port}", "n1")
        wait_until(lambda: liar.hellos >= 7, "seven attempts")
        st = status(status_port)
        assert st["digest_mismatches"] >= 6
        # 0.1 s doubling per failed attempt, capped at 5 s: the hello no
        # longer resets it (only a connection healthy for 10 s does).
        assert float(str(st["reconnect_backoff"])) >= 3.2
        agent.stop()
        warnings = [ln for ln in agent.output().splitlines() if "digest mismatch" in ln]
        assert 1 <= len(warnings) <= 2, warnings  # repeated warnings are rate limited
    finally:
        liar.close()


# -- 11. a bound on what an agent accepts --------------------------------------


def test_an_agent_refuses_a_snapshot_larger_than_its_bound(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    seed(etcd, n=200, size=1000)
    _, agent_port, _ = start_typha(procs, etcd)
    _, status_port = start_felix_agent(
        procs, f"127.0.0.1:{agent_port}", "n1", "--max-snapshot-bytes", "50000"
    )
    wait_until(lambda: status(status_port)["protocol_errors"] >= 2, "snapshot refused")
    st = status(status_port)
    assert st["in_sync"] is False
    assert st["keys"] == 0
