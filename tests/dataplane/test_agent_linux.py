"""End to end with real processes: etcd, typha and two `felix-agent
--dataplane linux` processes, each programming its node's namespace
(`--dataplane-netns`), with real packets between pod namespaces.  A policy
written to etcd takes effect in the kernels; deleting it undoes it; an agent
restarted on a correct node changes nothing in its kernel."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from commands.demo.etcd import EmbeddedEtcd
from tests.cluster import put_items, write_state
from tests.conftest import Proc, http_json, start_felix_agent, start_typha, wait_until
from tests.dataplane.test_linux_dataplane import PODS, STATE, V3
from tests.netns import fabric

pytestmark = pytest.mark.integration


def status(port: int) -> Any:
    return http_json(f"http://127.0.0.1:{port}/status")


def test_agents_program_their_nodes_from_typha_and_follow_policy_changes(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    with fabric() as f:
        nodes = {"n1": f.node("n1", "192.168.77.1/24"), "n2": f.node("n2", "192.168.77.2/24")}
        pods = {p: f.pod(nodes[n], p, f"cali{p}", ip) for p, (n, ip, _) in PODS.items()}
        asyncio.run(write_state(etcd.endpoint, STATE))
        _, agent_port, _ = start_typha(procs, etcd)
        ports = {}
        for n, ns in nodes.items():
            _, ports[n] = start_felix_agent(
                procs,
                f"127.0.0.1:{agent_port}",
                n,
                "--dataplane",
                "linux",
                "--dataplane-netns",
                f.path(ns),
                "--resync-interval",
                "1",
            )
        for n in nodes:
            wait_until(lambda n=n: status(ports[n])["in_sync"], f"agent {n} in sync")

        def reach(src: str, dst: str) -> bool:
            return f.ping(pods[src], PODS[dst][1])

        wait_until(lambda: reach("a", "e"), "a reaches e across nodes")
        assert reach("a", "c")
        assert not reach("a", "b")
        assert status(ports["n1"])["kernel"]["errors"] == 0

        deny = {
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "deny-e"},
            "spec": {
                "selector": "group == 'shared'",
                "types": ["Ingress"],
                "ingress": [{"action": "Deny", "protocol": "ICMP"}],
            },
        }
        key = f"{V3}/globalnetworkpolicies/deny-e"
        asyncio.run(put_items(etcd.endpoint, [(key, orjson.dumps(deny))]))
        wait_until(lambda: not reach("a", "e"), "the deny policy is enforced on n2")
        assert not reach("a", "c")
        asyncio.run(put_items(etcd.endpoint, [(key, None)]))
        wait_until(lambda: reach("a", "e"), "deleting the policy restores it")

        # Someone removes one of the agent's routes: the periodic resync puts it back.
        from tests.netns import sh

        sh(nodes["n1"], "ip", "route", "del", "10.65.2.0/26")
        wait_until(
            lambda: "10.65.2.0/26" in sh(nodes["n1"], "ip", "route", "show", "proto", "80").stdout,
            "the route is repaired",
        )
        assert status(ports["n1"])["kernel"]["repairs"] >= 1

        # A second agent for n1 (as after a restart) finds the kernel right.
        _, again = start_felix_agent(
            procs,
            f"127.0.0.1:{agent_port}",
            "n1",
            "--dataplane",
            "linux",
            "--dataplane-netns",
            f.path(nodes["n1"]),
            "--resync-interval",
            "0",
        )
        wait_until(lambda: status(again)["in_sync"], "restarted agent in sync")
        assert status(again)["kernel"]["kernel_changes"] == 0
        assert reach("a", "e")
