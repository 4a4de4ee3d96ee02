"""The chart as deployed: the real Helm SDK renders it, and the built image
runs with exactly the rendered containers (tests/deploy/podspec.py): etcd,
two pods of the typha Deployment, and one agent of the DaemonSet in each
node's namespace with the host network.  Packets prove the policy of the
demo cluster is enforced (a, c and e share a profile; b and d admit no one),
both probes pass, the node's own firewall table is untouched, and an agent
pod with fewer privileges fails with a clear message.

Needs the image (TYPHA_IMAGE=<ref>, as tools/test-deployed sets it after
tools/build-image), podman and runc, root and the kernel; skips without."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import orjson
import pytest
import yaml

from commands.demo.etcd import etcd_binary
from dataplane.linux.kernel_thread import KernelThread
from tests.certs import CertAuthority
from tests.conftest import Proc, wait_until
from tests.dataplane.test_linux_dataplane import PODS, STATE
from tests.deploy.podspec import PODMAN, run_args
from tests.netns import ROOT, Fabric, fabric, sh

pytestmark = pytest.mark.integration

IMAGE = os.environ.get("TYPHA_IMAGE", "")
CHART = Path(ROOT) / "helm" / "typha"
ETCD = "192.168.77.100"
TYPHA = {"typha-0": "192.168.77.101", "typha-1": "192.168.77.102"}
NODES = {"n1": "192.168.77.1", "n2": "192.168.77.2"}
HOSTFW = (
    "add table inet hostfw; add chain inet hostfw input"
    " { type filter hook input priority 0; policy accept; };"
    " add rule inet hostfw input tcp dport 22 accept"
)


def _skip_reason() -> str:
    if not IMAGE:
        return "no image: set TYPHA_IMAGE (tools/test-deployed builds it and sets it)"
    for tool in ("podman", "runc"):
        if not shutil.which(tool):
            return f"{tool} is not installed (tools/build-image installs it)"
    if subprocess.run([*PODMAN, "image", "exists", IMAGE]).returncode != 0:
        return f"image {IMAGE} not found (run tools/build-image)"
    return ""


def render(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The rendered objects by kind (one of each kind used here)."""
    repo, tag = IMAGE.rsplit(":", 1)
    values = {"image": {"repository": repo, "tag": tag}, **values}
    manifests = helm.Chart.load(CHART).render(
        values, name="typha", namespace="calico-system", is_install=True
    )
    out: dict[str, dict[str, Any]] = {}
    for text in manifests.values():
        for doc in yaml.safe_load_all(text):
            if doc:
                out[doc["kind"]] = doc
    return out


@dataclass
class Deployed:
    fabric: Fabric
    nodes: dict[str, str]
    pods: dict[str, str]
    typha: dict[str, str]
    threads: dict[str, KernelThread] = field(default_factory=dict)

    def http(self, ns: str, port: int, path: str) -> tuple[int, str]:
        def get() -> tuple[int, str]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode()
            except OSError as exc:
                return 0, str(exc)

        if ns not in self.threads:
            self.threads[ns] = KernelThread(netns=self.fabric.path(ns), name=f"test-{ns}")
        return self.threads[ns].call(get)

    def reach(self, src: str, dst: str) -> bool:
        return self.fabric.ping(self.pods[src], PODS[dst][1])


def _certs(tmp: Path) -> dict[str, str]:
    """The two Secrets of the chart's TLS, as directories of their keys."""
    ca = CertAuthority(tmp)
    out = {}
    for secret, kw in {
        "typha-tls": {"dns": ("typha-headless",)},
        "typha-agent-tls": {"cn": "typha-agent"},
    }.items():
        d = tmp / secret
        d.mkdir()
        issued = ca.issue(**kw)  # type: ignore[arg-type]
        shutil.copy(ca.ca_file, d / "ca.crt")
        shutil.copy(issued.cert_file, d / "tls.crt")
        shutil.copy(issued.key_file, d / "tls.key")
        os.chmod(d / "tls.key", 0o644)  # the server runs as uid 10001
        out[secret] = str(d)
    return out


def _put(f: Fabric, infra: str, items: dict[str, Any]) -> bool:
    done = subprocess.run(
        ["ip", "netns", "exec", infra, sys.executable, "-m", "tests.etcd_write", f"{ETCD}:2379"],
        input=orjson.dumps(items),
        capture_output=True,
        cwd=ROOT,
        timeout=30,
    )
    return done.returncode == 0


@contextmanager
def deployed(tmp: Path, values: dict[str, Any]) -> Iterator[tuple[Deployed, dict[str, Any]]]:
    objects = render(values)
    secrets = _certs(tmp)
    procs: list[Proc] = []
    names: list[str] = []
    hosts = {"etcd": [ETCD], "typha-headless": list(TYPHA.values())}
    with fabric() as f:
        infra = f.node("etcd", f"{ETCD}/24")
        typha_ns = {p: f.node(p, f"{ip}/24") for p, ip in TYPHA.items()}
        nodes = {n: f.node(n, f"{ip}/24") for n, ip in NODES.items()}
        for ns in nodes.values():
            sh(ns, "nft", HOSTFW)
        pods = {p: f.pod(nodes[n], p, f"cali{p}", ip) for p, (n, ip, _) in PODS.items()}
        d = Deployed(f, nodes, pods, typha_ns)

        def start(name: str, argv: list[str]) -> None:
            names.append(name)
            procs.append(Proc(argv, tmp / f"{name}.log"))

        try:
            start(
                "etcd",
                [
                    *("ip", "netns", "exec", infra, etcd_binary()),
                    *("--data-dir", str(tmp / "etcd"), "--log-level", "warn"),
                    *("--listen-client-urls", f"http://{ETCD}:2379"),
                    *("--advertise-client-urls", f"http://{ETCD}:2379"),
                    *("--listen-peer-urls", "http://127.0.0.1:2380"),
                ],
            )
            prefix = values.get("etcd", {}).get("prefix", "/calico/")
            state = {prefix + k.removeprefix("/calico/"): v for k, v in STATE.items()}
            wait_until(lambda: _put(f, infra, state), "etcd written")
            for pod_name, ns in typha_ns.items():
                argv = run_args(
                    objects["Deployment"]["spec"]["template"],
                    name=pod_name,
                    node=pod_name,
                    netns=f.path(ns),
                    hosts=hosts,
                    secrets=secrets,
                )
                start(pod_name, argv)
            for n, ns in nodes.items():
                argv = run_args(
                    objects["DaemonSet"]["spec"]["template"],
                    name=f"agent-{n}",
                    node=n,
                    netns=f.path(ns),
                    hosts=hosts,
                    secrets=secrets,
                )
                start(f"agent-{n}", argv)
            yield d, objects
        finally:
            for name in names:
                subprocess.run([*PODMAN, "stop", "-t", "5", name], capture_output=True)
            for p in reversed(procs):
                p.stop()
            for t in d.threads.values():
                t.close()


@pytest.fixture(autouse=True)
def _needs_image() -> None:
    why = _skip_reason()
    if why:
        pytest.skip(why)


def _probe_ok(d: Deployed, ns: str, probe: dict[str, Any], ports: dict[str, int]) -> bool:
    get = probe["httpGet"]
    port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
    return d.http(ns, port, get["path"])[0] == 200


@pytest.mark.parametrize("prefix", ["/calico/", "/other/"])
def test_the_deployed_chart_enforces_policy(tmp_path: Path, prefix: str) -> None:
    values = {"etcd": {"endpoints": "etcd:2379", "prefix": prefix}, "server": {"replicas": 2}}
    with deployed(tmp_path, values) as (d, objects):
        agent_c = objects["DaemonSet"]["spec"]["template"]["spec"]["containers"][0]
        typha_c = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]
        ports_a = {p["name"]: p["containerPort"] for p in agent_c["ports"]}
        ports_t = {p["name"]: p["containerPort"] for p in typha_c["ports"]}
        for n, ns in d.nodes.items():
            for probe in ("livenessProbe", "readinessProbe"):
                wait_until(
                    lambda ns=ns, probe=probe: _probe_ok(d, ns, agent_c[probe], ports_a),
                    f"agent {n} {probe}",
                    limit=90,
                )
        wait_until(lambda: d.reach("a", "e"), "a reaches e on the other node", limit=60)
        matrix = {(s, t): d.reach(s, t) for s in PODS for t in PODS if s != t}
        print("reachability (row: from, column: to):")
        print("   " + "  ".join(PODS))
        for s in PODS:
            print(
                f"{s}  " + "  ".join("-" if s == t else "Y" if matrix[s, t] else "." for t in PODS)
            )
        shared = {"a", "c", "e"}
        for (s, t), ok in matrix.items():
            assert ok == (s in shared and t in shared), f"{s} -> {t}: {ok}"
        for ns in d.nodes.values():
            rules = sh(ns, "nft", "list", "table", "inet", "hostfw").stdout
            assert "tcp dport 22 accept" in rules
        for ns in d.typha.values():
            assert _probe_ok(d, ns, typha_c["livenessProbe"], ports_t)
            assert _probe_ok(d, ns, typha_c["readinessProbe"], ports_t)
        print("probes: /livez and /readyz 200 on both agents and both typha pods")
        # typha status, in the image, as a runbook runs it: kubectl exec into
        # a replica, no flags (TYPHA_ENDPOINTS is the headless Service).
        first = next(iter(d.typha))

        def status() -> dict[str, Any]:
            done = subprocess.run(
                [*PODMAN, "exec", first, "typha", "status", "-o", "json"],
                capture_output=True,
                timeout=60,
            )
            view: dict[str, Any] = orjson.loads(done.stdout)
            view["rc"] = done.returncode
            return view

        wait_until(lambda: status()["convergence"]["agents"] == 2, "status counts both agents")
        view = status()
        assert view["rc"] == 0, view["problems"]
        assert sorted(r["server_id"] for r in view["replicas"]) == sorted(d.typha)
        assert {r["digest"] for r in view["replicas"]} != {""}
        assert len({r["digest"] for r in view["replicas"]}) == 1
        # One certificate for every agent names no node: they are served but
        # cannot report what they applied (operations.md, "TLS").
        assert view["convergence"]["not_reporting"] == 2
        table = subprocess.run(
            [*PODMAN, "exec", first, "typha", "status"], capture_output=True, text=True, timeout=60
        )
        print(table.stdout)


def _without(pod: dict[str, Any], what: str) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    c = pod["spec"]["containers"][0]
    if what == "NET_ADMIN":
        c["securityContext"]["capabilities"]["add"] = []
    else:
        c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] != "sysctl-net"]
    return pod


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("NET_ADMIN", "the agent needs CAP_NET_ADMIN"),
        ("sysctl-net", "mount the host's /proc/sys/net writable"),
    ],
)
def test_an_agent_pod_with_fewer_privileges_fails_clearly(
    tmp_path: Path, missing: str, message: str
) -> None:
    objects = render({})
    secrets = _certs(tmp_path)
    with fabric() as f:
        ns = f.node("n1", f"{NODES['n1']}/24")
        pod = _without(objects["DaemonSet"]["spec"]["template"], missing)
        argv = run_args(
            pod, name="agent-n1", node="n1", netns=f.path(ns), hosts={}, secrets=secrets
        )
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert message in out, out
    assert "Traceback" not in out, out
