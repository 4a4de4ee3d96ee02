"""The Helm chart, rendered with the real Helm SDK (helm-python-sdk, Helm v4
as a library), linted strictly, and every object validated against the
Kubernetes 1.30 schemas with kubernetes-validate in strict mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from helm_python.errors import HelmRenderError, HelmValuesError

CHART = Path(__file__).resolve().parents[2] / "helm" / "typha"
K8S = "1.30.0"
CRD_KINDS = {"ServiceMonitor"}  # not in the Kubernetes schemas: checked by hand below

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "tls-and-allow-lists": {
        "server": {
            "tls": {
                "enabled": True,
                "secret": "typha-tls",
                "allowedCNs": ["typha-agent"],
                "allowedURISANs": ["spiffe://cluster.local/ns/calico-system/sa/agent"],
            }
        },
        "agent": {"tls": {"secret": "typha-agent-tls"}},
    },
    "etcd-tls-and-auth": {
        "etcd": {
            "endpoints": "etcd.example:2379,etcd2.example:2379",
            "tlsSecret": "etcd-client",
            "serverName": "etcd.example",
            "username": "typha",
            "passwordSecret": "etcd-pass",
        },
    },
    "everything-optional-on": {
        "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12},
        "serviceMonitor": {"enabled": True},
        "networkPolicy": {"enabled": True},
        "server": {"extraEnv": {"TYPHA_MAX_CONNECTIONS": "30000"}},
    },
    "no-agents-no-pdb": {"agent": {"enabled": False}, "podDisruptionBudget": {"enabled": False}},
}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    chart = helm.Chart.load(CHART)
    manifests = chart.render(values, name="typha", namespace="calico-system", is_install=True)
    objects = []
    for text in manifests.values():
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_object_is_valid_kubernetes_1_30(name: str) -> None:
    objects = render(VALUE_SETS[name])
    assert objects
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(obj, K8S, strict=True)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint_strict_is_clean(name: str) -> None:
    report = helm.lint(CHART, VALUE_SETS[name], strict=True, kube_version="v1.30.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_defaults_describe_the_operations_story() -> None:
    objects = render({})
    (dep,) = by_kind(objects, "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": "100%", "maxUnavailable": 1}
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > 30  # above the drain timeout
    assert pod["automountServiceAccountToken"] is False
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    (c,) = pod["containers"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["allowPrivilegeEscalation"] is False
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["TYPHA_ETCD_ENDPOINTS"].count(":2379") == 3
    assert env["TYPHA_SHUTDOWN_TIMEOUT"] == "30"
    assert all(name.startswith("TYPHA_") for name in env)
    assert c["resources"]["limits"]["memory"] == "1536Mi"
    (pdb,) = by_kind(objects, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
    assert services["typha-headless"]["spec"]["clusterIP"] == "None"
    (ds,) = by_kind(objects, "DaemonSet")
    args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "typha-headless:5473" in args  # agents discover every replica through DNS
    (sa,) = by_kind(objects, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    assert by_kind(objects, "Role") == []  # least RBAC: the server needs no API access
    assert by_kind(objects, "HorizontalPodAutoscaler") == []


def test_tls_secrets_are_mounted_and_configured() -> None:
    objects = render(VALUE_SETS["tls-and-allow-lists"] | VALUE_SETS["etcd-tls-and-auth"])
    (dep,) = by_kind(objects, "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["TYPHA_TLS_ALLOWED_CNS"]["value"] == "typha-agent"
    assert env["TYPHA_ETCD_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "etcd-pass"
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/etc/typha/tls", "/etc/typha/etcd"} <= mounts
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "typha-tls"
    (ds,) = by_kind(objects, "DaemonSet")
    agent = ds["spec"]["template"]["spec"]
    assert "--tls-cert-file" in agent["containers"][0]["args"]
    assert agent["volumes"][0]["secret"]["secretName"] == "typha-agent-tls"


def test_optional_objects() -> None:
    objects = render(VALUE_SETS["everything-optional-on"])
    (dep,) = by_kind(objects, "Deployment")
    assert "replicas" not in dep["spec"]  # the HPA owns it
    (hpa,) = by_kind(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["maxReplicas"] == 12
    (np,) = by_kind(objects, "NetworkPolicy")
    agent_rule = np["spec"]["ingress"][0]
    assert agent_rule["ports"] == [{"port": 5473, "protocol": "TCP"}]
    assert agent_rule["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/component": "agent"
    }
    (sm,) = by_kind(objects, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"


@pytest.mark.parametrize(
    "values",
    [
        {"server": {"replicas": 0}},
        {"server": {"agentPort": 70000}},
        {"server": {"logLevel": "LOUD"}},
        {"server": {"extraEnv": {"PATH": "/evil"}}},
        {"server": {"tls": {"enabled": True}}},  # TLS without its secret
        {"etcd": {"endpoints": ""}},
        {"etcd": {"endpoints": "no-port"}},
        {"etcd": {"username": "typha"}},  # a user without a password secret
        {"agent": {"dataplane": "iptables"}},
        {"surprise": True},  # unknown top-level key
        {"serviceMonitor": {"interval": "often"}},
    ],
)
def test_bad_values_are_refused(values: dict[str, Any]) -> None:
    chart = helm.Chart.load(CHART)
    with pytest.raises(HelmValuesError):
        chart.render(values, name="typha", namespace="calico-system")


def test_server_tls_without_agent_certificates_is_refused() -> None:
    chart = helm.Chart.load(CHART)
    values = {"server": {"tls": {"enabled": True, "secret": "typha-tls"}}}
    with pytest.raises(HelmRenderError, match=r"agent\.tls\.secret"):
        chart.render(values, name="typha", namespace="calico-system")
